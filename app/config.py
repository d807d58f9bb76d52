"""Configuration: the only module that reads ``os.environ``."""

import ipaddress
import os
from pathlib import Path

MIN_SECRET_BYTES = 32
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name, default=None):
    """Return the variable as a stripped string, or ``default`` when unset or empty."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip()


def env_int(name, default, minimum=None, maximum=None):
    """Return the variable as an integer; raise ``ValueError`` naming it when malformed or out of range."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_float(name, default, minimum=None):
    """Return the variable as a float; raise ``ValueError`` naming it when malformed."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def env_duration(name, default, minimum=1):
    """Return a duration in seconds: seconds, or a number with a unit (``90s``, ``15m``, ``24h``, ``7d``)."""
    raw = env_str(name)
    if raw is None:
        return default
    number, unit = raw.lower(), "s"
    if number[-1:] in _DURATION_UNITS:
        number, unit = number[:-1].strip(), number[-1]
    try:
        value = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ValueError(f"{name} must be seconds or a number with s, m, h or d (7d, 24h), got {raw!r}") from None
    if not value >= minimum or value == float("inf"):
        raise ValueError(f"{name} must be at least {minimum} seconds, got {raw!r}")
    return value


def env_bool(name, default):
    """Return the variable as a boolean (1/0, true/false, yes/no, on/off)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_list(name, default):
    """Return a comma-separated variable as a list of non-empty items."""
    raw = env_str(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_addresses(name):
    """Return a comma-separated list of IP addresses, normalised; raise ``ValueError`` naming a bad one."""
    addresses = []
    for item in env_list(name, []):
        try:
            addresses.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"{name} must list IP addresses, got {item!r}") from None
    return addresses


def env_choice(name, default, choices):
    """Return the variable lower-cased; raise ``ValueError`` naming it when it is not one of ``choices``."""
    value = env_str(name, default).lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _read_public_key():
    key = env_str("JWT_PUBLIC_KEY")
    path = env_str("JWT_PUBLIC_KEY_FILE")
    if key and path:
        raise ValueError("set JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE, not both")
    if path:
        return Path(path).read_text()
    if key:
        # Environment files often carry the PEM on one line with literal "\n".
        return key.replace("\\n", "\n")
    return None


