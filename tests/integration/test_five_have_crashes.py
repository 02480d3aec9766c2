"""kill -9 the chain projector mid-stream: the read model equals a rebuild from offset 0."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from events.envelope import Event
from projections import sla
from projections.matters import FiveHave
from projections.replay import replay
from tests.lifecycles import lifecycle
from tests.stack import RunningStack, wait_until

EVENTS = 6_000  # ~850 matters: each kill lands with a fifth more of them to go


def chains_under(stack: RunningStack, county: str, schema: str = "public") -> list[Any]:
    return stack.sql(f"select * from {schema}.five_have where grid like %s"  # noqa: S608
                     " order by incident_id", county + "/%")


def test_the_chain_after_repeated_kill_9_equals_a_rebuild_from_offset_0(
    stack: RunningStack,
) -> None:
    rng = random.Random(20261126)
    county = f"{rng.randint(100000, 999999)}"
    grids = [f"{county}/{t:03d}/001/{g:02d}" for t in range(1, 4) for g in range(1, 6)]
    start = datetime.now(UTC) - timedelta(days=30)
    rules = sla.load()
    stream: list[Event[Any]] = []
    while len(stream) < EVENTS:
        stream += lifecycle(rules, rng.choice(grids), rng, start + timedelta(minutes=len(stream)))
    incidents = {e.aggregate_id for e in stream}
    failures: list[BaseException] = []

    def publish() -> None:
        try:
            stack.publish(stream)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    loader = threading.Thread(target=publish)
    loader.start()
    kills = 0
    def projected() -> int:
        return int(stack.sql("select count(*) from five_have where grid like %s",
                             county + "/%")[0][0])

    while projected() < len(incidents) * 0.75 and kills < 2:
        pid = stack.reload()["pids"]["projector-five_have"]
        wait_until(lambda k=kills: projected() > (k + 1) * len(incidents) // 5,
                   timeout=120, what="the chain projector to progress")
        os.kill(pid, signal.SIGKILL)
        kills += 1
        wait_until(lambda p=pid: stack.reload()["pids"]["projector-five_have"] != p,
                   what="the supervisor to restart the chain projector")
    loader.join()
    assert not failures, failures
    assert kills >= 2

    wait_until(lambda: stack.caught_up(FiveHave.name, *FiveHave.topics),
               timeout=240, what="the chain projector to reach the end of the log")
    live = chains_under(stack, county)
    assert all(row[5] == "closed" for row in live)  # stage: every lifecycle ended closed

    replayed = asyncio.run(replay(FiveHave(), bootstrap=stack.info["kafka_bootstrap"],
                                  database_url=stack.info["database_url"],
                                  schema="replay_five_have"))
    assert replayed >= len(stream)
    rebuilt = chains_under(stack, county, schema="replay_five_have")
    assert len(rebuilt) == len(live) == len(incidents)
    for mine, theirs in zip(live, rebuilt, strict=True):
        assert mine == theirs
