"""A consumer with nothing to read asks the broker to hold its fetches longer, so an idle stack
does not keep the embedded broker busy listing empty topics (events.log.FetchPace); the
first record brings its short wait back."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from events.log import (
    FETCH_MAX_WAIT_MS,
    QUIET_AFTER,
    QUIET_FETCH_WAIT_MS,
    FetchPace,
    durable_producer_config,
)
from tests.stack import RunningStack


def test_a_quiet_reader_asks_for_long_holds_until_a_record_arrives(stack: RunningStack) -> None:
    bootstrap, topic = stack.info["kafka_bootstrap"], f"test.pace.{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()

    async def reader() -> tuple[float, int, int]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest",
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        await consumer.start()
        pace, started = FetchPace(FETCH_MAX_WAIT_MS), time.monotonic()
        try:
            while consumer._fetcher._fetch_max_wait_ms == FETCH_MAX_WAIT_MS:
                assert time.monotonic() - started < 30, "the reader never went quiet"
                pace.read(consumer, bool(await consumer.getmany(timeout_ms=100)))
            quiet_after = time.monotonic() - started
            quiet_wait = consumer._fetcher._fetch_max_wait_ms
            producer = KafkaProducer(**durable_producer_config(bootstrap))
            producer.send(topic, key=b"k", value="网格员巡查".encode()).get(timeout=30)
            producer.close()
            read = 0
            while not read:
                assert time.monotonic() - started < 60, "the record never came"
                read = sum(len(r) for r in (await consumer.getmany(timeout_ms=1000)).values())
                pace.read(consumer, read > 0)
            return quiet_after, quiet_wait, consumer._fetcher._fetch_max_wait_ms
        finally:
            await consumer.stop()

    quiet_after, quiet_wait, woken_wait = asyncio.run(reader())
    assert quiet_after >= QUIET_AFTER
    assert quiet_wait == QUIET_FETCH_WAIT_MS
    assert woken_wait == FETCH_MAX_WAIT_MS
