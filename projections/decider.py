"""The decider process: one faust agent per commands partition, one writer per aggregate.

Written once for every aggregate family that decides (`Decisions`): incidents (with the SLA
clock) and points accounts. A decision reads the aggregate's state folded from a projection's
timeline, so it must wait until that projection has applied the events this decider emitted
before (read your own writes); after a restart it first waits for the projection to reach the
end of the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

import faust
import orjson
from prometheus_client import Counter, start_http_server
from psycopg import sql
from pydantic import ValidationError

from events.commands import IssuedCommand, IssuedPointsCommand, PublishRanking
from events.envelope import Event
from events.log import (
    EventLog,
    Receipt,
    consumer,
    end_offsets,
    partitions_of,
)
from events.topics import INCIDENT_COMMANDS, INCIDENTS, POINTS, POINTS_COMMANDS, Topic
from projections import points_decider, transport
from projections.five_have import RUNNING
from projections.incident_decider import SLA_CLOCK, Rejected, decide, due, envelopes, for_command
from projections.matters import FiveHave, chain_of, timeline_of
from projections.points_ledger import PointsLedger, account_of, ranking_snapshot, timelines_of
from projections.points_rules import Catalog
from projections.sla import Rules
from projections.store import Cursor, Store

log = logging.getLogger(__name__)

DECISIONS = Counter("gridgov_commands_total", "Commands decided", ["command", "status", "code"])
SLA_EVENTS = Counter("gridgov_sla_events_total", "Events emitted by the SLA clock", ["event_type"])


class Command(Protocol):
    @property
    def command_id(self) -> UUID: ...

    @property
    def aggregate_id(self) -> str: ...

    @property
    def kind(self) -> str: ...


C = TypeVar("C", bound=Command)


class Decisions(Protocol[C]):
    """One aggregate family's decisions, as the decider process needs them."""

    name: str  # the consumer group is gridgov-{name}-decider
    commands: Topic
    events: Topic
    projection: str  # the projection the state is folded from: our writes must be applied
    outcomes: str  # the table of command outcomes

    def parse(self, raw: bytes) -> C: ...

    def outcome(self, command: C) -> dict[str, Any]:
        """The outcome row's columns that name the aggregate."""

    async def timeline(self, cur: Cursor, aggregate_id: str) -> list[Event[Any]]: ...

    async def decide(self, cur: Cursor, command: C) -> list[Event[Any]]:
        """The events the command decides, enveloped; raises Rejected."""


