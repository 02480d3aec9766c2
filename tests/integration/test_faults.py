"""Fault injection: processes die at chosen points (GRIDGOV_FAULT), the oracle finds nothing
lost and nothing counted twice, and every read model equals its rebuild from offset 0.

`make test` runs the short version; `make chaos` the same code with GRIDGOV_CHAOS_SCALE=10.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from kafka import KafkaProducer
from psycopg import sql

from events.catalog import event_from_json
from events.codec import MAX_EVENT_BYTES
from events.envelope import Event, Role
from events.log import Record, consumer, dead_letter_key, dead_letters, end_offsets, partitions_of
from events.topics import DEAD_LETTERS, INCIDENTS
from projections import points_rules, sla
from projections.archive import Archive
from projections.decider import incident_decider_app, points_decider_app
from projections.five_have import fold
from projections.matters import FiveHave
from projections.replay import fresh_schema, read_log, replay
from projections.resolution_rates import local_day
from projections.runner import Projection, Runner
from projections.store import TP, Store
from tests.lifecycles import lifecycle
from tests.oracle import (
    Oracle,
    archived,
    digests,
    in_timelines,
    live_and_rebuilt,
    mismatches,
)
from tests.stack import RunningStack, an_incident, http, wait_until

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


def anomalies_once_settled(stack: RunningStack, oracle: Oracle, county: str, shadow: str
                           ) -> list[str]:
    """Once the archive and the chain hold the whole log: the oracle's anomalies, and every
    row where either read model differs from its rebuild (schemas `{shadow}_archive`, ...)."""
    settled(stack, Archive, FiveHave)
    logged = oracle.log_ids(stack, Archive.topics)
    found = oracle.check(stack, {"archive": archived(stack, county),
                                 "five_have": in_timelines(stack, logged)}, logged)
    found += mismatches(stack, Archive(), f"{shadow}_archive")
    found += mismatches(stack, FiveHave(), f"{shadow}_five_have")
    return [str(a) for a in found]


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


# -- scenario 3: the broker killed -9 during ingest, restarted and re-seeded ----------------
def test_the_broker_killed_during_ingest_is_restarted_reseeded_and_ingest_recovers_alone(
    chaos: Chaos,
) -> None:
    """The embedded broker keeps its log in memory (its Tansu build has no PostgreSQL
    storage): what it acknowledged and the archive had not yet applied dies with it, and the
    re-seed sends ingest's acknowledged events again from their claims (its outbox)."""
    stack, rng = chaos.stack, random.Random()
    county, grids = a_county(rng)
    oracle = Oracle(county)
    reads: list[tuple[float, int, Any]] = []  # a supervisor's dashboard: sent, status, lag
    reading = threading.Event()

    def dashboard() -> None:
        with stack.query(stack.token(Role.supervisor, county)) as reader:
            while not reading.is_set():
                sent = time.monotonic()
                answer = reader.get("/v1/rates", params={"place": county, "period": "2026"})
                reads.append((sent, answer.status_code,
                              answer.json().get("watermark", {}).get("lag_records")))
                reading.wait(0.05)  # a dashboard's pace, not a wait for anything

    # phones only: a writer straight onto the log, which the supervisor cannot hold off,
    # would race its re-seed of the new broker
    with Stream(stack, oracle, grids, rng, straight_to_log=False) as stream:
        wait_until(lambda: stack.archived_under(county) >= 300, timeout=120,
                   what="the archive to hold the stream's first events")
        threading.Thread(target=dashboard, daemon=True).start()
        wait_until(lambda: reads, what="the dashboard's first read")
        broker = stack.reload()["pids"]["broker"]
        archived_before = set(archived(stack, county))
        killed = time.monotonic()
        os.kill(broker, signal.SIGKILL)  # the broker of our own stack, by its id
        wait_until(lambda: stack.reload()["pids"]["broker"] != broker, timeout=120,
                   what="the supervisor to restart the broker and re-seed it")
        reseeded = time.monotonic()
        wait_until(lambda: any(at > reseeded for at in stream.answered_201.values()),
                   timeout=120, what="ingest to accept again by itself")
        back = min(at for at in stream.answered_201.values() if at > reseeded)
        wait_until(lambda: sum(at > reseeded for at in stream.answered_201.values()) >= 300,
                   timeout=120, what="the stream to go on after the restart")
        reading.set()
    assert not stream.failures, stream.failures
    during = [(status, lag) for sent, status, lag in reads if killed <= sent <= back]
    assert during, "the dashboard sent nothing while the broker was away"
    since = [(status, lag) for sent, status, lag in reads if sent >= killed]
    assert all(status == 200 and (lag is None or lag >= 0) for status, lag in since), since
    outage = [(s, r) for at, s, r in stream.answers if killed <= at <= back and s is not None]
    assert all(s == 200 or (s == 503 and r) for s, r in outage), outage  # 503 + Retry-After
    assert any(s == 503 for s, _ in outage)  # ingest stayed up, holding writes off
    anomalies = anomalies_once_settled(stack, oracle, county, "broker")
    assert len(archived_before) >= 300
    assert anomalies == []  # no lost-write: not even the archive's lag
    not_yet_archived = sum(at < killed and i not in archived_before
                           for i, at in stream.answered_201.items())
    print(f"scenario 3: ingest back {back - killed:.1f} s after the kill;"  # noqa: T201
          f" {Counter(s for s, _ in outage)} answers meanwhile; {len(oracle.acked)}"
          f" acknowledged, {not_yet_archived} of them not archived at the kill,"
          f" {len(oracle.indeterminate)} unanswered")


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

    anomalies = anomalies_once_settled(stack, oracle, county, "chaos")
    assert anomalies == [], f"after crashes at {drawn}"
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
    assert copies.get(after["event_id"], 0) >= 1  # the copy sent again after the crash


