"""What the live tests and the benchmarks share: real servers, their databases and services, and clients.

``bench/`` imports this package, never ``tests/``.
"""

from testkit.clients import (
    DEFAULT_TIMEOUT,
    JWT_SECRET,
    Api,
    RecordingClient,
    metric_value,
    mint_token,
    scrape_metrics,
    tenant_with_entity,
    unique,
    wait_for_metric,
)
from testkit.servers import (
    BIN,
    ROOT,
    SECRET_KEY,
    LiveServer,
    flask_cli,
    free_port,
    running_server,
    server_env,
    wait_for_log,
)
from testkit.services import (
    BACKENDS,
    POSTGRES_URL,
    REDIS_URL,
    Database,
    database_url_for,
    postgres_database,
    postgres_problem,
    require_postgres,
    require_redis,
    require_service,
)

__all__ = [
    "BACKENDS",
    "BIN",
    "DEFAULT_TIMEOUT",
    "JWT_SECRET",
    "POSTGRES_URL",
    "REDIS_URL",
    "ROOT",
    "SECRET_KEY",
    "Api",
    "Database",
    "LiveServer",
    "RecordingClient",
    "database_url_for",
    "flask_cli",
    "free_port",
    "metric_value",
    "mint_token",
    "postgres_database",
    "postgres_problem",
    "require_postgres",
    "require_redis",
    "require_service",
    "running_server",
    "scrape_metrics",
    "server_env",
    "tenant_with_entity",
    "unique",
    "wait_for_log",
    "wait_for_metric",
]
