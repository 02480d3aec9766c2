"""What consuming costs at a steady 1,000 records/s, by client: faust's agent (how the
deciders read), aiokafka alone (how the projectors read) and kafka-python alone (how a replay
reads). Each runs in a process of its own, joins a group of its own on a topic of its own,
and counts its own CPU from its first record to its last while records arrive on schedule:
the cost of reading a live log, not of catching up on a full one."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import faust
import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from events.log import (
    FETCH_MAX_WAIT_MS,
    HEARTBEAT_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    consumer,
    durable_producer_config,
    group_consumer,
)
from projections import transport
from tests.bench.report import Row
from tests.stack import RunningStack, a_place, an_incident, wait_until

CLIENTS = ("faust", "aiokafka", "kafka-python")
RATE, SECONDS, BATCH = 1000.0, 15.0, 500


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Count:
    """Records seen so far; writes the CPU per record to `out` once all `expected` are in
    (a file, not stdout: faust's worker takes stdout over for its logging)."""

    def __init__(self, expected: int, out: Path) -> None:
        self.expected, self.out, self.seen, self.since = expected, out, 0, 0.0

    def ready(self) -> None:
        """The parent's signal to start producing: the group has given us the partitions."""
        self.out.with_suffix(".ready").touch()

    def add(self, n: int) -> bool:
        if n and not self.seen:
            self.since = _cpu()
        self.seen += n
        if self.seen >= self.expected:
            cpu_us = (_cpu() - self.since) / self.seen * 1e6
            self.out.with_suffix(".part").write_text(json.dumps({"cpu_us": cpu_us}))
            self.out.with_suffix(".part").rename(self.out)
            return True
        return False


def _read_with_faust(bootstrap: str, topic: str, count: _Count) -> None:
    app = transport.app(f"bench-{uuid.uuid4().hex[:8]}", bootstrap, count.out.parent)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(app: Any, assigned: set[Any], **_: Any) -> None:
        if assigned:
            count.ready()

    @app.agent(app.topic(topic, value_serializer="raw", key_serializer="raw"), concurrency=1)
    async def read(stream: Any) -> None:
        async for events in stream.take_events(BATCH, within=FETCH_MAX_WAIT_MS / 1000):
            if count.add(len(events)):
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warning"]
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


async def _read_with_aiokafka(bootstrap: str, topic: str, count: _Count) -> None:
    kafka = group_consumer(bootstrap, f"bench-{uuid.uuid4().hex[:8]}")
    kafka.subscribe([topic])
    await kafka.start()
    while not kafka.assignment():
        await kafka.getmany(timeout_ms=100)
    count.ready()
    while not count.add(sum(len(r) for r in (await kafka.getmany(
            timeout_ms=1000, max_records=BATCH)).values())):
        pass
    await kafka.stop()


def _read_with_kafka_python(bootstrap: str, topic: str, count: _Count) -> None:
    kafka = consumer(bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}",
                     fetch_max_wait_ms=FETCH_MAX_WAIT_MS, max_poll_records=BATCH,
                     session_timeout_ms=SESSION_TIMEOUT_MS,
                     heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS)
    kafka.subscribe([topic])
    while not kafka.assignment():
        kafka.poll(timeout_ms=100)
    count.ready()
    while not count.add(sum(len(r) for r in kafka.poll(timeout_ms=1000).values())):
        pass
    kafka.close()


def consumer_rows(stack: RunningStack) -> list[Row]:
    """One row: each client's CPU per record at a steady RATE over SECONDS."""
    grid = a_place()
    records = [(e["aggregate_id"].encode(), orjson.dumps(e))
               for e in (an_incident(grid) for _ in range(1000))]
    costs = {client: _one_client(stack.info["kafka_bootstrap"], client, records)
             for client in CLIENTS}
    return [(f"consuming at a steady {RATE:,.0f} records/s ({SECONDS:.0f} s, 12 partitions),"
             " CPU µs per record of the consumer's process",
             f"aiokafka {costs['aiokafka']:.0f} µs (projectors)",
             f"faust agent {costs['faust']:.0f} µs (deciders); kafka-python"
             f" {costs['kafka-python']:.0f} µs (replay)",
             "why the projectors read without faust; each client alone on a topic of its own")]


def _one_client(bootstrap: str, client: str, records: list[tuple[bytes, bytes]]) -> float:
    topic = f"bench.consume.{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 12, 1)])
    admin.close()
    n, out = int(RATE * SECONDS), Path(tempfile.mkdtemp(prefix="bench-consume-")) / "cpu.json"
    reader = subprocess.Popen(  # noqa: S603 - this module, run as a consumer
        [sys.executable, "-m", "tests.bench.consumers", client, bootstrap, topic, str(n),
         str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: out.with_suffix(".ready").exists(), timeout=120,
                   what=f"the {client} consumer to join its group")
        producer = KafkaProducer(**durable_producer_config(bootstrap))
        first = time.perf_counter()
        for k in range(n):
            if (delay := first + k / RATE - time.perf_counter()) > 0:
                time.sleep(delay)  # the schedule's own pace, not a wait for a condition
            key, value = records[k % len(records)]
            producer.send(topic, key=key, value=value)
        producer.flush()
        producer.close()
        wait_until(out.exists, timeout=120, what=f"the {client} consumer to read them all")
        return float(json.loads(out.read_text())["cpu_us"])
    finally:
        reader.kill()
        reader.wait()


if __name__ == "__main__":
    mode, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    count = _Count(int(sys.argv[4]), Path(sys.argv[5]))
    if mode == "faust":
        _read_with_faust(bootstrap, topic, count)
    elif mode == "aiokafka":
        asyncio.run(_read_with_aiokafka(bootstrap, topic, count))
    else:
        _read_with_kafka_python(bootstrap, topic, count)
