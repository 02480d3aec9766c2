"""The incident decider's process: one faust agent per commands partition, and the SLA clock.

A decision reads the incident's chain folded from its timeline, so it must wait until the
five-have projection has applied the events this decider emitted before (read your own
writes); after a restart it first waits for the projection to reach the end of the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from prometheus_client import Counter
from pydantic import ValidationError

from events.catalog import event_from_json
from events.commands import IssuedCommand
from events.log import EventLog, Receipt, consumer, end_offsets, partitions_of
from events.topics import INCIDENT_COMMANDS, INCIDENTS
from projections.five_have import RUNNING
from projections.incident_decider import SLA_CLOCK, Rejected, decide, due, envelopes, for_command
from projections.matters import FiveHave, chain_of
from projections.sla import Rules
from projections.store import Cursor, Store

log = logging.getLogger(__name__)

DECISIONS = Counter("gridgov_commands_total", "Commands decided", ["command", "status", "code"])
SLA_EVENTS = Counter("gridgov_sla_events_total", "Events emitted by the SLA clock", ["event_type"])


class Decider:
    def __init__(self, store: Store, event_log: EventLog, rules: Rules, bootstrap: str) -> None:
        self.store, self.log, self.rules, self.bootstrap = store, event_log, rules, bootstrap
        self.written: dict[int, int] = {}  # incidents partition -> last offset we emitted
        self.turn = asyncio.Lock()  # commands and the SLA clock write one incident at a time

    async def catch_up(self) -> None:
        """After a (re)start: the projection must hold everything in the log before we decide."""
        def ends() -> dict[int, int]:
            kafka = consumer(self.bootstrap)
            try:
                found = end_offsets(kafka, partitions_of(kafka, [INCIDENTS.name]))
            finally:
                kafka.close()
            return {tp.partition: offset - 1 for tp, offset in found.items() if offset}

        self.written = await asyncio.to_thread(ends)

    async def applied(self, timeout: float = 15.0) -> None:
        """Wait until the five-have projection applied every event this decider wrote."""
        deadline = time.monotonic() + timeout
        while self.written:
            async with self.store.cursor() as cur:
                await cur.execute(
                    "select partition, next_offset from projection_offsets"
                    " where projection = %s and topic = %s", [FiveHave.name, INCIDENTS.name])
                done = dict(await cur.fetchall())
            self.written = {p: o for p, o in self.written.items() if done.get(p, 0) <= o}
            if self.written and time.monotonic() > deadline:
                raise Rejected("busy", "the chain projection is behind; retry shortly")
            if self.written:
                await asyncio.sleep(0.01)

    async def handle(self, raw: bytes) -> None:
        try:
            command = IssuedCommand.model_validate_json(raw)
        except ValidationError as exc:
            log.error("unreadable command skipped: %s", exc.errors()[:1])
            return
        async with self.store.cursor() as cur:
            await cur.execute("select 1 from command_outcomes where command_id = %s",
                              [command.command_id])
            if await cur.fetchone():
                return  # a retried command: decided once, never again
        async with self.turn:
            await self._decide(command)

    async def _decide(self, command: IssuedCommand) -> None:
        try:
            await self.applied()
            async with self.store.cursor() as cur:
                chain = await chain_of(cur, command.incident_id)
                emitted = await self._emitted_before(cur, command)
            payloads = [] if emitted else decide(command, chain, self.rules)
        except Rejected as rejected:
            await self._record(command, "rejected", rejected.code, rejected.reason, [])
            return
        if emitted:  # we crashed between writing its events and recording the outcome
            await self._record(command, "accepted", None, None, emitted)
            return
        events = envelopes(chain, for_command(command, payloads), actor=command.actor,
                           recorded_at=command.recorded_at, correlation_id=command.command_id)
        receipts = await self.log.append_many(events)
        self._wrote(receipts)
        await self._record(command, "accepted", None, None, [
            {"event_id": r.event_id, "event_type": e.event_type, "topic": r.topic,
             "partition": r.partition, "offset": r.offset}
            for e, r in zip(events, receipts, strict=True)])

    @staticmethod
    async def _emitted_before(cur: Cursor, command: IssuedCommand) -> list[dict[str, Any]]:
        """Events already in the chain's timeline that this very command emitted."""
        await cur.execute(
            "select body from incident_timeline where incident_id = %s",
            [command.incident_id])
        found = [event_from_json(bytes(b)) for (b,) in await cur.fetchall()]
        return [{"event_id": str(e.event_id), "event_type": e.event_type}
                for e in sorted(found, key=lambda e: e.aggregate_seq)
                if e.correlation_id == command.command_id]

    def _wrote(self, receipts: list[Receipt]) -> None:
        for r in receipts:
            self.written[r.partition] = max(self.written.get(r.partition, -1), r.offset)

    async def _record(self, command: IssuedCommand, status: str, code: str | None,
                      reason: str | None, events: list[dict[str, Any]]) -> None:
        async with self.store.cursor() as cur:
            await cur.execute(
                "insert into command_outcomes (command_id, incident_id, status, code, reason,"
                " events) values (%s, %s, %s, %s, %s, %s) on conflict do nothing",
                [command.command_id, command.incident_id, status, code, reason,
                 orjson.dumps(events).decode()])
        DECISIONS.labels(command.command.type, status, code or "").inc()

    async def tick(self, now: datetime) -> int:
        """The SLA clock: emit what open incidents past their deadline are owed."""
        async with self.store.cursor() as cur:
            await cur.execute(
                "select incident_id from five_have where deadline < %s and stage = any(%s)"
                " and (not overdue or (deadline < %s and level <> %s"
                "      and (last_escalated_at is null or last_escalated_at < deadline)))"
                " order by deadline limit 500",
                [now, list(RUNNING), now - self.rules.grace, self.rules.ladder[-1].value])
            ids = [i for (i,) in await cur.fetchall()]
        emitted = 0
        for incident_id in ids:
            async with self.turn:
                await self.applied()
                async with self.store.cursor() as cur:
                    chain = await chain_of(cur, incident_id)
                owed = due(chain, now, self.rules)
                if owed:
                    events = envelopes(chain, owed, actor=SLA_CLOCK, recorded_at=now)
                    self._wrote(await self.log.append_many(events))
            for _, _, payload in owed:
                SLA_EVENTS.labels(payload.event_type).inc()
            emitted += len(owed)
        return emitted


def decider_app(*, bootstrap: str, database_url: str, rules: Rules) -> faust.App:
    app = faust.App(
        "gridgov-incident-decider", broker=f"gridgov://{bootstrap}", store="memory://",
        web_enabled=False, topic_disable_leader=True, topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0, broker_heartbeat_interval=1.0,
    )
    commands = app.topic(INCIDENT_COMMANDS.name, value_serializer="raw", key_serializer="raw")
    store = Store(database_url)
    decider = Decider(store, EventLog(bootstrap, client_id="gridgov-decider"), rules, bootstrap)
    ready = asyncio.Event()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def prepare(app: Any, assigned: set[Any], **_: Any) -> None:
        if store.pool.closed:
            await store.open()
        await decider.catch_up()
        ready.set()

    # concurrency 1: one decision at a time per partition is what makes it a single writer
    @app.agent(commands, concurrency=1)
    async def decide_commands(stream: Any) -> None:
        async for raw in stream:
            await decider.handle(raw)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def sla_clock() -> None:
        if ready.is_set():
            try:
                await decider.tick(datetime.now(UTC))
            except Rejected as busy:  # the projection is behind: the next tick catches up
                log.warning("SLA clock skipped a tick: %s", busy.reason)

    return app
