"""``flask --app wsgi`` commands: dev tokens, demo data, setting a metric, running retention."""

import os
import socket

import click
from flask import current_app

from app.auth import mint_dev_token
from app.demo import seed_demo
from app.errors import AppError
from app.services import metrics, retention


def register_cli(app):
    """Add the project's commands to the Flask CLI."""

    @app.cli.command("token")
    @click.option("--tenant", default=None, help="tenantId claim (default: DEMO_TENANT).")
    @click.option("--subject", default="dev", show_default=True, help="sub claim.")
    @click.option("--roles", default="admin,ingest", show_default=True, help="Comma-separated roles claim.")
    @click.option("--lifetime", default=86400, show_default=True, type=click.IntRange(1), help="Seconds.")
    def token_command(tenant, subject, roles, lifetime):
        """Print an HS256 development token (needs JWT_SECRET)."""
        config = current_app.config
        try:
            token = mint_dev_token(
                config,
                tenant or config["DEMO_TENANT"],
                subject,
                [r.strip() for r in roles.split(",") if r.strip()],
                lifetime,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(token)

    @app.cli.command("seed-demo")
    @click.option("--tenant", default=None, help="Tenant to seed (default: DEMO_TENANT).")
    def seed_demo_command(tenant):
        """Create the demo event, venue and dashboard (idempotent)."""
        tenant = tenant or current_app.config["DEMO_TENANT"]
        created = seed_demo(tenant)
        click.echo(f"demo data {'created' if created else 'already present'} for tenant {tenant!r}")

    @app.cli.command("set-metric")
    @click.argument("entity_id")
    @click.argument("metric_name")
    @click.argument("value", type=float)
    @click.option("--tenant", default=None, help="Tenant (default: DEMO_TENANT).")
    @click.option("--entity-type", default=None, help="Registers an unknown entity (with AUTO_REGISTER_ENTITIES).")
    def set_metric_command(entity_id, metric_name, value, tenant, entity_type):
        """Record VALUE for METRIC_NAME of ENTITY_ID; subscribers see it live."""
        config = current_app.config
        tenant = tenant or config["DEMO_TENANT"]
        item = {"entityId": entity_id, "metricName": metric_name, "value": value}
        if entity_type is not None:
            item["entityType"] = entity_type
        try:
            point = metrics.parse_point(item, config["MAX_ID_LENGTH"])
            registration = metrics.Registration.from_config(config)
            result = metrics.record_metrics(tenant, [point], config["MAX_METRICS_PER_ENTITY"], registration)
        except AppError as exc:
            raise click.ClickException(f"{exc.error.code}: {exc.message}") from None
        click.echo(f"recorded {entity_id}.{metric_name} = {value} at seq {result['lastSeq']}")

    @app.cli.command("prune")
    @click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
    def prune_command(dry_run):
        """Run retention once (as the servers do every RETENTION_INTERVAL) and print what it removed."""
        holder = f"cli:{socket.gethostname()}:{os.getpid()}"
        removed = retention.run_once(retention.Retention.from_config(current_app.config), holder, dry_run=dry_run)
        if removed is None:
            raise click.ClickException("another process is running retention now; try again in a moment")
        verb = "would remove" if dry_run else "removed"
        for table, count in removed.items():
            click.echo(f"{table}: {verb} {count} rows")