def _admin_settings(jwt_secret):
    """SECRET_KEY and the admin page switches; refuse combinations that cannot work."""
    secret_key = env_str("SECRET_KEY")
    if secret_key is not None and len(secret_key.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes")
    # Unset: the admin page is on exactly when it can sign its session cookies.
    enabled = env_bool("ADMIN_ENABLED", secret_key is not None)
    if enabled and secret_key is None:
        raise ValueError("ADMIN_ENABLED is on but SECRET_KEY is not set: the admin page signs its cookies with it")
    dev_login = env_bool("ADMIN_DEV_LOGIN", False)
    if dev_login and not jwt_secret:
        raise ValueError("ADMIN_DEV_LOGIN needs JWT_SECRET: the dev sign-in mints an HS256 token")
    return {
        "SECRET_KEY": secret_key,
        "ADMIN_ENABLED": enabled,
        "ADMIN_DEV_LOGIN": dev_login,
        "ADMIN_SESSION_HOURS": env_float("ADMIN_SESSION_HOURS", 8.0, minimum=0.01),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env_bool("SESSION_COOKIE_SECURE", False),
        "SESSION_COOKIE_NAME": "analytics_admin",
        # A form's CSRF token lives as long as the signed session it is bound to.
        "WTF_CSRF_TIME_LIMIT": None,
    }


def _graphql_settings(development):
    """POST/GET /graphql: its limits, and introspection with GraphiQL (on by default in development only).

    ``development`` is ADMIN_DEV_LOGIN, which ``make run`` turns on and a production server leaves off.
    """
    return {
        "GRAPHQL_INTROSPECTION": env_bool("GRAPHQL_INTROSPECTION", development),
        "GRAPHQL_MAX_QUERY_LENGTH": env_int("GRAPHQL_MAX_QUERY_LENGTH", 10_000, 100),
        "GRAPHQL_MAX_DEPTH": env_int("GRAPHQL_MAX_DEPTH", 8, 2),
        "GRAPHQL_MAX_COST": env_int("GRAPHQL_MAX_COST", 20_000, 10),
        "GRAPHQL_MAX_ALIASES": env_int("GRAPHQL_MAX_ALIASES", 15, 0),
        "GRAPHQL_MAX_PAGE": env_int("GRAPHQL_MAX_PAGE", 100, 1, maximum=1000),
    }


def _default_database_url(instance_path):
    return f"sqlite:///{Path(instance_path) / 'analytics.db'}"


def _database_url(instance_path):
    """DATABASE_URL with PostgreSQL pinned to psycopg 3, the driver that cooperates with gevent."""
    url = env_str("DATABASE_URL") or _default_database_url(instance_path)
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    if url.startswith("postgresql+") and not url.startswith("postgresql+psycopg://"):
        raise ValueError("DATABASE_URL: only the psycopg driver is supported (postgresql+psycopg://...)")
    return url


def _engine_options(url):
    """Pool settings. On PostgreSQL a worker's pool is shared by all its greenlets (docs/deployment.md).

    A PostgreSQL connection is pinged before each use (one that the server or the
    network dropped is replaced); a SQLite file cannot drop its connections.
    """
    options = {}
    if url.startswith("postgresql"):
        options.update(
            pool_pre_ping=True,
            pool_size=env_int("DATABASE_POOL_SIZE", 10, 1),
            max_overflow=env_int("DATABASE_MAX_OVERFLOW", 10, 0),
            pool_timeout=env_float("DATABASE_POOL_TIMEOUT", 10.0, minimum=0.1),
            pool_recycle=env_int("DATABASE_POOL_RECYCLE", 1800, 1),
            connect_args={
                "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 5, 1),
                "application_name": "analytics-svc",
            },
        )
    return options


def load_config(instance_path):
    """Build the application configuration from the environment."""
    public_key = _read_public_key()
    secret = env_str("JWT_SECRET")
    if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes for HS256 (RFC 7518)")
    jwks_url = env_str("JWT_JWKS_URL")
    if jwks_url and not jwks_url.startswith(("https://", "http://")):
        raise ValueError(f"JWT_JWKS_URL must be an http(s) URL, got {jwks_url!r}")
    algorithms = []
    if public_key or jwks_url:
        algorithms.append("RS256")
    if jwks_url:
        algorithms.append("ES256")
    if secret:
        algorithms.append("HS256")
    admin = _admin_settings(secret)
    cors = env_list("CORS_ALLOWED_ORIGINS", ["*"])
    database_url = _database_url(instance_path)
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(database_url),
        # PostgreSQL only: LISTEN for the change log's NOTIFY instead of waiting for the next poll.
        "CHANGE_NOTIFY": env_bool("CHANGE_NOTIFY", True) and database_url.startswith("postgresql"),
        "REDIS_URL": env_str("REDIS_URL"),
        "REDIS_CHANNEL": env_str("REDIS_CHANNEL", "analytics-svc"),
        # The private directory the workers of one gunicorn server share on this node (gunicorn.conf.py makes one):
        # their hand-off sockets and activity snapshots. Unset (a single process): neither.
        "SERVER_RUN_DIR": env_str("SERVER_RUN_DIR"),
        "ACTIVITY_SHARE_INTERVAL": env_duration("ACTIVITY_SHARE_INTERVAL", 2.0, minimum=0.1),
        "LOG_LEVEL": env_str("LOG_LEVEL", "INFO").upper(),
        # Observability
        "LOG_FORMAT": env_choice("LOG_FORMAT", "text", ("text", "json")),
        "PROMETHEUS_MULTIPROC_DIR": env_str("PROMETHEUS_MULTIPROC_DIR"),
        "READINESS_TIMEOUT": env_float("READINESS_TIMEOUT", 2.0, minimum=0.1),
        # Authentication
        "JWT_SECRET": secret,
        "JWT_PUBLIC_KEY": public_key,
        "JWT_JWKS_URL": jwks_url,
        "JWT_JWKS_CACHE_SECONDS": env_duration("JWT_JWKS_CACHE_SECONDS", 300.0),
        "JWT_ALGORITHMS": algorithms,
        "JWT_ISSUER": env_str("JWT_ISSUER"),
        "JWT_AUDIENCE": env_str("JWT_AUDIENCE"),
        "JWT_LEEWAY_SECONDS": env_int("JWT_LEEWAY_SECONDS", 30, minimum=0),
        "TOKEN_EXPIRY_WARNING": env_duration("TOKEN_EXPIRY_WARNING", 60.0, minimum=0),
        # Socket.IO
        "CORS_ALLOWED_ORIGINS": "*" if cors == ["*"] else cors,
        "ENTITY_TYPES": env_list("ENTITY_TYPES", ["event", "venue"]),
        "MAX_SUBSCRIPTIONS_PER_CONNECTION": env_int("MAX_SUBSCRIPTIONS_PER_CONNECTION", 50, 1),
        "SOCKET_RATE_LIMIT": env_str("SOCKET_RATE_LIMIT", "30/second"),
        # The id columns are 128 characters wide.
        "MAX_ID_LENGTH": env_int("MAX_ID_LENGTH", 128, 1, maximum=128),
        "SOCKET_MAX_MESSAGE_BYTES": env_int("SOCKET_MAX_MESSAGE_BYTES", 64 * 1024, 1024),
        # Packets queued for one socket that is not reading before it is disconnected.
        "SOCKET_MAX_BACKLOG": env_int("SOCKET_MAX_BACKLOG", 1000, 10),
        "SOCKET_MAX_BACKLOG_BYTES": env_int("SOCKET_MAX_BACKLOG_BYTES", 1024 * 1024, 65536),
        # Engine.IO heartbeat (whole seconds: engine.io announces them to clients in whole seconds).
        "SOCKET_PING_INTERVAL": env_int("SOCKET_PING_INTERVAL", 25, 1),
        "SOCKET_PING_TIMEOUT": env_int("SOCKET_PING_TIMEOUT", 20, 1),
        "SOCKET_CONNECT_TIMEOUT": env_int("SOCKET_CONNECT_TIMEOUT", 10, 1),
        "MAX_CONNECTIONS_PER_IP": env_int("MAX_CONNECTIONS_PER_IP", 100, 1),
        "TRUSTED_PROXIES": env_addresses("TRUSTED_PROXIES"),
        "SOCKET_BIND_TO_ADDRESS": env_bool("SOCKET_BIND_TO_ADDRESS", True),
        "HTTP_HEADER_TIMEOUT": env_int("HTTP_HEADER_TIMEOUT", 10, 1),
        "ADMIN_SIGN_IN_RATE_LIMIT": env_str("ADMIN_SIGN_IN_RATE_LIMIT", "10/minute"),
        # Change feed
        "POLL_INTERVAL": env_float("POLL_INTERVAL", 0.1, minimum=0.005),
        "POLL_BATCH_SIZE": env_int("POLL_BATCH_SIZE", 5000, 1),
        "POLL_GAP_TIMEOUT": env_float("POLL_GAP_TIMEOUT", 30.0, minimum=0.1),
        "POLL_MAX_BACKOFF": env_float("POLL_MAX_BACKOFF", 5.0, minimum=0.01),
        "RESUME_MAX_CHANGES": env_int("RESUME_MAX_CHANGES", 10_000, 0),
        # History and retention
        "HISTORY_WINDOW": env_duration("HISTORY_WINDOW", 3600.0, minimum=60),
        "HISTORY_POINTS": env_int("HISTORY_POINTS", 120, 2, maximum=1000),
        "HISTORY_RETENTION": env_duration("HISTORY_RETENTION", 7 * 86400.0),
        "ROLLUP_RETENTION": env_duration("ROLLUP_RETENTION", 400 * 86400.0),
        "CHANGE_LOG_RETENTION": env_duration("CHANGE_LOG_RETENTION", 86400.0),
        "RETENTION_INTERVAL": env_duration("RETENTION_INTERVAL", 60.0, minimum=0.1),
        # REST
        "MAX_INGEST_BATCH": env_int("MAX_INGEST_BATCH", 1000, 1),
        "MAX_METRICS_PER_ENTITY": env_int("MAX_METRICS_PER_ENTITY", 1000, 1),
        "AUTO_REGISTER_ENTITIES": env_bool("AUTO_REGISTER_ENTITIES", True),
        "MAX_ENTITIES_PER_TENANT": env_int("MAX_ENTITIES_PER_TENANT", 100_000, 1),
        "MAX_CONTENT_LENGTH": env_int("MAX_REQUEST_BYTES", 1024 * 1024, 1024),
        # Demo
        "SIMULATOR": env_bool("SIMULATOR", False),
        "SIMULATOR_INTERVAL": env_float("SIMULATOR_INTERVAL", 1.0, minimum=0.05),
        "DEMO_TENANT": env_str("DEMO_TENANT", "demo"),
        # GraphQL
        **_graphql_settings(admin["ADMIN_DEV_LOGIN"]),
        # Admin page and browser dashboard
        **admin,
    }