def _healthy(stack: RunningStack) -> bool:
    try:
        with http(stack.info["ingest_url"], timeout=1) as ingest:
            return ingest.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


# -- scenario 6: 1 % poison ----------------------------------------------------------------
def poison(marker: str, n: int, rng: random.Random) -> bytes:
    valid = an_incident(f"poison/{marker}/001/01")
    kind = n % 5
    if kind == 4:  # a valid event (a ranking of 20,000 households), larger than MAX_EVENT_BYTES
        watermark = {f"hh-{marker}-{i:05d}-{'x' * 20}": i for i in range(20_000)}
        return orjson_bytes({**valid, "actor": {"id": "points-decider", "role": "system"},
                             "recorded_at": valid["occurred_at"], "grid": "000000/000/001/01",
                             "event_type": "points.ranking_published", "aggregate_seq": n,
                             "payload": {"compound": "000000/000/001/01", "period": "2026-10",
                                         "ranks": [], "progress": None, "watermark": watermark,
                                         "tie_break": "points, then the earlier last deed"}})
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
    producer = KafkaProducer(bootstrap_servers=stack.info["kafka_bootstrap"], acks="all",
                             max_request_size=8 * 1024 * 1024)
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
        if len(value) > MAX_EVENT_BYTES:  # valid, yet parked for its size
            assert event_from_json(value)
            assert b"larger than" in headers["dlq.reason"]
    assert sum(len(v) > MAX_EVENT_BYTES for v in parked.values()) == int(10 * SCALE) // 5


# -- gap of scenario 6: a crash between the dead letter and the batch's commit --------------
def test_a_poison_record_parked_again_after_a_crash_is_one_dead_letter(chaos: Chaos) -> None:
    stack, marker = chaos.stack, uuid.uuid4().hex
    producer = KafkaProducer(bootstrap_servers=stack.info["kafka_bootstrap"], acks="all")
    pid = stack.reload()["pids"]["projector-archive"]
    chaos.arm("archive:after_dead_letter=1")  # parked, then dead before the batch commits
    try:
        where = producer.send(INCIDENTS.name, key=marker.encode(),
                              value=f"not json {marker}".encode()).get(timeout=10)
        wait_until(lambda: stack.reload()["pids"]["projector-archive"] != pid, timeout=90,
                   what="the archive to die after parking the poison record")
    finally:
        chaos.arm("")
        producer.close()
    settled(stack, Archive)  # the restarted archive parks it again, then commits past it
    key = dead_letter_key(Record(where.topic, where.partition, where.offset, None, b""))
    copies = [r for r in _raw_dead_letters(stack) if r.key == key]
    assert len(copies) >= 2  # the crash really came between the two
    letters = dead_letters(stack.info["kafka_bootstrap"])
    assert letters[key].value == f"not json {marker}".encode()
    assert dict(letters[key].headers)["dlq.key"] == marker.encode()
    assert sum(1 for k in letters if k == key) == 1


