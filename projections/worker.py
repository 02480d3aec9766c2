"""A projector process: one consumer group per projection, one batch at a time.

A plain consumer, not a faust agent: a projection uses nothing faust adds (no tables, no
timers, no commits it could trust, DESIGN.md), and reading a live log at 1,000 records/s a
faust agent spent ~360 µs of CPU per record, aiokafka alone (the Kafka client faust itself
drives) ~80 (`make bench`, the consumers row). One loop applies one batch at a time, so the
batches of a partition commit in their order; a partition that moves to another worker
meanwhile is guarded by its offset rows, locked per batch (projections/store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine, Iterable
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import Gauge, start_http_server

from events.log import EventLog, FetchPace, Record, group_consumer
from projections.archive import Archive
from projections.matters import FiveHave
from projections.points_ledger import PointsLedger
from projections.runner import Outcome, Projection, Runner
from projections.store import TP, Store

log = logging.getLogger(__name__)

PROJECTIONS: dict[str, type[Projection]] = {"archive": Archive, "five_have": FiveHave,
                                            "points_ledger": PointsLedger}

MAX_PAUSE = 5.0  # seconds between tries of a batch PostgreSQL refused

LAG = Gauge(
    "gridgov_projector_lag", "Records behind the broker's high watermark",
    ["projection", "topic", "partition"],
)


class Projector:
    """Reads a projection's topics in its group and applies each batch through the runner."""

    def __init__(self, projection: Projection, *, bootstrap: str, database_url: str,
                 batch: int = 500) -> None:
        self.projection = projection
        self.batch = batch
        self.bootstrap = bootstrap
        self.store = Store(database_url)
        self.opening = asyncio.Lock()
        # only the archive parks poison records: one dead letter per bad record, not one per
        # reader
        self.log = EventLog(bootstrap, client_id=f"gridgov-{projection.name}") \
            if projection.name == "archive" else None
        self.runner = Runner(projection, self.store, self.log.dead_letter if self.log else None)

    async def run(self) -> None:
        """Until cancelled (SIGTERM): fetch, apply, and move back where a batch says to."""
        # aiokafka binds a consumer to the running loop: it is made here, not in __init__
        self.consumer = self.consumer_in_group()
        self.consumer.subscribe(list(self.projection.topics), listener=_SeekToStored(self))
        pace = FetchPace(self.projection.fetch_wait_ms)
        try:
            await self.consumer.start()  # a SIGTERM may come while it joins: stop() it too
            while True:
                fetched = await self.consumer.getmany(timeout_ms=1000, max_records=self.batch)
                pace.read(self.consumer, bool(fetched))
                if fetched:
                    await self._project([_record(m) for ms in fetched.values() for m in ms])
                    self._report_lag(fetched)
        finally:
            await self.consumer.stop()
            if self.log is not None:
                self.log.close()
            await self.store.close()

    def consumer_in_group(self) -> AIOKafkaConsumer:
        """Its projection's group, whose fetches the broker holds as long as it allows."""
        return group_consumer(self.bootstrap, f"gridgov-{self.projection.name}",
                              fetch_max_wait_ms=self.projection.fetch_wait_ms)

    async def _project(self, records: list[Record]) -> None:
        outcome = await self._apply_until_taken(records)
        for (t, p), offset in outcome.rewind.items():
            log.warning("%s: rewinding %s/%d to stored offset %d", self.projection.name, t, p,
                        offset)
        self.seek(outcome.rewind)

    async def _apply_until_taken(self, records: list[Record]) -> Outcome:
        """PostgreSQL away (restarting, in recovery, out of disk) is waited out, not skipped:
        the same batch again after a growing pause; the runner makes a repeat harmless."""
        pause = 0.1
        while True:
            try:
                await self.open_store()
                return await self.runner.apply(records)
            except psycopg.OperationalError as exc:  # PoolTimeout and DiskFull are ones too
                log.warning("%s: PostgreSQL refused a batch (%s); again in %.1f s",
                            self.projection.name, str(exc).splitlines()[0] if str(exc) else
                            type(exc).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(2 * pause, MAX_PAUSE)

    async def open_store(self) -> Store:
        # a rebalance's listener runs in aiokafka's own task, maybe while a batch is applied
        async with self.opening:
            if self.store.pool.closed:
                await self.store.open()
        return self.store

    def seek(self, offsets: dict[TP, int]) -> None:
        """Move the partitions this worker still holds; one another worker holds by now seeks
        on its own assignment."""
        held = self.consumer.assignment()
        for (topic, partition), offset in offsets.items():
            if (tp := TopicPartition(topic, partition)) in held:
                self.consumer.seek(tp, offset)

    def _report_lag(self, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
                    ) -> None:
        for tp, messages in fetched.items():
            high = self.consumer.highwater(tp)
            LAG.labels(self.projection.name, tp.topic, tp.partition).set(
                max(0, (high or 0) - messages[-1].offset - 1))


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, start each partition at the offset stored beside the read model. If
    PostgreSQL cannot say, the consumer starts at the log's beginning and the runner skips
    what is below the stored offset: slower, never wrong."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        name = self.projector.projection.name
        try:
            stored = await (await self.projector.open_store()).offsets(name)
        except psycopg.OperationalError as exc:
            log.warning("%s: no stored offsets on assignment (%s)", name, exc)
            return
        self.projector.seek({(tp.topic, tp.partition): stored.get((tp.topic, tp.partition), 0)
                             for tp in assigned})

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # another worker reports these partitions now; a stale series would double them
        for tp in revoked:
            with contextlib.suppress(KeyError):
                LAG.remove(self.projector.projection.name, tp.topic, str(tp.partition))


def _record(message: ConsumerRecord[Any, Any]) -> Record:
    return Record(message.topic, message.partition, message.offset, message.key,
                  message.value, tuple(message.headers or ()))


def run(projector: Projector, *, metrics_port: int, metrics_host: str = "127.0.0.1") -> None:
    """Serve /metrics (on GRIDGOV_HOST: 0.0.0.0 in a container) and run a projector until
    SIGTERM or SIGINT, then leave the group."""
    start_http_server(metrics_port, addr=metrics_host)
    asyncio.run(_until_terminated(projector.run()))


async def _until_terminated(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
