"""A hand-over of many events wakes the producer's sender thread once, not once per new batch
(events.log.EventLog._one_wakeup), and every event is still acknowledged where it was sent."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from datetime import UTC, datetime

from events.log import EventLog
from events.topics import topic_for
from tests.lifecycles import report
from tests.oracle import archived
from tests.stack import RunningStack, a_place


def test_a_hand_over_wakes_the_sender_once_and_every_event_is_acknowledged(
        stack: RunningStack) -> None:
    rng, grid, start = random.Random(9), a_place(), datetime.now(UTC)
    events = [report(grid, rng, start) for _ in range(600)]  # 600 incidents over 12 partitions
    log = EventLog(stack.info["kafka_bootstrap"], client_id="test-hand-over")
    client = log._producer._sender._client
    woken: list[str] = []
    wake = client.wakeup

    def counted() -> None:
        woken.append(threading.current_thread().name)
        wake()

    client.wakeup = counted
    try:
        acked = asyncio.run(log.append_many(events))  # one hand-over, then its acks
        wakeups = len(woken)
    finally:
        log.close()
    assert wakeups == 1, woken
    assert [r.event_id for r in acked] == [str(e.event_id) for e in events]
    assert [r.topic for r in acked] == [topic_for(e.event_type).name for e in events]
    assert len({r.partition for r in acked}) == 12
    assert len({(r.topic, r.partition, r.offset) for r in acked}) == len(events)
    stack.archived(topic_for(events[0].event_type).name)
    assert archived(stack, grid.rsplit("/", 1)[0]) == Counter(str(e.event_id) for e in events)