class Decider(Generic[C]):
    def __init__(self, decisions: Decisions[C], store: Store, event_log: EventLog,
                 bootstrap: str) -> None:
        self.decisions, self.store, self.log, self.bootstrap = decisions, store, event_log, \
            bootstrap
        self.written: dict[int, int] = {}  # events partition -> last offset we emitted
        self.turn = asyncio.Lock()  # one decision at a time (commands and any timer)
        self.ready = asyncio.Event()  # caught up after a (re)start

    async def catch_up(self) -> None:
        """After a (re)start: the projection must hold everything in the log before we decide."""
        def ends() -> dict[int, int]:
            kafka = consumer(self.bootstrap)
            try:
                found = end_offsets(kafka, partitions_of(kafka, [self.decisions.events.name]))
            finally:
                kafka.close()
            return {tp.partition: offset - 1 for tp, offset in found.items() if offset}

        self.written = await asyncio.to_thread(ends)
        self.ready.set()

    async def applied(self, timeout: float = 15.0) -> None:
        """Wait until the projection applied every event this decider wrote."""
        deadline = time.monotonic() + timeout
        while self.written:
            async with self.store.cursor() as cur:
                await cur.execute(
                    "select partition, next_offset from projection_offsets"
                    " where projection = %s and topic = %s",
                    [self.decisions.projection, self.decisions.events.name])
                done = dict(await cur.fetchall())
            self.written = {p: o for p, o in self.written.items() if done.get(p, 0) <= o}
            if self.written and time.monotonic() > deadline:
                raise Rejected("busy", f"the {self.decisions.projection} projection is behind;"
                               " retry shortly")
            if self.written:
                await asyncio.sleep(0.01)

    async def handle(self, raw: bytes) -> None:
        try:
            command = self.decisions.parse(raw)
        except ValidationError as exc:
            log.error("unreadable command skipped: %s", exc.errors()[:1])
            return
        async with self.store.cursor() as cur:
            await cur.execute(sql.SQL("select 1 from {} where command_id = %s").format(
                sql.Identifier(self.decisions.outcomes)), [command.command_id])
            if await cur.fetchone():
                return  # a retried command: decided once, never again
        async with self.turn:
            await self._decide(command)

    async def _decide(self, command: C) -> None:
        try:
            await self.applied()
            async with self.store.cursor() as cur:
                emitted = await self._emitted_before(cur, command)
                events = [] if emitted else await self.decisions.decide(cur, command)
        except Rejected as rejected:
            await self._record(command, "rejected", rejected.code, rejected.reason, [])
            return
        if emitted:  # we crashed between writing its events and recording the outcome
            await self._record(command, "accepted", None, None, emitted)
            return
        receipts = await self.emit(events)
        await self._record(command, "accepted", None, None, [
            {"event_id": r.event_id, "event_type": e.event_type, "topic": r.topic,
             "partition": r.partition, "offset": r.offset}
            for e, r in zip(events, receipts, strict=True)])

    async def _emitted_before(self, cur: Cursor, command: C) -> list[dict[str, Any]]:
        """Events already in the aggregate's timeline that this very command emitted."""
        found = await self.decisions.timeline(cur, command.aggregate_id)
        return [{"event_id": str(e.event_id), "event_type": e.event_type}
                for e in sorted(found, key=lambda e: e.aggregate_seq)
                if e.correlation_id == command.command_id]

    async def emit(self, events: list[Event[Any]]) -> list[Receipt]:
        """Append decided events, and remember them: the next decision waits until applied."""
        receipts = await self.log.append_many(events)
        for r in receipts:
            self.written[r.partition] = max(self.written.get(r.partition, -1), r.offset)
        return receipts

    async def _record(self, command: C, status: str, code: str | None,
                      reason: str | None, events: list[dict[str, Any]]) -> None:
        row = {"command_id": command.command_id, **self.decisions.outcome(command),
               "status": status, "code": code, "reason": reason,
               "events": orjson.dumps(events).decode()}
        async with self.store.cursor() as cur:
            await cur.execute(sql.SQL(
                "insert into {} ({}) values ({}) on conflict do nothing").format(
                sql.Identifier(self.decisions.outcomes),
                sql.SQL(", ").join(map(sql.Identifier, row)),
                sql.SQL(", ").join(sql.Placeholder() * len(row))), list(row.values()))
        DECISIONS.labels(command.kind, status, code or "").inc()


class Incidents:
    """The five-have chain's decisions, under the SLA rules."""

    name = "incident"
    commands, events = INCIDENT_COMMANDS, INCIDENTS
    projection = FiveHave.name
    outcomes = "command_outcomes"

    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def parse(self, raw: bytes) -> IssuedCommand:
        return IssuedCommand.model_validate_json(raw)

    def outcome(self, command: IssuedCommand) -> dict[str, Any]:
        return {"incident_id": command.incident_id}

    async def timeline(self, cur: Cursor, aggregate_id: str) -> list[Event[Any]]:
        return await timeline_of(cur, aggregate_id)

    async def decide(self, cur: Cursor, command: IssuedCommand) -> list[Event[Any]]:
        chain = await chain_of(cur, command.incident_id)
        payloads = decide(command, chain, self.rules)
        return envelopes(chain, for_command(command, payloads), actor=command.actor,
                         recorded_at=command.recorded_at, correlation_id=command.command_id)


