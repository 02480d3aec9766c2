"""The ingest API: grid workers' apps publish events here; answers after acks=all."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from fastapi import FastAPI, Request
from prometheus_client import Counter, Histogram, make_asgi_app
from starlette.responses import Response

from events.codec import MAX_EVENT_BYTES, encode
from events.envelope import Event
from events.log import EventLog, LogUnavailable, Receipt, acknowledged
from projections import faults
from projections.store import Store
from services import auth, errors, personal
from services.admission import admit
from services.auth import Caller
from services.commands import (
    INCIDENT_OUTCOMES,
    admit_command,
    answer,
    ask,
    decision_of,
    incident_grid,
)
from services.errors import IdConflict, Malformed, Refused, TooLarge, Unavailable, json_response
from services.group_commit import GroupCommit
from services.receipts import Receipts
from services.settings import Settings

INGESTED = Counter("gridgov_ingest_events_total", "Events answered by ingest",
                   ["event_type", "outcome"])
LATENCY = Histogram("gridgov_ingest_latency_seconds", "Request to acks=all answer, per event",
                    ["event_type"],
                    buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))


def clock() -> datetime:
    return datetime.now(UTC)


async def read_bytes(request: Request, limit: int) -> bytes:
    """The raw body, refused before it is read past `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge("body", f"larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge("body", f"larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, limit: int) -> Any:
    """The JSON body, refused before it is read past `limit` bytes, or if not UTF-8 JSON."""
    raw = await read_bytes(request, limit)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed("body", f"not valid UTF-8 at byte {exc.start}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Malformed("body", f"not valid JSON: {exc}") from None


async def publish(request: Request, events: list[Event[Any]]) -> list[Receipt | Refused]:
    """Append admitted events; a repeated event id answers with its first receipt."""
    store: Store = request.app.state.store
    receipts: Receipts = request.app.state.receipts
    outbound: Outbound = request.app.state.outbound
    outbound.writer()  # held while the broker is re-seeded: 503 before anything is claimed
    # residents' personal data: sealed per person before anything is digested or sent
    events = await personal.sealed(store, request.app.state.settings, events)
    encoded = [encode(e) for e in events]  # once: the bytes the log carries, and the digest
    digests = [e.digest for e in encoded]
    # measured as sealed and encoded, as the log would carry it (projectors park bigger ones)
    too_large = TooLarge("body", f"an event is at most {MAX_EVENT_BYTES} bytes")
    outcomes: list[Receipt | Refused | None] = [
        too_large if len(e.body) > MAX_EVENT_BYTES else None for e in encoded]
    fit = [i for i, o in enumerate(outcomes) if o is None]
    try:
        claims = await receipts.claim([(events[i].event_id, digests[i], encoded[i].body)
                                       for i in fit])
    except psycopg.Error as exc:
        raise Unavailable("database", "receipts are unavailable, retry later") from exc
    send: dict[UUID, int] = {}  # each id goes to the log once, whatever the batch repeats
    for i, claim in zip(fit, claims, strict=True):
        if claim.digest != digests[i]:
            outcomes[i] = IdConflict("event_id", "already used for a different event")
        elif claim.receipt is not None:
            outcomes[i] = claim.receipt
        else:
            send.setdefault(events[i].event_id, i)
    # a copy of an id another request of this process is sending waits for that one's receipt
    theirs = {eid: receipts.in_flight[eid] for eid in send if eid in receipts.in_flight}
    mine = {eid: i for eid, i in send.items() if eid not in theirs}
    with receipts.sending(list(mine)) as firsts:
        try:
            acked = await outbound.append([(events[i], encoded[i].body) for i in mine.values()])
            faults.reached("ingest", "after_ack_before_receipt")
            firsts.update(zip(mine, await receipts.record(
                [(r, digests[i]) for i, r in zip(mine.values(), acked, strict=True)]),
                strict=True))
        except LogUnavailable as exc:
            raise Unavailable("broker", "the log did not acknowledge, retry later") from exc
        except psycopg.Error as exc:
            raise Unavailable("database", "receipts are unavailable, retry later") from exc
    for eid, sent in theirs.items():
        first = await asyncio.shield(sent)
        if first is None:
            raise Unavailable("broker", "the log did not acknowledge, retry later")
        firsts[eid] = first
    faults.reached("ingest", "after_receipt_before_answer")
    for i, (event, digest) in enumerate(zip(events, digests, strict=True)):
        if outcomes[i] is None:
            first = firsts[event.event_id]
            outcomes[i] = first.receipt if first.digest == digest else \
                IdConflict("event_id", "already used for a different event")
    return [o for o in outcomes if o is not None]


def _answer(outcome: Receipt | Refused) -> tuple[int, dict[str, Any]]:
    if isinstance(outcome, Refused):
        return outcome.status, {"error": outcome.code, "errors": outcome.errors}
    return 201, dict(vars(outcome))


class Outbound:
    """The producer ingest writes through, and whether the log may be written now. While the
    embedded broker is re-seeded from the archive (SIGUSR1 ... SIGUSR2 from `gridgov dev`),
    every write answers 503 with Retry-After, so nothing lands amid the re-seed; then a fresh
    producer meets the new broker."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.held = False
        self._open()

    def _open(self) -> None:
        self.log = EventLog(self.bootstrap, client_id="gridgov-ingest")
        self.hand_over = GroupCommit(self.log.hand_over)  # one thread hop a group

    async def append(self, encoded: list[tuple[Event[Any], bytes]]) -> list[Receipt]:
        """Handed over with whatever concurrent requests bring; acknowledged each on its own,
        so a single event does not wait for the acks of the batch handed over before it."""
        return await acknowledged([e for e, _ in encoded], await self.hand_over(encoded))

    def hold(self) -> None:
        self.held = True
        self.log.close(timeout=0)  # what it still holds fails: answered 503, retried

    def release(self) -> None:
        self._open()
        self.held = False

    def writer(self) -> EventLog:
        if self.held:
            raise Unavailable("broker", "the log is being restored, retry later")
        return self.log


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.store = await Store(settings.database_url or "", max_size=8).open()
        app.state.outbound = outbound = Outbound(settings.kafka_bootstrap or "")
        app.state.receipts = Receipts(app.state.store)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, outbound.hold)  # from the dev supervisor
        loop.add_signal_handler(signal.SIGUSR2, outbound.release)
        yield
        outbound.log.close()
        await app.state.store.close()

    app = FastAPI(title="gridgov ingest", version="1", lifespan=lifespan)
    errors.install(app)
    auth.install(app, settings)
    app.mount("/metrics", make_asgi_app())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/events", status_code=201)
    async def post_event(request: Request, caller: Caller) -> Response:
        """Publish one event; 201 once the broker acknowledged it (acks=all)."""
        started = time.perf_counter()
        event = admit(await read_body(request, settings.max_body_bytes), caller, now=clock())
        outcome = (await publish(request, [event]))[0]
        _observe([event], [outcome], started)
        if isinstance(outcome, Refused):
            raise outcome
        return json_response(dict(vars(outcome)), 201)

    @app.post("/v1/events/batch")
    async def post_batch(request: Request, caller: Caller) -> Response:
        """Publish up to 500 events (a phone's offline queue); one result per item."""
        started = time.perf_counter()
        body = await read_body(request, settings.max_batch_bytes)
        items = body.get("events") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise Malformed("events", "a non-empty list of events is required")
        if len(items) > settings.max_batch_items:
            raise TooLarge("events", f"at most {settings.max_batch_items} events per batch")
        now = clock()
        results: list[tuple[int, dict[str, Any]] | None] = [None] * len(items)
        admitted, where = [], []
        for i, item in enumerate(items):
            try:
                admitted.append(admit(item, caller, now=now))
                where.append(i)
            except Refused as refused:
                results[i] = _answer(refused)
        outcomes = await publish(request, admitted) if admitted else []
        _observe(admitted, outcomes, started)
        for i, outcome in zip(where, outcomes, strict=True):
            results[i] = _answer(outcome)
        answered = [{"index": i, "status": r[0], **r[1]} for i, r in enumerate(results) if r]
        accepted = sum(1 for r in answered if r["status"] == 201)
        return json_response({"accepted": accepted, "refused": len(answered) - accepted,
                              "results": answered})

    @app.post("/v1/commands", responses=errors.PENDING)
    async def post_command(request: Request, caller: Caller) -> Response:
        """Ask the decider for a step of the chain; its answer, or 202 if it takes longer."""
        command = admit_command(await read_body(request, settings.max_body_bytes), caller,
                                now=clock())
        store: Store = request.app.state.store
        await incident_grid(store, command.incident_id, caller)
        return await ask(store, request.app.state.outbound.writer(), command, INCIDENT_OUTCOMES,
                         settings.command_wait_seconds)

    @app.get("/v1/commands/{command_id}", responses=errors.PENDING)
    async def get_command(command_id: UUID, caller: Caller, request: Request) -> Response:
        """The decider's answer to a command, once there is one (202 until then)."""
        decided = await decision_of(request.app.state.store, command_id)
        if decided is not None:
            await incident_grid(request.app.state.store, decided["incident_id"], caller)
        return answer(decided, command_id)

    from services.points_commands import router as points_commands  # it reads bodies as we do
    app.include_router(points_commands)
    from services.open311 import router as open311  # GeoReport v2: one root, posts and reads
    app.include_router(open311)
    return app


def _observe(events: list[Event[Any]], outcomes: list[Receipt | Refused], started: float) -> None:
    elapsed = time.perf_counter() - started
    for event, outcome in zip(events, outcomes, strict=True):
        INGESTED.labels(event.event_type,
                        "refused" if isinstance(outcome, Refused) else "accepted").inc()
        LATENCY.labels(event.event_type).observe(elapsed)
