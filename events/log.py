"""The log's edge: the one place that opens Kafka producers, consumers and admin clients."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from events.codec import canonical
from events.commands import IssuedCommand, IssuedPointsCommand
from events.envelope import Event
from events.topics import (
    COMMAND_TOPICS,
    DEAD_LETTERS,
    EVENT_TOPICS,
    INCIDENT_COMMANDS,
    Topic,
    topic_for,
)

log = logging.getLogger(__name__)


class LogUnavailable(RuntimeError):
    """The broker did not acknowledge in time; the caller may retry (HTTP 503)."""


@dataclass(frozen=True)
class Record:
    """A record as read from the log, before it is known to be an event."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Receipt:
    """Where the broker stored an event, after acks=all."""

    event_id: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class KafkaAuth:
    """Who this process is to a secured cluster: one SASL/SCRAM principal per service, whose
    ACLs say what it may read and write (deploy/). PLAINTEXT, the default, for the embedded
    broker."""

    security_protocol: str = "PLAINTEXT"  # or SASL_SSL, SASL_PLAINTEXT, SSL
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # the cluster's CA, for SSL and SASL_SSL

    def client_config(self) -> dict[str, Any]:
        """kafka-python's settings for it."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            config.update(sasl_mechanism=self.sasl_mechanism,
                          sasl_plain_username=self.username, sasl_plain_password=self.password)
        if self.ca_file:
            config["ssl_cafile"] = self.ca_file
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The cluster's CA as aiokafka and faust take it (kafka-python takes the file)."""
        return ssl.create_default_context(cafile=self.ca_file) \
            if self.security_protocol.endswith("SSL") else None

    def aiokafka_config(self) -> dict[str, Any]:
        """aiokafka's settings for it: the same principal, the CA as an SSL context."""
        config = {k: v for k, v in self.client_config().items() if k != "ssl_cafile"}
        if (context := self.ssl_context()) is not None:
            config["ssl_context"] = context
        return config


_auth = KafkaAuth()


def use_auth(auth: KafkaAuth) -> None:
    """Set once, where a process wires itself up (services/cli.py); every producer, consumer
    and admin client this module opens afterwards authenticates so."""
    global _auth
    _auth = auth


def current_auth() -> KafkaAuth:
    return _auth


def durable_producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Producer settings; refuses anything short of acks=all with idempotence."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "batch_size": 256 * 1024,
        "max_block_ms": 5000,
        "request_timeout_ms": 10000,
        "delivery_timeout_ms": 15000,
        "max_request_size": 8 * 1024 * 1024,
        "client_id": "gridgov",
        **_auth.client_config(),
    }
    config.update(overrides)
    if config["acks"] not in ("all", -1) or config["enable_idempotence"] is not True:
        raise ValueError("the log of record needs acks=all and enable_idempotence=True")
    return config


async def acknowledged(events: Sequence[Event[Any]], sent: Sequence[asyncio.Future[Any]]
                       ) -> list[Receipt]:
    """Each handed-over event's receipt, once the broker acknowledged them all (acks=all)."""
    try:
        metadata = await asyncio.gather(*sent)
    except KafkaError as exc:
        raise LogUnavailable(str(exc)) from exc
    return [Receipt(str(e.event_id), md.topic, md.partition, md.offset)
            for e, md in zip(events, metadata, strict=True)]


