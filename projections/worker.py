"""A projector process: one faust app (one consumer group) per projection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import faust
import psycopg
from aiokafka.errors import IllegalStateError
from faust.types import TP
from prometheus_client import Gauge, start_http_server

from events.log import EventLog, Record, current_auth
from projections import transport
from projections.archive import Archive
from projections.matters import FiveHave
from projections.points_ledger import PointsLedger
from projections.runner import Outcome, Projection, Runner
from projections.store import Store

log = logging.getLogger(__name__)

PROJECTIONS: dict[str, type[Projection]] = {"archive": Archive, "five_have": FiveHave,
                                            "points_ledger": PointsLedger}

MAX_PAUSE = 5.0  # seconds between tries of a batch PostgreSQL refused

LAG = Gauge(
    "gridgov_projector_lag", "Records behind the broker's high watermark",
    ["projection", "topic", "partition"],
)


def projector_app(projection: Projection, *, bootstrap: str, database_url: str,
                  batch: int = 500) -> faust.App:
    app = faust.App(
        f"gridgov-{projection.name}",
        broker=f"gridgov://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        # the embedded broker joins a group in about half the session timeout (DESIGN.md)
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        stream_buffer_maxsize=4 * batch,
        broker_credentials=transport.credentials(current_auth()),
    )
    topic = app.topic(*projection.topics, value_serializer="raw", key_serializer="raw")
    store = Store(database_url)
    # only the archive parks poison records: one dead letter per bad record, not one per reader
    dead_letter = EventLog(bootstrap, client_id=f"gridgov-{projection.name}").dead_letter \
        if projection.name == "archive" else None
    runner = Runner(projection, store, dead_letter)
    opened = asyncio.Lock()

    async def open_store() -> Store:
        async with opened:
            if store.pool.closed:
                await store.open()
        return store

    async def seek(offsets: dict[TP, int]) -> None:
        """Move the partitions this worker still holds, in the consumer's own thread: faust's
        `Consumer.seek` calls aiokafka from the app's thread, and a fetch running meanwhile
        dies with a KeyError (seen with three workers rebalancing)."""
        held = app.consumer.assignment()
        wanted = {tp: offset for tp, offset in offsets.items() if tp in held}
        if wanted:
            try:
                await app.consumer.seek_wait(wanted)
            except IllegalStateError:  # the assignment changed meanwhile: a rebalance follows
                log.info("%s: partitions moved while seeking; the next assignment seeks",
                         projection.name)

    async def apply_until_taken(records: list[Record]) -> Outcome:
        """PostgreSQL away (restarting, in recovery, out of disk) is waited out, not skipped:
        the same batch again after a growing pause; the runner makes a repeat harmless."""
        pause = 0.1
        while True:
            try:
                await open_store()
                return await runner.apply(records)
            except psycopg.OperationalError as exc:  # PoolTimeout and DiskFull are ones too
                log.warning("%s: PostgreSQL refused a batch (%s); again in %.1f s",
                            projection.name, str(exc).splitlines()[0] if str(exc) else
                            type(exc).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(2 * pause, MAX_PAUSE)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def seek_to_stored(app: Any, assigned: set[Any], **_: Any) -> None:
        # faust's recovery may then seek to its own committed offsets (faust #606): wherever
        # it lands, the runner skips what is below the stored offset and rewinds what is past
        stored = await (await open_store()).offsets(projection.name)
        await seek({tp: stored.get((tp.topic, tp.partition), 0) for tp in assigned})

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_lag(app: Any, revoked: set[Any], **_: Any) -> None:
        # another worker reports these partitions now; a stale series would double them
        for tp in revoked:
            with contextlib.suppress(KeyError):
                LAG.remove(projection.name, tp.topic, str(tp.partition))

    # concurrency 1, pinned: above 1 faust can commit past a message another actor still
    # holds (its issue #606), so a kill -9 then would leave it to our stored offsets alone;
    # at 1 the batches of a partition also commit in their order. Tested in test_faults.py.
    @app.agent(topic, concurrency=1)
    async def project(stream: Any) -> None:
        async for events in stream.take_events(batch, within=0.05):
            outcome = await apply_until_taken([_record(e.message) for e in events])
            for (t, p), offset in outcome.rewind.items():
                log.warning("%s: rewinding %s/%d to stored offset %d", projection.name, t, p,
                            offset)
            # a partition another worker holds by now is not ours to move: it seeks on its own
            await seek({TP(t, p): offset for (t, p), offset in outcome.rewind.items()})
            for message in (e.message for e in events):
                high = app.consumer.highwater(message.tp)
                LAG.labels(projection.name, message.topic, message.partition).set(
                    max(0, (high or 0) - message.offset - 1)
                )

    return app


def _record(message: Any) -> Record:
    return Record(message.topic, message.partition, message.offset, message.key,
                  message.value, tuple(message.headers or ()))


def run(app: faust.App, *, metrics_port: int, metrics_host: str = "127.0.0.1",
        loglevel: str = "warning") -> None:
    """Serve /metrics (on GRIDGOV_HOST: 0.0.0.0 in a container) and run a faust app until
    SIGTERM."""
    start_http_server(metrics_port, addr=metrics_host)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
