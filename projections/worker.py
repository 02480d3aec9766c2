"""A projector process: one faust app (one consumer group) per projection."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.types import TP
from prometheus_client import Gauge, start_http_server

from events.log import EventLog, Record
from projections.archive import Archive
from projections.matters import FiveHave
from projections.points_ledger import PointsLedger
from projections.runner import Projection, Runner
from projections.store import Store

log = logging.getLogger(__name__)

PROJECTIONS: dict[str, type[Projection]] = {"archive": Archive, "five_have": FiveHave,
                                            "points_ledger": PointsLedger}

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

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def seek_to_stored(app: Any, assigned: set[Any], **_: Any) -> None:
        stored = await (await open_store()).offsets(projection.name)
        for tp in assigned:
            await app.consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))

    # concurrency 1: faust can commit past an in-flight message above 1 (its issue #606)
    @app.agent(topic, concurrency=1)
    async def project(stream: Any) -> None:
        async for events in stream.take_events(batch, within=0.05):
            records = [_record(e.message) for e in events]
            await open_store()
            outcome = await runner.apply(records)
            for (t, p), offset in outcome.rewind.items():
                log.warning("%s: rewinding %s/%d to stored offset %d", projection.name, t, p,
                            offset)
                await app.consumer.seek(TP(t, p), offset)
            for message in (e.message for e in events):
                high = app.consumer.highwater(message.tp)
                LAG.labels(projection.name, message.topic, message.partition).set(
                    max(0, (high or 0) - message.offset - 1)
                )

    return app


def _record(message: Any) -> Record:
    return Record(message.topic, message.partition, message.offset, message.key,
                  message.value, tuple(message.headers or ()))




def run(app: faust.App, *, metrics_port: int, loglevel: str = "warning") -> None:
    """Serve /metrics and run a faust app until SIGTERM."""
    start_http_server(metrics_port, addr="127.0.0.1")
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