class EventLog:
    """Appends events to their topics and resolves once the broker acknowledged them."""

    def __init__(self, bootstrap: str, **producer_overrides: Any) -> None:
        self._producer = KafkaProducer(**durable_producer_config(bootstrap, **producer_overrides))
        self._woken_once = threading.Lock()

    def close(self, timeout: float = 5.0) -> None:
        self._producer.close(timeout=timeout)

    async def append_many(self, events: Sequence[Event[Any]]) -> list[Receipt]:
        """All-or-error: every event acknowledged, or LogUnavailable."""
        return await self.append_encoded([(e, canonical(e)) for e in events])

    async def append_encoded(self, encoded: Sequence[tuple[Event[Any], bytes]]
                             ) -> list[Receipt]:
        """`append_many` of events whose canonical bytes the caller encoded already."""
        return await acknowledged([e for e, _ in encoded], await self.hand_over(encoded))

    async def hand_over(self, encoded: Sequence[tuple[Event[Any], bytes]]
                        ) -> list[asyncio.Future[Any]]:
        """Give these to the producer in one hop to its thread; each future resolves when the
        broker acknowledged its record. A caller need not wait for one group's acks to hand
        over the next: the producer pipelines them."""
        loop = asyncio.get_running_loop()
        records = [(topic_for(e.event_type), e, body) for e, body in encoded]
        try:
            return await asyncio.to_thread(self._send_all, loop, records)
        except KafkaError as exc:
            raise LogUnavailable(str(exc)) from exc

    async def append(self, event: Event[Any]) -> Receipt:
        return (await self.append_many([event]))[0]

    async def submit(self, command: IssuedCommand | IssuedPointsCommand,
                     topic: Topic = INCIDENT_COMMANDS) -> None:
        """Put a command before its decider, keyed by aggregate so one writer sees it."""
        loop = asyncio.get_running_loop()

        def send() -> asyncio.Future[Any]:
            return _bridge(self._producer.send(
                topic.name, key=command.aggregate_id.encode(), value=canonical(command)), loop)

        try:
            await (await asyncio.to_thread(send))
        except KafkaError as exc:
            raise LogUnavailable(str(exc)) from exc

    def _send_all(
        self, loop: asyncio.AbstractEventLoop, records: list[tuple[Topic, Event[Any], bytes]]
    ) -> list[asyncio.Future[Any]]:
        with self._one_wakeup():
            return [
                _bridge(
                    self._producer.send(
                        topic.name,
                        key=event.aggregate_id.encode(),
                        value=value,
                        headers=[("event_type", event.event_type.encode())],
                    ),
                    loop,
                )
                for topic, event, value in records
            ]

    @contextmanager
    def _one_wakeup(self) -> Iterator[None]:
        """Sends made here wake the producer's sender thread once, at the end.

        kafka-python 3.0.12 wakes it for every new batch a send starts, and each time it ships
        the little there is, so the next send starts another batch: 600 events over 12
        partitions woke it 25 to 85 times, as the threads happened to run
        (tests/integration/test_hand_over.py). Measured, a 500-event hand-over went out in 6 to
        9 produce requests, against 3 woken once, and woken once the process spent 13-33 % less
        CPU a record. Upstream coalesces the wakeups (kafka-python PR #3110), not in a release
        yet."""
        sender = self._producer._sender
        with self._woken_once:
            sender.wakeup = _not_yet
            try:
                yield
            finally:
                del sender.wakeup
                sender.wakeup()

    async def dead_letter(self, projection: str, poison: Sequence[tuple[Record, str]]) -> None:
        """Park unreadable records with their original bytes, headers, position and reason.

        Keyed by the original position (`dead_letter_key`): a crash before the batch commits
        parks the record again on the next try, and readers keep one copy per key
        (`dead_letters`)."""
        loop = asyncio.get_running_loop()

        def send() -> list[asyncio.Future[Any]]:
            return [
                _bridge(self.send_raw(
                    DEAD_LETTERS.name, record.value, key=dead_letter_key(record),
                    headers=[*record.headers,
                             ("dlq.key", record.key or b""),
                             ("dlq.projection", projection.encode()),
                             ("dlq.topic", record.topic.encode()),
                             ("dlq.partition", str(record.partition).encode()),
                             ("dlq.offset", str(record.offset).encode()),
                             ("dlq.reason", reason.encode())]), loop)
                for record, reason in poison
            ]

        try:
            await asyncio.gather(*await asyncio.to_thread(send))
        except KafkaError as exc:
            raise LogUnavailable(str(exc)) from exc

    def send_raw(self, topic: str, value: bytes, *, key: bytes | None = None,
                 partition: int | None = None,
                 headers: list[tuple[str, bytes]] | None = None) -> Any:
        """A record as given (dead letters, archive re-seeding): returns kafka-python's future."""
        return self._producer.send(topic, key=key, value=value, partition=partition,
                                   headers=headers or [])

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)


def dead_letter_key(record: Record) -> bytes:
    """Where a poison record was found: one dead letter per position, however often parked."""
    return f"{record.topic}/{record.partition}/{record.offset}".encode()


def dead_letters(bootstrap: str, timeout: float = 30.0) -> dict[bytes, Record]:
    """The dead-letter topic as it means: the first copy of each parked position, by key."""
    kafka = consumer(bootstrap)
    found: dict[bytes, Record] = {}
    try:
        tps = partitions_of(kafka, [DEAD_LETTERS.name])
        ends = end_offsets(kafka, tps)
        left = {tp for tp in tps if ends[tp] > 0}
        kafka.assign(tps)
        kafka.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            for tp, records in kafka.poll(timeout_ms=200).items():
                for r in records:
                    if r.offset < ends[tp] and r.key is not None:
                        found.setdefault(r.key, Record(r.topic, r.partition, r.offset, r.key,
                                                       r.value, tuple(r.headers or ())))
                if kafka.position(tp) >= ends[tp]:
                    left.discard(tp)
        if left:
            raise LogUnavailable(f"dead letters not read to their end in {timeout} s")
    finally:
        kafka.close()
    return found


def _not_yet() -> None:
    """A sender wakeup put off to the end of `EventLog._one_wakeup`."""


