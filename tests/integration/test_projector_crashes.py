"""kill -9 the archive projector while events stream in: nothing lost, nothing twice."""

from __future__ import annotations

import os
import random
import signal
import threading
import uuid

from events.envelope import Role
from projections.archive import Head, verify
from tests.stack import RunningStack, an_incident, wait_until

EVENTS = 10_000


def test_the_archive_holds_every_event_once_after_repeated_kill_9(stack: RunningStack) -> None:
    county = f"{random.randint(100000, 999999)}"  # noqa: S311
    grids = [f"{county}/{t:03d}/001/{g:02d}" for t in range(1, 5) for g in range(1, 6)]
    token = stack.token(Role.worker, county)
    posted: list[str] = []
    failures: list[str] = []

    def stream_in() -> None:
        with stack.ingest(token) as phone:
            for _ in range(EVENTS // 500):
                batch = [an_incident(random.choice(grids),  # noqa: S311
                                     aggregate_id=f"inc-{uuid.uuid4().hex[:16]}")
                         for _ in range(500)]
                answer = phone.post("/v1/events/batch", json={"events": batch})
                if answer.status_code != 200 or answer.json()["accepted"] != 500:
                    failures.append(answer.text[:300])
                posted.extend(e["event_id"] for e in batch)

    loader = threading.Thread(target=stream_in)
    loader.start()
    kills = 0
    while loader.is_alive() and kills < 4:
        pid = stack.reload()["pids"]["projector-archive"]
        wait_until(lambda k=kills: stack.archived_under(county) > k * 1000
                   or not loader.is_alive(),
                   timeout=60, what="the projector to make progress")
        os.kill(pid, signal.SIGKILL)
        kills += 1
        wait_until(lambda p=pid: stack.reload()["pids"]["projector-archive"] != p,
                   what="the supervisor to restart the projector")
    loader.join()
    assert not failures, failures[:3]
    assert kills >= 2

    wait_until(lambda: stack.archived_under(county) >= EVENTS, timeout=240,
               what=f"{EVENTS} events archived")
    rows = stack.sql("select event_id::text from archive where place like %s", county + "/%")
    assert len(rows) == EVENTS
    assert {r[0] for r in rows} == set(posted)
    assert stack.sql(
        "select count(*) from archive_duplicates d join archive a using (event_id)"
        " where a.place like %s", county + "/%")[0][0] == 0

    heads = stack.sql("select topic, partition, position, hash from archive_heads")
    for topic, partition, position, link in heads:
        chain = stack.sql(
            "select position, body, prev_hash, hash from archive"
            " where topic = %s and partition = %s order by position", topic, partition)
        rows = [(p, bytes(b), bytes(ph), bytes(h)) for p, b, ph, h in chain]
        assert verify(rows, end=Head(position + 1, bytes(link))) == []