class Points:
    """Points accounts' decisions (and rankings' publication), under the rules catalog."""

    name = "points"
    commands, events = POINTS_COMMANDS, POINTS
    projection = PointsLedger.name
    outcomes = "points_command_outcomes"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def parse(self, raw: bytes) -> IssuedPointsCommand:
        return IssuedPointsCommand.model_validate_json(raw)

    def outcome(self, command: IssuedPointsCommand) -> dict[str, Any]:
        return {"aggregate_id": command.aggregate_id, "grid": command.grid}

    async def timeline(self, cur: Cursor, aggregate_id: str) -> list[Event[Any]]:
        return (await timelines_of(cur, [aggregate_id]))[aggregate_id]

    async def decide(self, cur: Cursor, command: IssuedPointsCommand) -> list[Event[Any]]:
        if isinstance(command.command, PublishRanking):
            snapshot = await ranking_snapshot(cur, command.grid, command.command.period)
            return points_decider.envelopes(
                command, points_decider.publish(command, snapshot), after_seq=-1)
        account, _ = await account_of(cur, command.aggregate_id)
        return points_decider.envelopes(
            command, points_decider.decide(command, account, self.catalog),
            after_seq=account.last_seq)


class SlaClock:
    """The incident decider's timer: what open incidents past their deadline are owed."""

    def __init__(self, decider: Decider[IssuedCommand], rules: Rules) -> None:
        self.decider, self.rules = decider, rules

    async def tick(self, now: datetime) -> int:
        decider = self.decider
        async with decider.store.cursor() as cur:
            await cur.execute(
                "select incident_id from five_have where deadline < %s and stage = any(%s)"
                " and (not overdue or (deadline < %s and level <> %s"
                "      and (last_escalated_at is null or last_escalated_at < deadline)))"
                " order by deadline limit 500",
                [now, list(RUNNING), now - self.rules.grace, self.rules.ladder[-1].value])
            ids = [i for (i,) in await cur.fetchall()]
        emitted = 0
        for incident_id in ids:
            async with decider.turn:
                await decider.applied()
                async with decider.store.cursor() as cur:
                    chain = await chain_of(cur, incident_id)
                owed = due(chain, now, self.rules)
                if owed:
                    await decider.emit(envelopes(chain, owed, actor=SLA_CLOCK, recorded_at=now))
            for _, _, payload in owed:
                SLA_EVENTS.labels(payload.event_type).inc()
            emitted += len(owed)
        return emitted


def decider_app(decisions: Decisions[C], *, bootstrap: str, database_url: str,
                home: Path) -> tuple[faust.App, Decider[C]]:
    app = transport.app(f"gridgov-{decisions.name}-decider", bootstrap, home)
    commands = app.topic(decisions.commands.name, value_serializer="raw", key_serializer="raw")
    store = Store(database_url)
    decider = Decider(decisions, store,
                      EventLog(bootstrap, client_id=f"gridgov-{decisions.name}-decider"),
                      bootstrap)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def prepare(app: Any, assigned: set[Any], **_: Any) -> None:
        if store.pool.closed:
            await store.open()
        await decider.catch_up()

    # concurrency 1: one decision at a time per partition is what makes it a single writer
    @app.agent(commands, concurrency=1)
    async def decide_commands(stream: Any) -> None:
        async for raw in stream:
            await decider.handle(raw)

    return app, decider


def incident_decider_app(*, bootstrap: str, database_url: str, home: Path,
                         rules: Rules) -> faust.App:
    """The incident decider and, in the same process and under the same lock, the SLA clock."""
    app, decider = decider_app(Incidents(rules), bootstrap=bootstrap, database_url=database_url,
                               home=home)
    clock = SlaClock(decider, rules)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def sla_clock() -> None:
        if decider.ready.is_set():
            try:
                await clock.tick(datetime.now(UTC))
            except Rejected as busy:  # the projection is behind: the next tick catches up
                log.warning("SLA clock skipped a tick: %s", busy.reason)

    return app


def points_decider_app(*, bootstrap: str, database_url: str, home: Path,
                       catalog: Catalog) -> faust.App:
    return decider_app(Points(catalog), bootstrap=bootstrap, database_url=database_url,
                       home=home)[0]


def run(app: faust.App, *, metrics_port: int, metrics_host: str = "127.0.0.1") -> None:
    """Serve /metrics (on GRIDGOV_HOST: 0.0.0.0 in a container) and run a decider's faust app
    until SIGTERM."""
    start_http_server(metrics_port, addr=metrics_host)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
