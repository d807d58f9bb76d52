"""JWT verification shared by the sockets, the REST API and the CLI."""

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cachetools import TLRUCache

from app import errors
from app.errors import AppError

MAX_TENANT_LENGTH = 128
MAX_EXP = 253402300799  # 9999-12-31T23:59:59Z: the last second a datetime holds
#: How many verified tokens each process remembers (least recently used go first).
VERIFIED_TOKENS_CACHED = 4096
#: The longest a verified token is remembered, even when its ``exp`` is further away.
VERIFIED_TOKEN_MAX_AGE = 60.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant that scopes all data, the subject and their roles."""

    tenant_id: str
    subject: str | None
    roles: frozenset
    expires_at: float

    def has_any_role(self, *roles):
        """True when the principal holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)


#: Algorithms whose keys a JWKS (JWT_JWKS_URL) gives, found by the token's ``kid``.
JWKS_ALGORITHMS = ("RS256", "ES256")
#: A JWKS fetch gives up after this long (it runs cooperatively: only the greenlet waits).
JWKS_TIMEOUT = 3.0
#: At most one fetch of the JWKS per this many seconds, whatever tokens ask for (unknown ``kid``, failures).
JWKS_COOLDOWN = 30.0

log = logging.getLogger(__name__)


class JwksKeys:
    """The signing keys of one JWKS URL, by ``kid``: fetched when older than ``cache_seconds`` or when a token
    names a ``kid`` not among them, at most once per JWKS_COOLDOWN; while the set cannot be fetched, the keys
    fetched last keep working.

    PyJWT's ``PyJWKClient`` fetches and parses the set; the cache is kept here, because the client's own cache
    forgets the keys when it expires and the next fetch fails.
    """

    def __init__(self, url, cache_seconds, clock=time.monotonic):
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=JWKS_TIMEOUT)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._keys = {}
        self._fetched_at = None
        self._attempted_at = None

    def key(self, kid, algorithm):
        """The key of ``kid`` for ``algorithm``; raises INVALID_TOKEN when the set has none such."""
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > self._cache_seconds
        if (stale or kid not in self._keys) and self._may_fetch(now):
            self._fetch(now)
        jwk = self._keys.get(kid)
        if jwk is None or jwk.algorithm_name != algorithm:
            raise AppError(errors.INVALID_TOKEN, "invalid token: no key of the key set matches its kid and algorithm")
        return jwk.key

    def _may_fetch(self, now):
        return self._attempted_at is None or now - self._attempted_at >= JWKS_COOLDOWN

    def _fetch(self, now):
        self._attempted_at = now  # before the request: others asking meanwhile do not fetch too
        try:
            key_set = jwt.PyJWKSet.from_dict(self._client.fetch_data())
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            log.warning("could not fetch the JWKS (%s); keeping the %d keys fetched before", exc, len(self._keys))
            return
        self._keys = {k.key_id: k for k in key_set.keys if k.key_id and k.public_key_use in ("sig", None)}
        self._fetched_at = now


_jwks = {}  # (url, cache seconds) -> JwksKeys of this process


def _jwks_keys(config):
    key = (config["JWT_JWKS_URL"], config["JWT_JWKS_CACHE_SECONDS"])
    if key not in _jwks:
        _jwks[key] = JwksKeys(*key)
    return _jwks[key]


def _key_for(algorithm, header, config):
    if algorithm in JWKS_ALGORITHMS and config.get("JWT_JWKS_URL") and header.get("kid") is not None:
        kid = header["kid"]
        if not isinstance(kid, str) or len(kid) > 256:
            raise AppError(errors.INVALID_TOKEN, "invalid token: kid must be a short string")
        return _jwks_keys(config).key(kid, algorithm)
    if algorithm == "RS256":
        return config["JWT_PUBLIC_KEY"]
    if algorithm == "HS256":
        return config["JWT_SECRET"]
    return None


def _roles_from(claims):
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AppError(errors.INVALID_TOKEN, "invalid token: roles must be a list of strings")
    return frozenset(roles)


def _remember_until(_key, entry, now):
    """A verified token is remembered until its ``exp`` (leeway not included), at most VERIFIED_TOKEN_MAX_AGE."""
    _principal, exp = entry
    return min(exp, now + VERIFIED_TOKEN_MAX_AGE)


# Successful verifications of this process, keyed by the token and every setting that
# decides the outcome (see _cache_key), timed on the wall clock that ``exp`` is read on.
# No lock: a gevent worker runs one greenlet at a time and the cache never yields
# (no I/O inside), so a lookup or an insert is never interleaved with another.
_verified = TLRUCache(maxsize=VERIFIED_TOKENS_CACHED, ttu=_remember_until, timer=time.time)


