"""Fault injection: processes die at chosen points (GRIDGOV_FAULT), the oracle finds nothing
lost and nothing counted twice, and every read model equals its rebuild from offset 0.

`make test` runs the short version; `make chaos` the same code with GRIDGOV_CHAOS_SCALE=10.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from kafka import KafkaProducer

from events.envelope import Event, Role
from events.log import Record, consumer, end_offsets, partitions_of
from events.topics import DEAD_LETTERS, INCIDENTS
from projections import sla
from projections.archive import Archive
from projections.matters import FiveHave
from projections.replay import fresh_schema, read_log, replay
from projections.runner import Projection, Runner
from projections.store import TP, Store
from tests.lifecycles import lifecycle
from tests.oracle import Oracle, archived, digests, in_timelines, mismatches
from tests.stack import RunningStack, an_incident, wait_until

SCALE = float(os.environ.get("GRIDGOV_CHAOS_SCALE", "1"))
PACE = 0.2  # seconds between a loader's batches: a steady stream, not a flood
RUNNER_POINTS = ("after_write_before_commit", "after_commit")
INGEST_POINTS = ("after_ack_before_receipt", "after_receipt_before_answer")


@dataclass
class Chaos:
    """A private stack whose processes read their fault points from a file we rewrite."""

    stack: RunningStack
    fault_file: Path

    def arm(self, spec: str) -> None:
        draft = self.fault_file.with_suffix(".draft")
        draft.write_text(spec, encoding="utf-8")
        draft.replace(self.fault_file)  # a new inode: every process reads the new points

    def crash(self, child: str, spec: str, timeout: float = 90) -> None:
        """Arm `spec`, wait until the supervisor restarted `child`, disarm."""
        pid = self.stack.reload()["pids"][child]
        self.arm(spec)
        try:
            wait_until(lambda: self.stack.reload()["pids"][child] != pid, timeout=timeout,
                       what=f"{child} to die at {spec} and be restarted")
        finally:
            self.arm("")


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    home = tmp_path_factory.mktemp("chaos")
    fault_file = home / "fault"
    fault_file.write_text("", encoding="utf-8")
    stack = RunningStack(home / "home", fault=f"@{fault_file}").start()
    try:
        yield Chaos(stack, fault_file)
    finally:
        stack.stop()


def a_county(rng: random.Random) -> tuple[str, list[str]]:
    county = f"{rng.randint(100000, 999999)}"
    return county, [f"{county}/{t:03d}/001/{g:02d}" for t in range(1, 4) for g in range(1, 5)]


def settled(stack: RunningStack, *projections: Projection, timeout: float = 180) -> None:
    for projection in projections:
        wait_until(lambda p=projection: stack.caught_up(p.name, *p.topics), timeout=timeout,
                   what=f"{projection.name} to reach the end of the log (lag 0)")


# -- scenario 8 (first, while the log is short): rebuilds in other batches and interleavings
async def rebuild_interleaved(projection: Projection, stack: RunningStack, schema: str,
                              until: dict[TP, int], rng: random.Random) -> None:
    """The whole log again, in batches of 1..64 records drawn from partitions at random
    (each partition still in its own order)."""
    url = stack.info["database_url"]
    await asyncio.to_thread(fresh_schema, url, schema)
    queues: dict[TP, deque[Record]] = defaultdict(deque)
    for batch in read_log(stack.info["kafka_bootstrap"], projection.topics, None, until):
        for record in batch:
            queues[(record.topic, record.partition)].append(record)
    store = await Store(url, schema=schema).open()
    runner = Runner(projection, store)
    try:
        while queues:
            size, batch = rng.randint(1, 64), []
            while len(batch) < size and queues:
                tp = rng.choice(sorted(queues))
                queue = queues[tp]
                for _ in range(min(rng.randint(1, size - len(batch)), len(queue))):
                    batch.append(queue.popleft())
                if not queue:
                    del queues[tp]
            await runner.apply(batch)
    finally:
        await store.close()


def test_two_rebuilds_in_other_batches_and_interleavings_have_identical_digests(
    chaos: Chaos,
) -> None:
    stack, rng = chaos.stack, random.Random()
    county, grids = a_county(rng)
    rules, start = sla.load(), datetime.now(UTC) - timedelta(days=3)
    stream: list[Event[Any]] = []
    while len(stream) < 500:
        stream += lifecycle(rules, rng.choice(grids), rng,
                            start + timedelta(minutes=rng.randint(0, 3000)))
    stack.publish(stream)
    kafka = consumer(stack.info["kafka_bootstrap"])
    try:
        ends = end_offsets(kafka, partitions_of(kafka, Archive.topics))
    finally:
        kafka.close()
    until = {(tp.topic, tp.partition): end for tp, end in ends.items()}
    for projection in (Archive(), FiveHave()):
        asyncio.run(replay(projection, bootstrap=stack.info["kafka_bootstrap"],
                           database_url=stack.info["database_url"],
                           schema=f"big_{projection.name}", until=until))
        asyncio.run(rebuild_interleaved(projection, stack, f"small_{projection.name}", until,
                                        rng))
        with psycopg.connect(stack.info["database_url"]) as conn:
            big = digests(conn, projection, f"big_{projection.name}")
            small = digests(conn, projection, f"small_{projection.name}")
        assert big == small, projection.name


# -- scenario 1: projectors and ingest die at random fault points during a stream ----------
def test_processes_dying_at_random_fault_points_lose_nothing_and_equal_their_rebuild(
    chaos: Chaos,
) -> None:
    stack, rng = chaos.stack, random.Random()
    county, grids = a_county(rng)
    oracle = Oracle(county)
    token = stack.token(Role.worker, county)
    crashes_wanted = max(4, int(4 * SCALE))
    enough = threading.Event()
    failures: list[BaseException] = []

    def phones() -> None:  # facts through ingest: the oracle records every 201
        try:
            with stack.ingest(token) as phone:
                sent, unanswered = 0, []
                while not enough.is_set() or sent < 4 * SCALE:
                    batch = unanswered or [an_incident(rng.choice(grids)) for _ in range(200)]
                    status = oracle.post_batch(phone, batch)
                    unanswered = batch if status is None or status >= 500 else []  # retry it
                    sent += 1
                    enough.wait(PACE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    def deciders() -> None:  # whole lifecycles straight onto the log, as the decider writes
        try:
            rules, start = sla.load(), datetime.now(UTC) - timedelta(days=20)
            while not enough.is_set():
                chunk: list[Event[Any]] = []
                while len(chunk) < 200:
                    chunk += lifecycle(rules, rng.choice(grids), rng,
                                       start + timedelta(minutes=rng.randint(0, 20000)))
                stack.publish(chunk)  # returns once the broker acknowledged every one
                oracle.ack(str(e.event_id) for e in chunk)
                enough.wait(PACE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    loaders = [threading.Thread(target=phones), threading.Thread(target=deciders)]
    for loader in loaders:
        loader.start()
    drawn = []
    try:
        for _ in range(crashes_wanted):
            who = rng.choice((Archive.name, FiveHave.name, "ingest"))
            point = rng.choice(INGEST_POINTS if who == "ingest" else RUNNER_POINTS)
            chaos.crash(who if who == "ingest" else f"projector-{who}", f"{who}:{point}=0.5")
            drawn.append(f"{who}:{point}")
    finally:
        enough.set()
        for loader in loaders:
            loader.join()
    assert not failures, failures
    assert len(drawn) == crashes_wanted

    settled(stack, Archive, FiveHave)
    logged = oracle.log_ids(stack, Archive.topics)
    anomalies = oracle.check(stack, {"archive": archived(stack, county),
                                     "five_have": in_timelines(stack, logged)}, logged)
    anomalies += mismatches(stack, Archive(), "chaos_archive")
    anomalies += mismatches(stack, FiveHave(), "chaos_five_have")
    assert [str(a) for a in anomalies] == [], f"after crashes at {drawn}"
    assert len(oracle.acked) >= 800 * SCALE


# -- scenario 4: one event id is one event, through concurrent retries and a crash ----------
def test_an_event_id_is_one_event_through_ten_concurrent_copies_and_an_ingest_crash(
    chaos: Chaos,
) -> None:
    stack = chaos.stack
    county, grids = a_county(random.Random())
    token = stack.token(Role.worker, county)

    def ten_at_once(event: dict[str, Any]) -> list[httpx.Response]:
        def post(_: int) -> httpx.Response:
            with stack.ingest(token) as phone:
                return phone.post("/v1/events", json=event)

        with ThreadPoolExecutor(10) as pool:
            return list(pool.map(post, range(10)))

    before = an_incident(grids[0])
    answers = ten_at_once(before)
    assert [a.status_code for a in answers] == [201] * 10
    assert len({a.text for a in answers}) == 1  # every copy gets the first receipt

    after = an_incident(grids[1])  # the broker acknowledges it; ingest dies before the receipt
    pid = stack.reload()["pids"]["ingest"]
    chaos.arm("ingest:after_ack_before_receipt=1")
    try:
        with pytest.raises(httpx.TransportError), stack.ingest(token) as phone:
            phone.post("/v1/events", json=after)
        wait_until(lambda: stack.reload()["pids"]["ingest"] != pid,
                   what="the supervisor to restart ingest")
    finally:
        chaos.arm("")
    wait_until(lambda: _healthy(stack), timeout=60, what="ingest to answer again")
    # the id was claimed for its body before it reached the log: another body is refused
    # even though no receipt was stored, and the phone's genuine retry then goes through
    impostor = {**after, "payload": {**after["payload"], "title": "冒名的另一件事"}}
    with stack.ingest(token) as phone:
        refused = phone.post("/v1/events", json=impostor)
    assert refused.status_code == 422, refused.text
    answers = ten_at_once(after)
    assert [a.status_code for a in answers] == [201] * 10
    assert len({a.text for a in answers}) == 1

    for event in (before, after):
        changed = {**event, "payload": {**event["payload"], "title": "另一件事"}}
        with stack.ingest(token) as phone:
            refused = phone.post("/v1/events", json=changed)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "event_id"

    ids = [before["event_id"], after["event_id"]]
    settled(stack, Archive, FiveHave)
    assert archived(stack, county) == {i: 1 for i in ids}
    assert in_timelines(stack, ids) == {i: 1 for i in ids}
    copies = dict(stack.sql("select event_id::text, count(*) from archive_duplicates"
                            " where event_id = any(%s::uuid[]) group by 1", ids))
    assert copies[before["event_id"]] >= 1  # concurrent copies that raced past the receipt
    assert copies[after["event_id"]] >= 1  # at least the copy sent again after the crash


def _healthy(stack: RunningStack) -> bool:
    try:
        return httpx.get(stack.info["ingest_url"] + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# -- scenario 6: 1 % poison ----------------------------------------------------------------
def poison(marker: str, n: int, rng: random.Random) -> bytes:
    valid = an_incident(f"poison/{marker}/001/01")
    kind = n % 4
    if kind == 0:
        return f'{{"not json {marker} {n}'.encode()
    if kind == 1:
        return orjson_bytes({**valid, "event_type": "incident.teleported", "n": n})
    if kind == 2:
        return orjson_bytes({**valid, "schema_version": 99, "n": n})
    return b"\xff\xfe" + f"{marker} {n}".encode() + bytes(rng.randrange(256) for _ in range(8))


def orjson_bytes(value: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(value)


def test_one_percent_poison_is_dead_lettered_whole_and_everything_else_applied(
    chaos: Chaos,
) -> None:
    stack, rng = chaos.stack, random.Random()
    county, grids = a_county(rng)
    oracle = Oracle(county)
    token = stack.token(Role.worker, county)
    marker = uuid.uuid4().hex
    producer = KafkaProducer(bootstrap_servers=stack.info["kafka_bootstrap"], acks="all")
    parked: dict[tuple[str, int, int], bytes] = {}
    with stack.ingest(token) as phone:
        for n in range(int(10 * SCALE)):
            events = [an_incident(rng.choice(grids)) for _ in range(99)]
            assert oracle.post_batch(phone, events) == 200
            value = poison(marker, n, rng)
            where = producer.send(INCIDENTS.name, key=events[0]["aggregate_id"].encode(),
                                  value=value, headers=[("chaos", marker.encode())]
                                  ).get(timeout=10)
            parked[(where.topic, where.partition, where.offset)] = value
    producer.close()
    assert len(oracle.acked) == 99 * int(10 * SCALE)

    settled(stack, Archive, FiveHave)
    logged = oracle.log_ids(stack, Archive.topics)
    anomalies = oracle.check(stack, {"archive": archived(stack, county),
                                     "five_have": in_timelines(stack, logged)}, logged)
    assert [str(a) for a in anomalies] == []

    letters = consumer(stack.info["kafka_bootstrap"])
    tps = partitions_of(letters, [DEAD_LETTERS.name])
    ends = end_offsets(letters, tps)
    letters.assign(tps)
    letters.seek_to_beginning(*tps)
    found: dict[tuple[str, int, int], list[tuple[bytes, dict[str, bytes]]]] = defaultdict(list)
    left = {tp for tp in tps if ends[tp] > 0}
    while left:
        for tp, records in letters.poll(timeout_ms=500).items():
            for r in records:
                headers = dict(r.headers or ())
                if headers.get("chaos") == marker.encode():
                    at = (headers["dlq.topic"].decode(), int(headers["dlq.partition"]),
                          int(headers["dlq.offset"]))
                    found[at].append((r.value, headers))
            if letters.position(tp) >= ends[tp]:
                left.discard(tp)
    letters.close()
    assert set(found) == set(parked)  # every poison record at its original position
    for at, copies in found.items():
        assert len(copies) == 1, f"{at} dead-lettered {len(copies)} times"
        value, headers = copies[0]
        assert value == parked[at]  # the original bytes, untouched
        assert headers["dlq.reason"]
        assert headers["dlq.projection"] == b"archive"