def _raw_dead_letters(stack: RunningStack) -> list[Any]:
    kafka = consumer(stack.info["kafka_bootstrap"])
    try:
        tps = partitions_of(kafka, [DEAD_LETTERS.name])
        ends = end_offsets(kafka, tps)
        kafka.assign(tps)
        kafka.seek_to_beginning(*tps)
        out, left = [], {tp for tp in tps if ends[tp] > 0}
        while left:
            for tp, records in kafka.poll(timeout_ms=500).items():
                out += [r for r in records if r.offset < ends[tp]]
                if kafka.position(tp) >= ends[tp]:
                    left.discard(tp)
        return out
    finally:
        kafka.close()


# -- scenario 9: faust #606, the deciders' agents pinned at concurrency 1 --------------------
# (projectors are plain consumers applying one batch at a time: projections/worker.py)
def test_decider_agents_are_pinned_at_concurrency_one(chaos: Chaos) -> None:
    where = {"bootstrap": chaos.stack.info["kafka_bootstrap"],
             "database_url": chaos.stack.info["database_url"], "home": chaos.stack.home}
    for app in (incident_decider_app(**where, rules=sla.load()),
                points_decider_app(**where, catalog=points_rules.load(points_rules.DEFAULT_RULES))):
        assert [agent.concurrency for agent in app.agents.values()] == [1], app.conf.id
        # faust makes its data directory even for in-memory tables: in the stack's home, not
        # in whatever directory the process was started from
        assert app.conf.datadir.parent == chaos.stack.home, app.conf.datadir


def test_a_slow_first_batch_killed_with_sigkill_is_applied_after_the_restart(
    chaos: Chaos,
) -> None:
    stack = chaos.stack
    county, grids = a_county(random.Random())
    token = stack.token(Role.worker, county)
    settled(stack, Archive)
    pid = stack.reload()["pids"]["projector-archive"]
    with psycopg.connect(stack.info["database_url"]) as holder:
        # the archive's batch waits on its offset rows: a slow first message, held by us
        holder.execute("select 1 from projection_offsets where projection = 'archive'"
                       " for update").fetchall()
        with stack.ingest(token) as phone:
            event = an_incident(grids[0])
            assert phone.post("/v1/events", json=event).status_code == 201
        wait_until(lambda: stack.sql(
            "select 1 from pg_stat_activity where wait_event_type = 'Lock'"
            " and query like '%%projection_offsets%%for update%%'"), timeout=30,
            what="the archive's batch to wait on its offsets")
        os.kill(pid, signal.SIGKILL)  # a process of our own stack, by its id
        holder.rollback()
    wait_until(lambda: stack.reload()["pids"]["projector-archive"] != pid, timeout=60,
               what="the supervisor to restart the archive")
    wait_until(lambda: stack.archived_under(county) == 1, timeout=90,
               what="the slow event applied by the restarted archive")
    assert archived(stack, county) == {event["event_id"]: 1}