def _bridge(future: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    """kafka-python resolves futures on its I/O thread; hand the result to the event loop."""
    result: asyncio.Future[Any] = loop.create_future()

    def settle(fn: Any, value: Any) -> None:
        if not result.done():
            fn(value)

    future.add_callback(lambda md: loop.call_soon_threadsafe(settle, result.set_result, md))
    future.add_errback(lambda exc: loop.call_soon_threadsafe(settle, result.set_exception, exc))
    return result


def create_topics(bootstrap: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="gridgov-admin",
                             **_auth.client_config())
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(t.name, partitions, 1)
            for t in (*EVENT_TOPICS, DEAD_LETTERS, *COMMAND_TOPICS)
            if t.name not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process won the race; the topic is what we wanted
    finally:
        admin.close()


def consumer(bootstrap: str, **overrides: Any) -> KafkaConsumer:
    """A plain consumer without a group: replay, re-seed, inspection."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 5000,
        "fetch_max_bytes": 16 * 1024 * 1024,
        **_auth.client_config(),
    }
    config.update(overrides)
    return KafkaConsumer(**config)


#: how long the broker may hold a fetch that has nothing yet. Tansu answers a held fetch
#: late when a record arrives meanwhile: a record came out 22 ms (p50) after its produce began
#: at a 50 ms wait, 64 at 250 and 123 at 1,000 (2026-11-28), so the wait sets the floor of a
#: consumer's delay (aiokafka's default is 500 ms, faust's hard-coded 1.5 s). A projection's
#: readers may accept more (`Projection.fetch_wait_ms`: the archive's)
FETCH_MAX_WAIT_MS = 50
#: ... and how long once a consumer has read nothing for QUIET_AFTER seconds (`FetchPace`)
QUIET_FETCH_WAIT_MS, QUIET_AFTER = 250, 1.0
#: every consumer group's: the embedded broker joins a group in about half the session
#: timeout (DESIGN.md)
SESSION_TIMEOUT_MS, HEARTBEAT_INTERVAL_MS = 6000, 1000


def group_consumer(bootstrap: str, group: str, **overrides: Any) -> AIOKafkaConsumer:
    """An asyncio consumer in a group that never commits to the broker: a projector, whose
    offsets live in PostgreSQL beside its read model."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "client_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
        **_auth.aiokafka_config(),
    }
    config.update(overrides)
    return AIOKafkaConsumer(**config)


def fetch_wait_ms(busy_ms: int, quiet_for: float) -> int:
    """How long a consumer's next fetch may be held, `quiet_for` seconds after it last read a
    record: its own wait while records come, at least QUIET_FETCH_WAIT_MS once it is quiet."""
    return busy_ms if quiet_for < QUIET_AFTER else max(busy_ms, QUIET_FETCH_WAIT_MS)


class FetchPace:
    """Holds a quiet consumer's fetches longer. Tansu spends 1.5–2.5 ms of CPU on each fetch,
    records or not: an idle stack whose consumers fetched every 50 ms used 0.26–0.30 cores,
    0.11–0.12 with this (BENCHMARKS.md, 2026-11-28). The price: the first record after a quiet
    spell comes out ~60 ms later (100 against 42 ms, p50, one incident every 3 s); records
    that keep coming are read at the short wait. A broker that answers a held fetch as soon as
    records arrive (Apache Kafka) charges nothing for it."""

    def __init__(self, busy_ms: int) -> None:
        self.busy_ms = busy_ms
        self.last_read = time.monotonic()

    def read(self, consumer: AIOKafkaConsumer, got_records: bool) -> None:
        """After each read of `consumer` (aiokafka's, started): its next fetches' wait."""
        now = time.monotonic()
        if got_records:
            self.last_read = now
        # aiokafka reads the wait from its fetcher as it builds each fetch request
        consumer._fetcher._fetch_max_wait_ms = fetch_wait_ms(self.busy_ms, now - self.last_read)


def partitions_of(kafka: KafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(kafka.partitions_for_topic(topic) or ())
    ]


def end_offsets(kafka: KafkaConsumer, tps: list[TopicPartition],
                timeout: float = 5.0) -> dict[TopicPartition, int]:
    """The true next offset of each partition.

    Tansu 0.6 answers ListOffsets(latest) with the base offset of the last batch + 1, not the
    end of the log, so read that last batch and take its last offset + 1. A broker that does
    not answer the first question within `timeout` raises KafkaTimeoutError.
    """
    high = kafka.end_offsets(tps, timeout_ms=int(timeout * 1000))
    ends = {tp: 0 for tp in tps if high[tp] == 0}
    pending = [tp for tp in tps if high[tp] > 0]
    if pending:
        kafka.assign(pending)
        for tp in pending:
            kafka.seek(tp, high[tp] - 1)
        deadline = time.monotonic() + timeout
        while len(ends) < len(tps) and time.monotonic() < deadline:
            for tp, records in kafka.poll(timeout_ms=200).items():
                if tp not in ends and records:
                    ends[tp] = records[-1].offset + 1
                    kafka.pause(tp)
        for tp in pending:
            ends.setdefault(tp, high[tp])
        kafka.resume(*pending)  # kafka-python keeps a partition's pause across a new assign()
    return ends
