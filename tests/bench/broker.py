"""What the embedded broker (Tansu, memory storage) spends per record of a live log, as the log
grows: a broker of its own, one topic of 12 partitions, records arriving at a steady 1,000 a
second in requests of 100 (as the bench's phones send them) and one aiokafka reader at the tail.
Between the measured phases the topic is filled, once in requests of 100 (about 8 records to a
stored batch, as ingest's producer sends them) and once in requests of 5,000 (~400 to a batch):
the same records, a different number of stored batches."""

from __future__ import annotations

import asyncio
import time
import uuid

import psutil
from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from events.log import FETCH_MAX_WAIT_MS, durable_producer_config
from services.dev import start_broker
from tests.bench.processes import scratch_home
from tests.bench.report import Row
from tests.stack import free_port

PHASE, STEADY_REQUEST = 10_000, 100  # records read live per phase; records per request then
FILLS = (0, 140_000, 140_000)  # records added before each phase: ~10k, ~150k, ~290k in the log
VALUE = b"x" * 450  # the size of a canonical incident report


class _Log:
    """A topic on the broker and a producer with ingest's settings."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap, self.topic = bootstrap, f"bench.broker.{uuid.uuid4().hex[:12]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(self.topic, 12, 1)])
        admin.close()
        self.producer = KafkaProducer(**durable_producer_config(bootstrap))
        self.records = 0

    def send(self, n: int, per_request: int) -> None:
        """n records, each request's acks awaited before the next, as ingest answers."""
        for _ in range(n // per_request):
            for future in [self.producer.send(self.topic, key=uuid.uuid4().bytes, value=VALUE)
                           for _ in range(per_request)]:
                future.get(timeout=30)
        self.records += n

    async def steady_phase(self, broker: psutil.Process) -> float:
        """The broker's CPU µs per record while PHASE records arrive at 1,000/s and are read."""
        reader = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=None,
                                  auto_offset_reset="latest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        await reader.start()
        try:
            while not reader.assignment():
                await asyncio.sleep(0.05)
            await reader.seek_to_end()
            before, read = _cpu(broker), 0
            first = time.perf_counter()
            for k in range(PHASE // STEADY_REQUEST):
                if (delay := first + k * STEADY_REQUEST / 1000 - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                await asyncio.to_thread(self.send, STEADY_REQUEST, STEADY_REQUEST)
                read += sum(len(r) for r in (await reader.getmany(timeout_ms=0)).values())
            async with asyncio.timeout(60):
                while read < PHASE:
                    read += sum(len(r) for r in
                                (await reader.getmany(timeout_ms=500)).values())
            return (_cpu(broker) - before) / PHASE * 1e6
        finally:
            await reader.stop()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _costs(per_request: int) -> list[tuple[int, float]]:
    """(records in the topic when the phase began, broker µs per record) for each phase, on a
    fresh broker whose topic is filled in requests of `per_request`."""
    port = free_port()
    with scratch_home("bench-broker") as home:
        broker = start_broker(port, home / "broker.log")
        try:
            log, costs = _Log(f"127.0.0.1:{port}"), []
            for fill in FILLS:
                log.send(fill, per_request)
                costs.append((log.records, asyncio.run(
                    log.steady_phase(psutil.Process(broker.pid)))))
            log.producer.close()
            return costs
        finally:
            broker.stop()


def broker_rows() -> list[Row]:
    small, large = _costs(STEADY_REQUEST), _costs(5_000)
    return [("the embedded broker's CPU µs per record, live at 1,000 records/s (12 partitions,"
             " one reader at the tail), by records already in the topic",
             "; ".join(f"{n:,}: {us:.0f}" for n, us in small),
             "the same records stored in ~50× fewer batches: "
             + "; ".join(f"{n:,}: {us:.0f}" for n, us in large),
             "Tansu 0.6.0's cost per record grows with the batches its log holds, not with"
             " the records: why every row run on a long log is slower")]