# -- scenario 2: PostgreSQL crashes twice mid-stream ----------------------------------------
@dataclass
class Stream:
    """Phones through ingest and deciders straight onto the log, until stopped."""

    stack: RunningStack
    oracle: Oracle
    grids: list[str]
    rng: random.Random
    straight_to_log: bool = True  # deciders' lifecycles too, besides the phones' reports
    stop: threading.Event = field(default_factory=threading.Event)
    failures: list[BaseException] = field(default_factory=list)
    answers: list[tuple[float, int | None, str | None]] = field(default_factory=list)
    answered_201: dict[str, float] = field(default_factory=dict)  # event id -> when

    def __enter__(self) -> Stream:
        self.threads = [threading.Thread(target=self._phones)]
        if self.straight_to_log:
            self.threads.append(threading.Thread(target=self._deciders))
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _phones(self) -> None:
        token = self.stack.token(Role.worker, self.oracle.place)
        try:
            with self.stack.ingest(token) as phone:
                unanswered: list[dict[str, Any]] = []
                while not self.stop.is_set():
                    batch = unanswered or [an_incident(self.rng.choice(self.grids))
                                           for _ in range(100)]
                    try:
                        answer = phone.post("/v1/events/batch", json={"events": batch})
                    except httpx.HTTPError:
                        self.oracle.unknown(str(e["event_id"]) for e in batch)
                        self.answers.append((time.monotonic(), None, None))
                        unanswered = batch
                        self.stop.wait(PACE)
                        continue
                    self.answers.append((time.monotonic(), answer.status_code,
                                         answer.headers.get("retry-after")))
                    if answer.status_code == 200:
                        for result in answer.json()["results"]:
                            if result["status"] == 201:
                                event_id = str(batch[result["index"]]["event_id"])
                                self.answered_201.setdefault(event_id, time.monotonic())
                                self.oracle.ack([event_id])
                        unanswered = []
                    else:
                        self.oracle.unknown(str(e["event_id"]) for e in batch)
                        unanswered = batch
                    self.stop.wait(PACE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.failures.append(exc)

    def _deciders(self) -> None:
        try:
            rules, start = sla.load(), datetime.now(UTC) - timedelta(days=20)
            while not self.stop.is_set():
                chunk: list[Event[Any]] = []
                while len(chunk) < 100:
                    chunk += lifecycle(rules, self.rng.choice(self.grids), self.rng,
                                       start + timedelta(minutes=self.rng.randint(0, 20000)))
                self.stack.publish(chunk)
                self.oracle.ack(str(e.event_id) for e in chunk)
                self.stop.wait(PACE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.failures.append(exc)

    def refused_since(self, since: float) -> bool:
        return any(at > since and status != 200 for at, status, _ in list(self.answers))


def applied_total(stack: RunningStack, projection: str) -> int:
    return int(stack.sql("select coalesce(sum(next_offset), 0) from projection_offsets"
                         " where projection = %s", projection)[0][0])


def test_postgres_crashing_twice_mid_stream_pauses_projectors_and_skips_nothing(
    chaos: Chaos,
) -> None:
    stack, rng = chaos.stack, random.Random()
    county, grids = a_county(rng)
    oracle = Oracle(county)
    stalls: list[float] = []
    with Stream(stack, oracle, grids, rng) as stream:
        for _ in range(max(2, int(2 * SCALE))):
            so_far = len(oracle.acked)
            wait_until(lambda n=so_far: len(oracle.acked) >= n + 400, timeout=120,
                       what="the stream to go on")
            before = {p: applied_total(stack, p) for p in (Archive.name, FiveHave.name)}
            crashed = time.monotonic()
            stack.crash_postgres()
            wait_until(lambda c=crashed: stream.refused_since(c), timeout=60,
                       what="ingest to refuse while PostgreSQL is down")
            stack.start_postgres()
            up = time.monotonic()
            for name, total in before.items():
                wait_until(lambda n=name, t=total: applied_total(stack, n) > t, timeout=60,
                           what=f"{name} to apply again after PostgreSQL came back")
                stalls.append(time.monotonic() - up)
    assert not stream.failures, stream.failures
    refusals = [(s, r) for _, s, r in stream.answers if s is not None and s != 200]
    assert all(s == 503 and r for s, r in refusals), refusals  # 503 with Retry-After
    assert max(stalls) < 60, stalls
    anomalies = anomalies_once_settled(stack, oracle, county, "pgcrash")
    assert anomalies == []
    print(f"scenario 2: stalls after PostgreSQL came back {[round(s, 1) for s in stalls]} s;"  # noqa: T201
          f" {len(oracle.acked)} acknowledged, {len(refusals)} refused answers")


# -- a rebuild's unlogged tables through a PostgreSQL crash ---------------------------------
def test_a_rebuild_cut_off_by_a_postgres_crash_comes_back_empty_and_carries_on_from_0(
    chaos: Chaos,
) -> None:
    """A rebuild writes no WAL (its tables are unlogged): crash recovery empties each of them,
    its offsets with them, so the replay run again carries on from offset 0, never from an
    offset whose rows were lost, and ends equal to the live model."""
    stack, shadow = chaos.stack, "crashed_archive"
    county, grids = a_county(random.Random())
    batch = {"events": [an_incident(random.choice(grids)) for _ in range(200)]}  # noqa: S311

    def sent() -> bool:  # again after the crash: the same events, every one a duplicate
        with stack.ingest(stack.token(Role.worker, county)) as phone:
            return phone.post("/v1/events/batch", json=batch).status_code == 200

    assert sent()
    url = stack.info["database_url"]
    asyncio.run(replay(Archive(), bootstrap=stack.info["kafka_bootstrap"], database_url=url,
                       schema=shadow))

    def rows() -> dict[str, int]:
        with psycopg.connect(url) as conn:
            return {table: conn.execute(sql.SQL("select count(*) from {}.{}").format(
                sql.Identifier(shadow), sql.Identifier(table))).fetchone()[0]  # type: ignore[index]
                for table in [*Archive.tables, "projection_offsets"]}

    before = rows()
    assert before["archive"] > 0 and before["projection_offsets"] > 0, before
    stack.crash_postgres()
    stack.start_postgres()
    assert rows() == dict.fromkeys(before, 0)
    live, rebuilt = live_and_rebuilt(stack, Archive(), shadow, fresh=False)
    assert rebuilt == live
    # the next scenario's phones find ingest writing again
    wait_until(sent, timeout=60, what="ingest to accept again after PostgreSQL came back")


# -- scenario 5: phones syncing hours and weeks late; a resolve before its report ------------
def test_a_phone_syncing_hours_and_weeks_late_changes_past_figures_and_loses_nothing(
    chaos: Chaos,
) -> None:
    stack, rng = chaos.stack, random.Random()
    county, grids = a_county(rng)
    oracle = Oracle(county)
    token = stack.token(Role.worker, county)
    now = datetime.now(UTC)
    per_stamp = int(500 * SCALE)
    stamped: Counter[date] = Counter()
    with stack.ingest(token) as phone:
        for late in (timedelta(hours=6), timedelta(days=40)):
            events = [an_incident(rng.choice(grids), occurred_at=(
                now - late + timedelta(seconds=i)).isoformat()) for i in range(per_stamp)]
            stamped.update(local_day(datetime.fromisoformat(e["occurred_at"])) for e in events)
            for at in range(0, len(events), 500):
                assert oracle.post_batch(phone, events[at:at + 500]) == 200
    assert len(oracle.acked) == 2 * per_stamp
    settled(stack, Archive, FiveHave)
    reported = dict(stack.sql("select day, n from rate_daily where place = %s"
                              " and measure = 'reported'", county))
    assert reported == dict(stamped)  # each counted on the day it happened, none dropped
    logged = oracle.log_ids(stack, Archive.topics)
    anomalies = oracle.check(stack, {"archive": archived(stack, county),
                                     "five_have": in_timelines(stack, logged)}, logged)
    assert [str(a) for a in anomalies] == []

    # a matter's later steps arrive first (a decider's events, a phone's queue in any order)
    events = lifecycle(sla.load(), grids[0], rng, now - timedelta(days=2))
    incident = events[0].aggregate_id
    stack.publish(events[1:])
    settled(stack, FiveHave)
    parked = stack.sql("select count(*) from incident_timeline where incident_id = %s",
                       incident)[0][0]
    assert parked == len(events) - 1  # kept in the matter's timeline, not dropped
    assert stack.sql("select report_at from five_have where incident_id = %s",
                     incident) in ([], [(None,)])
    stack.publish(events[:1])  # the report comes last
    settled(stack, FiveHave)
    in_order = fold(incident, events)
    assert fold(incident, reversed(events)) == in_order  # the fold ignores arrival order
    found = stack.sql("select stage, report_at, resolve_at, supervise_at, chain_complete,"
                      " last_seq from five_have where incident_id = %s", incident)
    assert found == [(in_order.stage, in_order.links["report"].at,
                      in_order.links["resolve"].at, in_order.links["supervise"].at,
                      in_order.complete, in_order.last_seq)]


# -- scenario 7: the disk under PostgreSQL's data directory fills up ------------------------
@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of its own whose PostgreSQL lives on a small tmpfs (we run as root: the test
    mounts it; without CAP_SYS_ADMIN `mount` fails here, naming why)."""
    home = tmp_path_factory.mktemp("small_disk") / "home"
    pgdata = home / "pg"
    pgdata.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700",
                              "tmpfs", str(pgdata)], capture_output=True, text=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs for PostgreSQL: {mounted.stderr}"
    stack = RunningStack(home)
    try:
        stack.start()
        # a disk's WAL must fit it: PostgreSQL recycles WAL at a checkpoint, by default after
        # 1 GB of it (max_wal_size) or 5 minutes
        with psycopg.connect(stack.info["database_url"], autocommit=True) as conn:
            conn.execute("alter system set max_wal_size = '256MB'")
            conn.execute("select pg_reload_conf()")
        yield stack
    finally:
        stack.stop()
        with contextlib.suppress(OSError):  # PostgreSQL's own account, kept past the umount
            shutil.copy(pgdata / "log", home / "postgres.log")
        subprocess.run(["umount", "--lazy", str(pgdata)], check=False)


#: room for what the stream itself writes after the ballast is gone: ~1,000 events/s dirty
#: several MB/s of read models and WAL, and on a loaded machine the scenario runs ~2 minutes (at
#: 256 MB the disk twice filled up again for real and PostgreSQL PANICked mid-settle)
DISK_MB = 2048


def test_a_full_disk_under_postgres_refuses_writes_until_freed_and_loses_nothing(
    small_disk: RunningStack,
) -> None:
    stack, rng = small_disk, random.Random()
    county, grids = a_county(rng)
    oracle = Oracle(county)
    ballast = stack.pgdata / "ballast"
    pids = {n: stack.reload()["pids"][n] for n in ("ingest", "projector-archive",
                                                     "projector-five_have")}
    with Stream(stack, oracle, grids, rng) as stream:
        wait_until(lambda: len(oracle.acked) >= 400, timeout=120, what="the stream to start")
        filled = time.monotonic()
        fill_up(ballast)
        wait_until(lambda: stream.refused_since(filled), timeout=120,
                   what="ingest to refuse while the disk is full")
        for name in ("projector-archive", "projector-five_have"):  # they wait, not skip
            wait_until(lambda n=name: "PostgreSQL refused a batch" in _log(stack, n),
                       timeout=60, what=f"{name} to meet the full disk")
        assert "No space left on device" in (stack.pgdata / "log").read_text(errors="replace")
        acked_while_full = len(oracle.acked)
        ballast.unlink()
        freed = time.monotonic()
        # a WAL write on the full disk PANICs PostgreSQL and its postmaster recovers by itself,
        # accepting nothing meanwhile; only a postmaster that gave up is started again
        wait_until(lambda: stack.postgres_accepts() or not stack.postmaster_running(),
                   timeout=120, what="PostgreSQL to accept again or its postmaster to exit")
        if not stack.postgres_accepts():
            stack.start_postgres()
        wait_until(lambda: len(oracle.acked) > acked_while_full + 200, timeout=120,
                   what="ingest to accept again once space is freed")
        recovered = time.monotonic() - freed
    assert not stream.failures, stream.failures
    assert {n: stack.reload()["pids"][n] for n in pids} == pids  # nobody crash-looped
    refusals = [(s, r) for _, s, r in stream.answers if s is not None and s != 200]
    assert refusals and all(s == 503 and r for s, r in refusals), refusals
    try:
        anomalies = anomalies_once_settled(stack, oracle, county, "disk")
    except AssertionError as exc:  # a projector that never caught up: what held the disk
        raise AssertionError(f"{exc}; {_disk_held(stack.pgdata)}") from None
    assert anomalies == []
    print(f"scenario 7: {len(refusals)} refusals while full, ingest back {recovered:.1f} s"  # noqa: T201
          f" after freeing; {len(oracle.acked)} acknowledged")


def fill_up(ballast: Path) -> None:
    """Take every free byte of the ballast's disk, a chunk at a time, halving the chunk when it
    no longer fits: one fallocate of all the free space fails whole (tmpfs gives back what
    it took) if anything else writes meanwhile, and then nothing is full."""
    with open(ballast, "wb") as fill:  # noqa: PTH123
        size, chunk = 0, 64 << 20
        while chunk >= 4096:
            try:
                os.posix_fallocate(fill.fileno(), size, chunk)
                size += chunk
            except OSError:
                chunk //= 2


def _disk_held(pgdata: Path) -> str:
    """The small disk's free space and what its data directory's largest parts hold: why a
    projector could still not extend its tables after the ballast was gone."""
    disk = os.statvfs(pgdata)
    held: Counter[str] = Counter()
    for path in pgdata.rglob("*"):
        with contextlib.suppress(OSError):  # PostgreSQL removes files as we walk
            if path.is_file():
                held[path.relative_to(pgdata).parts[0]] += path.stat().st_blocks * 512
    total = disk.f_blocks * disk.f_frsize >> 20
    return (f"{disk.f_bavail * disk.f_frsize >> 20} MB free of {total};"
            + "".join(f" {part} {size >> 20} MB" for part, size in held.most_common(5)))


def _log(stack: RunningStack, child: str) -> str:
    return (stack.home / "logs" / f"{child}.log").read_text(encoding="utf-8", errors="replace")
