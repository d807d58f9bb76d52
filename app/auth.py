"""JWT verification shared by the sockets, the REST API and the CLI."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from app import errors
from app.errors import AppError

MAX_TENANT_LENGTH = 128


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


def _key_for(algorithm, config):
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


def verify_token(token, config):
    """Verify ``token`` and return its :class:`Principal`.

    Only the algorithms in ``JWT_ALGORITHMS`` are accepted, each with its own key
    (RS256 with the public key, HS256 with the secret), so a token can never pick
    its key type. Raises :class:`AppError` with MISSING_TOKEN, INVALID_TOKEN,
    TOKEN_EXPIRED or MISSING_TENANT.
    """
    if token is None or (isinstance(token, str) and not token.strip()):
        raise AppError(errors.MISSING_TOKEN)
    if not isinstance(token, str) or len(token) > 8192:
        raise AppError(errors.INVALID_TOKEN)
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise AppError(errors.INVALID_TOKEN, "invalid token: malformed") from None
    allowed = config["JWT_ALGORITHMS"]
    key = _key_for(algorithm, config) if algorithm in allowed else None
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
    tenant_id = claims.get("tenantId")
    if not isinstance(tenant_id, str) or not tenant_id.strip() or len(tenant_id) > MAX_TENANT_LENGTH:
        raise AppError(errors.MISSING_TENANT)
    subject = claims.get("sub")
    return Principal(
        tenant_id=tenant_id,
        subject=subject if isinstance(subject, str) else None,
        roles=_roles_from(claims),
        expires_at=float(claims["exp"]) + config["JWT_LEEWAY_SECONDS"],
    )


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
