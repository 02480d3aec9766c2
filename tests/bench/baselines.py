"""The machine's own limits, measured in the same run as the rows they stand beside: kafka-python
alone producing and consuming, COPY alone, and the per-event cost of each component."""

from __future__ import annotations

import gc
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import psutil
import psycopg
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from events.catalog import event_from_json
from events.codec import encode
from events.log import consumer, durable_producer_config, end_offsets, partitions_of
from tests.bench.processes import CpuUsed

Timed = AbstractContextManager[Any]
UNTIMED: Timed = nullcontext()


def raw_producer(bootstrap: str, records: list[tuple[bytes, bytes]], timed: Timed = UNTIMED
                 ) -> tuple[str, float]:
    """kafka-python alone, the same records and settings, acks=all, into a topic of its own:
    (that topic, records/s). `timed` is around the sends alone, not the topic's making."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    topic = f"bench.raw.{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(topic, 12, 1)])
    admin.close()
    producer = KafkaProducer(**durable_producer_config(bootstrap))
    producer.send(topic, b"warm-up").get(timeout=10)
    with timed:
        started = time.perf_counter()
        futures = [producer.send(topic, key=k, value=v) for k, v in records]
        producer.flush()
        for f in futures:
            f.get(timeout=30)
        elapsed = time.perf_counter() - started
    producer.close()
    return topic, len(records) / elapsed


def raw_consume(bootstrap: str, topics: tuple[str, ...], timed: Timed = UNTIMED
                ) -> tuple[int, float]:
    """kafka-python alone reading every record of the topics, doing nothing else."""
    kafka = consumer(bootstrap, max_poll_records=5000)
    tps = partitions_of(kafka, topics)
    ends = end_offsets(kafka, tps)
    kafka.assign(tps)
    kafka.seek_to_beginning(*tps)
    with timed:
        read, started = 0, time.perf_counter()
        left = {tp for tp in tps if ends[tp]}
        while left:
            for tp, records in kafka.poll(timeout_ms=500).items():
                read += len(records)
                if kafka.position(tp) >= ends[tp]:
                    left.discard(tp)
                    kafka.pause(tp)
        elapsed = time.perf_counter() - started
    kafka.close()
    return read, read / elapsed


def raw_copy(database_url: str, bodies: list[bytes], timed: Timed = UNTIMED) -> float:
    """COPY of the same canonical bodies into an unindexed table, rows/s."""
    with psycopg.connect(database_url) as conn:
        conn.execute("create temporary table bench_copy (body bytea)")
        with timed:
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy("copy bench_copy (body) from stdin") as copy:
                for body in bodies:
                    copy.write_row((body,))
            return len(bodies) / (time.perf_counter() - started)


class Metered:
    """The CPU a step took of the client (this process, every thread) and of the servers it
    talked to: sending costs the broker too, a COPY costs PostgreSQL's backend."""

    def __init__(self, servers: dict[str, psutil.Process]) -> None:
        self.servers = CpuUsed(servers)
        self.seconds = 0.0

    def __enter__(self) -> Metered:
        self.seconds = time.process_time()
        self.servers.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.servers.__exit__(*exc)
        self.seconds = time.process_time() - self.seconds + sum(self.servers.seconds.values())


@dataclass(frozen=True)
class Components:
    """Microseconds per event of each step an event takes, each alone on one core."""

    validate: float
    encode: float
    send: float
    consume: float
    upsert: float
    #: the CPU of send, consume and COPY on every process, the broker's and PostgreSQL's too
    send_cpu: float
    consume_cpu: float
    upsert_cpu: float

    @property
    def total(self) -> float:
        return self.validate + self.encode + self.send + self.consume + self.upsert

    @property
    def design_floor(self) -> float:
        """What the passes the design makes per event cost at these prices, on every process:
        ingest validates, encodes and sends it; the archive and the chain each consume and
        validate it; it becomes three rows (the archive's, a timeline's, a chain's)."""
        return (3 * self.validate + self.encode + self.send_cpu + 2 * self.consume_cpu
                + 3 * self.upsert_cpu)

    def floor_terms(self, servers: list[str]) -> str:
        """The floor's terms, and whose CPU the last three count besides the client's."""
        return (f"validate ×3, encode, send {self.send_cpu:.0f}, consume {self.consume_cpu:.0f}"
                f" ×2, COPY {self.upsert_cpu:.0f} ×3, these three with the CPU of "
                + (" and ".join(servers) if servers else "their client alone"))

    def __str__(self) -> str:
        return (f"validate {self.validate:.0f} + encode {self.encode:.0f} + send "
                f"{self.send:.0f} + consume {self.consume:.0f} + COPY {self.upsert:.0f}"
                f" = {self.total:.0f} µs")


def components(bootstrap: str, database_url: str, records: list[tuple[bytes, bytes]],
               servers: dict[str, psutil.Process]) -> Components:
    """The sum the issue compares the platform's CPU per event with: validate with the catalog,
    encode once, send with kafka-python, consume with kafka-python, COPY a row (each in µs of
    the wall clock per record); and the CPU the last three took of the servers too."""
    bodies = [body for _, body in records]
    # the events are kept for encoding, a list the platform never holds: the collector's walks
    # of it were a third of this step (30 µs an event against 21, scratch 2026-11-28)
    gc.disable()
    try:
        started = time.perf_counter()
        events = [event_from_json(body) for body in bodies]
        validate = (time.perf_counter() - started) / len(bodies)
    finally:
        gc.enable()
    started = time.perf_counter()
    for event in events:
        encode(event)
    encoded = (time.perf_counter() - started) / len(events)
    sending, consuming, copying = Metered(servers), Metered(servers), Metered(servers)
    topic, sent = raw_producer(bootstrap, records, sending)
    _, consumed = raw_consume(bootstrap, (topic,), consuming)
    copied = raw_copy(database_url, bodies, copying)
    send_cpu, consume_cpu, upsert_cpu = (m.seconds / len(records) * 1e6
                                         for m in (sending, consuming, copying))
    return Components(validate * 1e6, encoded * 1e6, 1e6 / sent, 1e6 / consumed, 1e6 / copied,
                      send_cpu, consume_cpu, upsert_cpu)