def _cache_key(token, config):
    audience = config["JWT_AUDIENCE"]
    return (
        token,
        tuple(config["JWT_ALGORITHMS"]),
        config["JWT_SECRET"],
        config["JWT_PUBLIC_KEY"],
        config.get("JWT_JWKS_URL"),
        config["JWT_ISSUER"],
        tuple(audience) if isinstance(audience, list) else audience,
        config["JWT_LEEWAY_SECONDS"],
    )


def verify_token(token, config):
    """Verify ``token`` and return its :class:`Principal`.

    Only the algorithms in ``JWT_ALGORITHMS`` are accepted, each with its own key
    (RS256 with the public key, HS256 with the secret), so a token can never pick
    its key type. Raises :class:`AppError` with MISSING_TOKEN, INVALID_TOKEN,
    TOKEN_EXPIRED or MISSING_TENANT.

    A token verified before under the same settings is answered from a per-process
    cache until its ``exp`` (at most VERIFIED_TOKEN_MAX_AGE seconds), without
    decoding it again; refusals are never cached.
    """
    if token is None or (isinstance(token, str) and not token.strip()):
        raise AppError(errors.MISSING_TOKEN)
    if not isinstance(token, str) or len(token) > 8192:
        raise AppError(errors.INVALID_TOKEN)
    cache_key = _cache_key(token, config)
    cached = _verified.get(cache_key)
    if cached is not None:
        return cached[0]
    principal, exp = _decode(token, config)
    _verified[cache_key] = (principal, exp)
    return principal


def _decode(token, config):
    """Verify ``token`` with PyJWT; return its Principal and its ``exp`` as a float."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AppError(errors.INVALID_TOKEN, "invalid token: malformed") from None
    algorithm = header.get("alg")
    allowed = config["JWT_ALGORITHMS"]
    key = _key_for(algorithm, header, config) if algorithm in allowed else None
    if key is None:
        raise AppError(errors.INVALID_TOKEN, f"invalid token: algorithm {algorithm!s} not accepted")
    audience = config["JWT_AUDIENCE"]
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            leeway=config["JWT_LEEWAY_SECONDS"],
            issuer=config["JWT_ISSUER"],
            audience=audience,
            options={"require": ["exp"], "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AppError(errors.TOKEN_EXPIRED) from None
    except jwt.ImmatureSignatureError:
        raise AppError(errors.INVALID_TOKEN, "invalid token: not yet valid") from None
    except jwt.PyJWTError as exc:
        raise AppError(errors.INVALID_TOKEN, f"invalid token: {exc}") from None
    except (OverflowError, ValueError):  # PyJWT's int() of a time claim such as 1e400 (JSON's infinity)
        raise AppError(errors.INVALID_TOKEN, "invalid token: a time claim is out of range") from None
    tenant_id = claims.get("tenantId")
    if (
        not isinstance(tenant_id, str)
        or not tenant_id.strip()
        or len(tenant_id) > MAX_TENANT_LENGTH
        or not tenant_id.isprintable()  # NUL and other control characters: PostgreSQL refuses NUL in text
    ):
        raise AppError(errors.MISSING_TENANT)
    subject = claims.get("sub")
    exp = _expiry(claims["exp"])
    principal = Principal(
        tenant_id=tenant_id,
        subject=subject if isinstance(subject, str) else None,
        roles=_roles_from(claims),
        expires_at=exp + config["JWT_LEEWAY_SECONDS"],
    )
    return principal, exp


def _expiry(value):
    """``exp`` as a float, refused past year 9999 (10**400 is a JSON integer PyJWT accepts, no float holds)."""
    try:
        exp = float(value)  # PyJWT checked that int(value) works: an int, a float or a numeric string
    except OverflowError:
        exp = math.inf
    if not exp <= MAX_EXP:
        raise AppError(errors.INVALID_TOKEN, "invalid token: exp is out of range")
    return exp


def bearer_token(header_value):
    """Return the token of an ``Authorization: Bearer`` header, or None when absent."""
    if not header_value:
        return None
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(errors.INVALID_TOKEN, "invalid token: expected 'Authorization: Bearer <token>'")
    return token.strip()


def mint_dev_token(config, tenant_id, subject, roles, lifetime_seconds):
    """Sign an HS256 development token; refuse when no ``JWT_SECRET`` is configured."""
    secret = config["JWT_SECRET"]
    if not secret:
        raise ValueError("JWT_SECRET is not set: dev tokens are HS256 only")
    now = datetime.now(UTC)
    claims = {
        "sub": subject,
        "tenantId": tenant_id,
        "roles": list(roles),
        "iat": now,
        "exp": now + timedelta(seconds=lifetime_seconds),
    }
    if config["JWT_ISSUER"]:
        claims["iss"] = config["JWT_ISSUER"]
    if config["JWT_AUDIENCE"]:
        claims["aud"] = config["JWT_AUDIENCE"]
    return jwt.encode(claims, secret, algorithm="HS256")
