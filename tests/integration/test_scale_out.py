"""Scale-out: three workers of one projection share its partitions; kill -9 one mid-stream,
the others take over its partitions, and the read model equals a rebuild from offset 0."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from events.envelope import Actor, Event, Role
from events.patrol import Finding, PatrolLogged
from projections import sla
from projections.matters import FiveHave
from projections.replay import diff, fresh_schema
from tests.lifecycles import lifecycle
from tests.stack import RunningStack, free_port, http, wait_until

EVENTS = 20_000
PROJECTION = FiveHave.name
SHADOW = "scale_out_five_have"


class Worker:
    """One more `gridgov project five_have` process, in the stack's consumer group."""

    def __init__(self, stack: RunningStack, name: str) -> None:
        port = free_port(consecutive=2)  # the five_have projector serves /metrics on port + 1
        self.metrics_url = f"http://127.0.0.1:{port + 1}/metrics"
        env = {**stack.env, "PYTHONUNBUFFERED": "1",
               "GRIDGOV_KAFKA_BOOTSTRAP": stack.info["kafka_bootstrap"],
               "GRIDGOV_DATABASE_URL": stack.info["database_url"],
               "GRIDGOV_PROJECTOR_METRICS_PORT": str(port)}
        self.log_path = stack.home / "logs" / f"{name}.log"
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "project", PROJECTION],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def metrics(self) -> list[Any]:
        return metrics(self.metrics_url)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def metrics(url: str) -> list[Any]:
    try:
        with http(url, timeout=5) as worker:
            text = worker.get("").text
    except httpx.HTTPError:
        return []
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def applied(samples: list[Any]) -> float:
    return sum(s.value for s in samples if s.name == "gridgov_projector_events_total"
               and s.labels.get("projection") == PROJECTION)


def partitions(samples: list[Any]) -> set[tuple[str, int]]:
    """The partitions a worker reports lag for: those it holds and has applied from."""
    return {(s.labels["topic"], int(s.labels["partition"])) for s in samples
            if s.name == "gridgov_projector_lag" and s.labels.get("projection") == PROJECTION}


@contextmanager
def extra_workers(stack: RunningStack, count: int) -> Iterator[list[Worker]]:
    workers: list[Worker] = []
    try:
        workers += [Worker(stack, f"scale-out-{n}") for n in range(count)]
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def patrol_that_found(incident: Event[Any]) -> Event[PatrolLogged]:
    """A patrol (on the patrols topic, another partition) that saw the matter before it was
    reported: refolding it touches an incident another worker may hold."""
    ended = incident.occurred_at - timedelta(minutes=30)
    return Event[PatrolLogged](
        event_id=uuid.uuid4(), event_type="patrol.logged", schema_version=1,
        occurred_at=ended, recorded_at=ended, actor=Actor(id="w-patrol", role=Role.worker),
        grid=incident.grid, aggregate_id=f"patrol-{uuid.uuid4().hex[:16]}", aggregate_seq=0,
        payload=PatrolLogged(
            started_at=ended - timedelta(hours=1), ended_at=ended,
            findings=[Finding(note="路灯不亮", incident_id=incident.aggregate_id)]))


def a_county_stream(rng: random.Random) -> tuple[str, list[Event[Any]]]:
    county = f"{rng.randint(100000, 999999)}"
    grids = [f"{county}/{t:03d}/001/{g:02d}" for t in range(1, 4) for g in range(1, 6)]
    start = datetime.now(UTC) - timedelta(days=30)
    rules = sla.load()
    stream: list[Event[Any]] = []
    while len(stream) < EVENTS:
        matter = lifecycle(rules, rng.choice(grids), rng, start + timedelta(minutes=len(stream)))
        stream += matter
        if rng.random() < 0.1:
            stream.append(patrol_that_found(matter[0]))
    return county, stream


def test_three_chain_workers_share_the_partitions_and_a_kill_9_loses_nothing(
    stack: RunningStack,
) -> None:
    county, stream = a_county_stream(random.Random(20261127))
    incidents = {e.aggregate_id for e in stream if e.event_type.startswith("incident.")}
    own = stack.info["metrics_urls"][f"projector-{PROJECTION}"]
    own_before = applied(metrics(own))

    def projected() -> int:
        return int(stack.sql("select count(*) from five_have where grid like %s",
                             county + "/%")[0][0])

    with extra_workers(stack, 2) as (victim, survivor):
        wait_until(lambda: victim.metrics() and survivor.metrics(), timeout=60,
                   what="the two extra workers to serve /metrics")
        failures: list[BaseException] = []

        def publish() -> None:
            try:
                stack.publish(stream)
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                failures.append(exc)

        loader = threading.Thread(target=publish)
        loader.start()
        try:
            # all three apply: the group spread the partitions over them
            wait_until(lambda: applied(victim.metrics()) and applied(survivor.metrics())
                       and applied(metrics(own)) > own_before, timeout=90,
                       what="each of the three workers to apply events")
            wait_until(lambda: projected() >= len(incidents) // 5, timeout=120,
                       what="a fifth of the stream to be projected")
            held = partitions(victim.metrics())
            assert held, "the victim held no partition"
            assert not held & partitions(survivor.metrics())
            at_kill = dict(((t, p), o) for t, p, o in stack.sql(
                "select topic, partition, next_offset from projection_offsets"
                " where projection = %s", PROJECTION))
            os.kill(victim.process.pid, signal.SIGKILL)
            victim.process.wait()
        finally:
            loader.join()
        assert not failures, failures

        wait_until(lambda: stack.caught_up(PROJECTION, *FiveHave.topics), timeout=240,
                   what="the survivors to reach the end of the log")
        assert survivor.process.poll() is None, survivor.log_path.read_text()[-3000:]
        after = dict(((t, p), o) for t, p, o in stack.sql(
            "select topic, partition, next_offset from projection_offsets"
            " where projection = %s", PROJECTION))
        # the victim's partitions moved on after it died: the others took them over
        assert sum(after[tp] for tp in held) > sum(at_kill.get(tp, 0) for tp in held)

    chains = stack.sql("select stage from five_have where grid like %s", county + "/%")
    assert len(chains) == len(incidents)
    assert all(stage == "closed" for (stage,) in chains)
    # a rebuild from offset 0 into an empty schema, up to the live watermark, then row by row
    fresh_schema(stack.info["database_url"], SHADOW)
    found = asyncio.run(diff(FiveHave(), bootstrap=stack.info["kafka_bootstrap"],
                             database_url=stack.info["database_url"], shadow=SHADOW))
    assert all(t.empty for t in found), [(t.table, t.only_live, t.only_shadow, t.examples)
                                         for t in found if not t.empty]
