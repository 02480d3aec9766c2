"""Auditors: a rebuild from offset 0 equals the live read models; as-of figures; tampering."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from psycopg.pq import TransactionStatus

from events.envelope import Actor, Role, covers
from projections import sla
from projections.archive import Archive
from projections.audit import check_digest, digest, verify_archive
from projections.live import CHANNEL
from projections.matters import FiveHave, lock_matters
from projections.periods import period
from projections.replay import (
    REBUILD_COLLECTION,
    PromotionRefused,
    compare,
    diff,
    log_size,
    promote,
    replay,
)
from projections.resolution_rates import figures, roll_up_held
from projections.store import Store, in_schema
from services.rates import counts_of
from tests.conftest import GRACE_SECONDS
from tests.lifecycles import dispute, lifecycle
from tests.stack import RunningStack, a_patrol, an_incident, command, wait_until

RULES = sla.load()


def settled(stack: RunningStack) -> None:
    for projection in (Archive(), FiveHave()):
        wait_until(lambda p=projection: stack.caught_up(p.name, *p.topics), timeout=120,
                   what=f"{projection.name} to reach the end of the log")


def mixed_workload(stack: RunningStack, county: str, rng: random.Random) -> None:
    """Every kind of event, late phones, retried posts and a projector killed midway."""
    grids = [f"{county}/101/{c:03d}/{g:02d}" for c in (1, 2) for g in (1, 2)]
    start = datetime.now(UTC) - timedelta(days=40)
    decided = [e for n in range(150) for e in (
        lifecycle(RULES, rng.choice(grids), rng, start + timedelta(hours=n)) if n % 3
        else dispute(RULES, rng.choice(grids), rng, start + timedelta(hours=n),
                     rng.choice(["succeeded", "failed"])))]
    pid = stack.reload()["pids"]["projector-five_have"]
    stack.publish(decided[: len(decided) // 2])
    os.kill(pid, signal.SIGKILL)  # a crash in the middle of the stream
    stack.publish(decided[len(decided) // 2:])
    worker = stack.token(Role.worker, county)
    with stack.ingest(worker) as phone:
        for grid in grids:
            late = an_incident(grid, occurred_at=(start - timedelta(days=3)).isoformat())
            first = phone.post("/v1/events", json=late)
            assert first.status_code == 201
            assert phone.post("/v1/events", json=late).json() == first.json()  # a retry
            assert phone.post("/v1/events", json=a_patrol(grid)).status_code == 201
        reported = an_incident(grids[0])
        assert phone.post("/v1/events", json=reported).status_code == 201
    wait_until(lambda: stack.sql("select 1 from five_have where incident_id = %s",
                                 reported["aggregate_id"]), what="the report in the chain")
    with stack.ingest(worker) as phone:  # commands too: through the decider
        assert command(phone, reported["aggregate_id"], {
            "type": "resolve", "measures": "当场处置", "outcome": "已解决"}).status_code == 200
    wait_until(lambda: stack.reload()["pids"]["projector-five_have"] != pid,
               what="the chain projector's restart")


def sla_done(stack: RunningStack, county: str) -> None:
    """The SLA clock has emitted all it owes the county's matters (overdue, then escalation)."""
    wait_until(lambda: not stack.sql(
        "select 1 from five_have where grid like %s and stage in ('reported', 'assigned',"
        " 'owned') and deadline < now() - interval '%s seconds' and level <> 'county'"
        " and (not overdue or last_escalated_at is null or last_escalated_at < deadline)",
        county + "/%", GRACE_SECONDS + 1), timeout=60, what="the SLA clock to finish")


def test_a_full_rebuild_diffs_empty_against_every_live_read_model(stack: RunningStack) -> None:
    rng = random.Random(6)
    county = f"{rng.randint(100000, 999999)}"
    mixed_workload(stack, county, rng)
    settled(stack)
    sla_done(stack, county)
    settled(stack)
    url, bootstrap = stack.info["database_url"], stack.info["kafka_bootstrap"]
    # two workers: two processes, each rebuilding its share of the partitions (one worker's
    # rebuilds equal the live models in test_faults and test_five_have_crashes)
    for projection in (Archive(), FiveHave()):
        shadow = f"audit_{projection.name}"
        logged, told = log_size(bootstrap, url, projection.topics), []
        applied = asyncio.run(replay(projection, bootstrap=bootstrap, database_url=url,
                                     schema=shadow, workers=2, progress=told.append))
        assert applied > 0
        assert sum(told) >= logged  # every record the log held when the rebuild began
        found = asyncio.run(diff(projection, bootstrap=bootstrap, database_url=url,
                                 shadow=shadow))
        assert [t.table for t in found] == list(projection.tables)
        assert all(t.empty for t in found), [t for t in found if not t.empty]
    # the archive alone rebuilds the chain and the rates too, when the broker lost the start
    asyncio.run(replay(FiveHave(), bootstrap=None, database_url=url,
                       schema="audit_five_have_archive", workers=2))
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("select 1 from projection_offsets where projection = 'five_have'"
                     " for update")  # hold the live chain still while comparing
        found = compare(conn, FiveHave(), "audit_five_have_archive")
    assert all(t.empty for t in found), [t for t in found if not t.empty]


def test_a_bug_in_a_projector_shows_up_in_the_diff(stack: RunningStack) -> None:
    settled(stack)
    asyncio.run(replay(OffByOne(), bootstrap=stack.info["kafka_bootstrap"],
                       database_url=stack.info["database_url"], schema="audit_buggy"))
    found = {t.table: t for t in asyncio.run(diff(
        FiveHave(), bootstrap=stack.info["kafka_bootstrap"],
        database_url=stack.info["database_url"], shadow="audit_buggy"))}
    assert found["five_have"].only_live > 0 and found["five_have"].only_shadow > 0
    assert found["rate_facts"].empty


def test_an_as_of_figure_equals_what_the_live_api_said_then(stack: RunningStack) -> None:
    rng = random.Random(2023)
    place = f"{rng.randint(100000, 999999)}"
    grids = [f"{place}/105/001/{g:02d}" for g in (1, 2, 3)]
    year_start = datetime(2023, 1, 1, tzinfo=sla.LOCAL)

    def disputes(n: int, recorded: datetime) -> list[Any]:
        found = [e for _ in range(n) for e in dispute(
            RULES, rng.choice(grids), rng,
            year_start + timedelta(minutes=rng.randrange(360 * 24 * 60)),
            rng.choice(["succeeded"] * 9 + ["failed"]))]
        return [e.model_copy(update={"recorded_at": recorded}) for e in found]

    stack.publish(disputes(40, datetime.now(UTC) - timedelta(minutes=1)))
    settled(stack)
    sla_done(stack, place)  # failed mediations of 2023 are long overdue: let the clock speak
    settled(stack)
    supervisor = stack.token(Role.supervisor, place)
    with stack.query(supervisor) as api:
        said = api.get("/v1/rates", params={"place": place, "period": "2023"}).json()
    moment = datetime.now(UTC)
    # late phones: more 2023 disputes recorded after that moment
    stack.publish(disputes(15, moment + timedelta(seconds=1)))
    settled(stack)
    with stack.query(supervisor) as api:
        today = api.get("/v1/rates", params={"place": place, "period": "2023"}).json()
    assert today["counts"]["disputes_found"] == said["counts"]["disputes_found"] + 15

    asyncio.run(replay(FiveHave(), bootstrap=stack.info["kafka_bootstrap"],
                       database_url=stack.info["database_url"], schema="audit_asof",
                       as_of=moment))

    async def as_of() -> tuple[dict[str, int], Any]:
        store = await Store(stack.info["database_url"], schema="audit_asof").open()
        try:
            async with store.cursor() as cur:
                counts, _ = await counts_of(cur, place, period(said["period"]["label"]))
                return counts, figures(counts, 5)
        finally:
            await store.close()

    counts, rates = asyncio.run(as_of())
    assert counts == said["counts"]
    assert rates == said["rates"]


def test_verify_names_an_edited_a_deleted_and_an_inserted_row(stack: RunningStack) -> None:
    settled(stack)
    url = stack.info["database_url"]
    signed = digest(url, "a-key-kept-elsewhere")
    assert verify_archive(url) == []
    assert check_digest(url, signed, "a-key-kept-elsewhere") == []
    asyncio.run(replay(Archive(), bootstrap=stack.info["kafka_bootstrap"], database_url=url,
                       schema="audit_tamper"))
    assert verify_archive(url, schema="audit_tamper") == []
    topic, partition = stack.sql("select topic, partition from audit_tamper.archive"
                                 " group by 1, 2 having count(*) > 10 limit 1")[0]
    with psycopg.connect(url, autocommit=True) as conn:
        where = "where topic = %s and partition = %s and position = %s"
        conn.execute("update audit_tamper.archive set body = convert_to(replace("
                     "convert_from(body, 'utf8'), '\"grid\"', '\"grid\" '), 'utf8') "
                     + where, [topic, partition, 3])
        conn.execute("delete from audit_tamper.archive " + where, [topic, partition, 6])
        conn.execute("insert into audit_tamper.archive (topic, partition, position, log_offset,"
                     " event_id, event_type, schema_version, place, aggregate_id, aggregate_seq,"
                     " actor_id, actor_role, occurred_at, recorded_at, body, prev_hash, hash)"
                     " select topic, partition, 100000000, log_offset, gen_random_uuid(),"
                     " event_type, schema_version, place, aggregate_id, aggregate_seq, actor_id,"
                     " actor_role, occurred_at, recorded_at, body, prev_hash, hash"
                     " from audit_tamper.archive " + where, [topic, partition, 8])
    problems = [b.problem for b in verify_archive(url, schema="audit_tamper", topic=topic,
                                                  partition=partition)]
    assert any(p.startswith("position 3: body does not match") for p in problems), problems
    assert any(p.startswith("position 6: missing") for p in problems), problems
    assert any(p.startswith("position 100000000") for p in problems), problems
    partial = verify_archive(url, schema="audit_tamper", topic=topic, partition=partition,
                             first=0, last=2)
    assert partial == []  # the rows before the first edit are intact
    forged = {**signed, "heads": [{**signed["heads"][0], "hash": "00" * 32},
                                  *signed["heads"][1:]]}
    assert check_digest(url, forged, "a-key-kept-elsewhere")[0].problem.startswith(
        "the digest's signature does not match")


def test_verify_walks_one_snapshot_while_the_archive_keeps_archiving(
        stack: RunningStack, grid: str, worker: str) -> None:
    """A batch archived while verify walks the chains is not a row past its head: the heads
    and the rows are read in one snapshot, as the archive writes them in one transaction."""
    with stack.ingest(worker) as phone:
        answer = phone.post("/v1/events/batch",
                            json={"events": [an_incident(grid) for _ in range(24)]})
        assert answer.status_code == 200, answer.text
    settled(stack)
    url = stack.info["database_url"]
    asyncio.run(replay(Archive(), bootstrap=stack.info["kafka_bootstrap"], database_url=url,
                       schema="audit_growing"))
    topic, partition = stack.sql("select topic, partition from audit_growing.archive"
                                 " group by 1, 2 order by count(*) desc limit 1")[0]
    columns = ("topic, partition, log_offset, event_type, schema_version, place, aggregate_id,"
               " aggregate_seq, actor_id, actor_role, occurred_at, recorded_at, body")
    done, appended = threading.Event(), []

    def archiving() -> None:  # the next link of one chain and its head, each in one commit
        with psycopg.connect(url, autocommit=True, **in_schema("audit_growing")) as conn:
            while not done.is_set():
                with conn.transaction():
                    conn.execute(
                        f"insert into archive (position, event_id, prev_hash, hash, {columns})"
                        f" select position + 1, gen_random_uuid(), hash, sha256(hash || body),"
                        f" {columns} from archive where topic = %s and partition = %s"
                        " order by position desc limit 1", [topic, partition])
                    conn.execute(
                        "update archive_heads h set position = a.position, hash = a.hash"
                        " from archive a where a.topic = h.topic and a.partition = h.partition"
                        " and a.position = h.position + 1 and h.topic = %s and h.partition = %s",
                        [topic, partition])
                appended.append(1)

    writer = threading.Thread(target=archiving)
    writer.start()
    try:
        walks = [verify_archive(url, schema="audit_growing") for _ in range(10)]
    finally:
        done.set()
        writer.join()
    assert len(appended) > 10, "the chain grew while it was walked"
    assert walks == [[]] * 10


def test_the_audit_cli_walks_replays_diffs_and_proves_a_digest(stack: RunningStack,
                                                               tmp_path: Any, grid: str) -> None:
    # a matter of its own (ids seeded by its grid) to walk, replay and show: the test does
    # not lean on earlier ones'
    stack.publish(lifecycle(RULES, grid, random.Random(grid), datetime.now(UTC)))
    settled(stack)
    env = {**stack.env, "GRIDGOV_KAFKA_BOOTSTRAP": stack.info["kafka_bootstrap"],
           "GRIDGOV_DATABASE_URL": stack.info["database_url"]}

    def gridgov(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.cli", "audit", *args], env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    signed = gridgov("digest")
    assert signed.returncode == 0, signed.stderr
    (tmp_path / "digest.json").write_text(signed.stdout)
    proved = gridgov("verify", "--digest", str(tmp_path / "digest.json"))
    assert (proved.returncode, proved.stdout.strip()) == (0, "intact"), proved.stderr
    forged = orjson.loads(signed.stdout)
    forged["heads"][0]["position"] += 1
    (tmp_path / "forged.json").write_text(orjson.dumps(forged).decode())
    assert gridgov("verify", "--digest", str(tmp_path / "forged.json")).returncode == 1

    replayed = gridgov("replay", "archive", "--into", "audit_cli", "--workers", "2")
    assert replayed.returncode == 0, replayed.stderr
    assert "events replayed into audit_cli" in replayed.stdout
    compared = gridgov("diff", "archive", "--shadow", "audit_cli")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "identical" in compared.stdout
    promoted = gridgov("promote", "archive", "--shadow", "audit_cli", "--workers", "2")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "identical to the live model" in promoted.stdout

    incident_id = stack.sql("select aggregate_id from archive"
                            " where event_type = 'incident.closed' limit 1")[0][0]
    lines = gridgov("history", incident_id).stdout.splitlines()
    history = [orjson.loads(line) for line in lines]
    assert history[0]["event_type"] == "incident.reported"
    assert history[-1]["event_type"] == "incident.closed"
    assert all(len(h["archive"]["hash"]) == 64 and h["log"]["topic"] for h in history)


def test_the_audit_api_is_for_auditors_and_shows_history_and_the_chain(
    stack: RunningStack, grid: str
) -> None:
    incident = an_incident(grid)
    with stack.ingest(stack.token(Role.worker, grid)) as phone:
        assert phone.post("/v1/events", json=incident).status_code == 201
    settled(stack)
    path = f"/v1/audit/history/{incident['aggregate_id']}"
    with stack.query(stack.token(Role.supervisor, grid)) as api:
        assert api.get(path).status_code == 403
    with stack.query(stack.token(Role.auditor, grid)) as api:
        shown = api.get(path).json()
        assert [e["event"]["event_id"] for e in shown["events"]] == [incident["event_id"]]
        assert shown["events"][0]["event"]["payload"]["title"] == "楼道堆放杂物"
        assert api.get("/v1/audit/verify").json() == {"intact": True, "breaks": []}
    with stack.query(stack.token(Role.auditor, "999999")) as api:
        assert api.get(path).status_code == 404  # another county's auditor sees nothing


class Watched(FiveHave):
    """The chain projection, noting the collector's thresholds each time it writes a batch."""

    def __init__(self) -> None:
        self.thresholds: list[tuple[int, ...]] = []

    async def write(self, cur: Any, deliveries: Any) -> None:
        self.thresholds.append(gc.get_threshold())
        await super().write(cur, deliveries)


def test_a_rebuild_collects_seldom_while_it_runs_and_gives_the_thresholds_back(
        stack: RunningStack, grid: str) -> None:
    stack.publish(lifecycle(RULES, grid, random.Random(7), datetime.now(UTC)))
    before, watched = gc.get_threshold(), Watched()
    assert asyncio.run(replay(watched, bootstrap=stack.info["kafka_bootstrap"],
                              database_url=stack.info["database_url"],
                              schema="audit_collected")) > 0
    assert watched.thresholds and set(watched.thresholds) == {REBUILD_COLLECTION}
    assert gc.get_threshold() == before != REBUILD_COLLECTION


class Held(FiveHave):
    """The chain projection, noting after each batch what its schema holds for one grid:
    (daily rate rows, rate moves held back)."""

    def __init__(self, grid: str) -> None:
        self.grid, self.held = grid, []

    async def write(self, cur: Any, deliveries: Any) -> None:
        await super().write(cur, deliveries)
        await cur.execute("select (select count(*) from rate_daily where place = %s),"
                          " (select count(*) from held_moves where grid = %s)",
                          [self.grid, self.grid])
        self.held.append(await cur.fetchone())


def test_a_rebuild_rolls_its_rates_up_once_at_its_end_and_again_when_it_carries_on(
        stack: RunningStack, grid: str, worker: str) -> None:
    """A rebuild holds its batches' rate moves back and rolls them up at its end; carried on
    from there (as `diff` and `promote` do), it rolls up what came since onto those rows. Its
    figures are the live ones, a grid-day patrolled twice counted once."""
    url, bootstrap, rng = stack.info["database_url"], stack.info["kafka_bootstrap"], \
        random.Random(8)
    topics = FiveHave.topics

    def rates(schema: str) -> list[tuple[Any, ...]]:
        return stack.sql(f"select 'daily', place, day, measure, n, total::text from"  # noqa: S608
                         f" {schema}.rate_daily where place = %s union all"
                         f" select 'monthly', place, day, measure, n, total::text from"
                         f" {schema}.rate_monthly where place = %s order by 1, 2, 3, 4",
                         grid, grid)

    def published(started: datetime) -> dict[tuple[str, int], int]:
        stack.publish(lifecycle(RULES, grid, rng, started))
        with stack.ingest(worker) as phone:
            assert phone.post("/v1/events", json=a_patrol(grid)).status_code == 201
        wait_until(lambda: stack.caught_up(FiveHave.name, *topics),
                   what="the live chain to hold the grid's events")
        return {(tp.topic, tp.partition): o for tp, o in stack.log_ends(*topics).items()}

    half, held = published(datetime.now(UTC) - timedelta(days=2)), Held(grid)
    asyncio.run(replay(held, bootstrap=bootstrap, database_url=url, schema="audit_held",
                       until=half))
    assert all(daily == 0 for daily, _ in held.held), held.held  # held back, not rolled up
    assert held.held[-1][1] > 0, held.held
    assert stack.sql("select count(*) from audit_held.held_moves") == [(0,)]
    assert rates("audit_held") == rates("public") != []

    published(datetime.now(UTC) - timedelta(days=1))
    asyncio.run(replay(FiveHave(), bootstrap=bootstrap, database_url=url,
                       schema="audit_held", fresh=False))
    assert rates("audit_held") == rates("public")
    patrolled = [(grain, n) for grain, _, _, measure, n, _ in rates("audit_held")
                 if measure == "grid_days_patrolled"]
    assert {n for grain, n in patrolled if grain == "daily"} == {1}, patrolled

    # carried on by a newer release than began it: the schema gets the tables it lacks
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop table audit_held.held_moves")
        conn.execute("delete from audit_held.schema_migrations where name = '013_held_moves.sql'")
    held_to = {(t, p): o for t, p, o in stack.sql(
        "select topic, partition, next_offset from audit_held.projection_offsets")}
    asyncio.run(replay(FiveHave(), bootstrap=bootstrap, database_url=url, schema="audit_held",
                       until=held_to, fresh=False))
    assert stack.sql("select count(*) from audit_held.held_moves") == [(0,)]


def test_two_rebuild_workers_ending_at_once_roll_their_held_moves_up_in_turn(
        stack: RunningStack) -> None:
    async def turns() -> tuple[bool, bool]:
        url = stack.info["database_url"]
        async with await psycopg.AsyncConnection.connect(url) as first, \
                await psycopg.AsyncConnection.connect(url) as second:
            await roll_up_held(first.cursor())  # its transaction still open
            await second.execute("set lock_timeout = '1s'")
            try:
                await roll_up_held(second.cursor())
                waited = False
            except psycopg.errors.LockNotAvailable:
                waited = True
            await second.rollback()
            await first.commit()
            await roll_up_held(second.cursor())
            return waited, second.info.transaction_status == TransactionStatus.INTRANS

    assert asyncio.run(turns()) == (True, True)  # waited its turn, then took it


def test_a_rebuild_never_waits_for_a_matter_the_live_chain_holds(stack: RunningStack) -> None:
    """The live chain's workers lock each matter they refold; a rebuild's schema is a room of
    its own, where the same matter is free while the live one stays taken."""
    url = stack.info["database_url"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema if not exists lock_probe")

    async def takes(schema: str | None) -> bool:
        async with await psycopg.AsyncConnection.connect(url, **in_schema(schema)) as conn:
            await conn.execute("set lock_timeout = '1s'")
            try:
                await lock_matters(conn.cursor(), ["inc-held-by-live"])
            except psycopg.errors.LockNotAvailable:
                return False
            return True

    async def probe() -> tuple[bool, bool]:
        async with await psycopg.AsyncConnection.connect(url) as live:
            await lock_matters(live.cursor(), ["inc-held-by-live"])  # until live commits
            return await takes("lock_probe"), await takes(None)

    assert asyncio.run(probe()) == (True, False)


def test_a_rebuild_tells_no_live_dashboard_of_the_history_it_reads(
        stack: RunningStack, grid: str, worker: str) -> None:
    """The live channel is the live models': a rebuild into a schema of its own announces
    nothing, or a supervisor's ticker would show the whole log as news."""
    with stack.ingest(worker) as phone:  # a patrol: no clock will add to its grid later
        assert phone.post("/v1/events", json=a_patrol(grid)).status_code == 201
    wait_until(lambda: stack.caught_up(FiveHave.name, *FiveHave.topics),
               what="the live chain to have announced the patrol")
    url, nothing = stack.info["database_url"], {"applied": 0, "grids": [], "events": []}
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"listen {CHANNEL}")
        asyncio.run(replay(FiveHave(), bootstrap=stack.info["kafka_bootstrap"],
                           database_url=url, schema="audit_unannounced"))
        # notifications arrive in commit order: all a rebuild announced comes before this
        listener.execute("select pg_notify(%s, %s)", [CHANNEL, orjson.dumps(nothing).decode()])
        heard = []
        for notice in listener.notifies(timeout=60):
            if (message := orjson.loads(notice.payload)) == nothing:
                break
            heard.append(message)
        else:
            pytest.fail("the channel's own notice never came back")
    assert stack.sql("select 1 from audit_unannounced.rate_daily where place = %s"
                     " and measure = 'patrolled'", grid), "the rebuild read the patrol"
    assert [m for m in heard if any(covers(p, grid) for p in m["grids"])] == []


class OffByOne(FiveHave):
    """A projector with a bug: every closed matter shows one reopening too many."""

    async def write(self, cur: Any, deliveries: Any) -> None:
        await super().write(cur, deliveries)
        await cur.execute("update five_have set reopen_count = reopen_count + 1"
                          " where stage = 'closed'")


def test_blue_green_promotion_swaps_only_an_identical_rebuild_or_one_with_a_reason(
    stack: RunningStack, grid: str
) -> None:
    rng = random.Random(5)
    stack.publish([e for n in range(5) for e in lifecycle(
        RULES, grid, rng, datetime.now(UTC) - timedelta(days=10 - n))])
    settled(stack)
    url, bootstrap = stack.info["database_url"], stack.info["kafka_bootstrap"]
    admin = Actor(id="admin-audit", role=Role.admin)
    closed_before = stack.sql("select incident_id, reopen_count from five_have"
                              " where stage = 'closed' order by 1 limit 5")
    assert closed_before

    asyncio.run(replay(OffByOne(), bootstrap=bootstrap, database_url=url,
                       schema="promote_buggy"))
    with pytest.raises(PromotionRefused, match="five_have"):
        asyncio.run(promote(FiveHave(), bootstrap=bootstrap, database_url=url,
                            shadow="promote_buggy", actor=admin))
    assert stack.sql("select incident_id, reopen_count from five_have where stage = 'closed'"
                     " order by 1 limit 5") == closed_before  # the live model kept serving

    asyncio.run(replay(FiveHave(), bootstrap=bootstrap, database_url=url, schema="promote_ok"))

    def persistence(schema: str) -> set[str]:
        """Of the projection's tables in `schema`: 'u' unlogged, 'p' logged."""
        return {p for p, in stack.sql(
            "select distinct relpersistence from pg_class c join pg_namespace n"
            " on n.oid = c.relnamespace where n.nspname = %s and c.relname = any(%s)",
            schema, list(FiveHave.tables))}

    assert persistence("promote_ok") == {"u"}  # a rebuild writes no WAL
    found = asyncio.run(promote(FiveHave(), bootstrap=bootstrap, database_url=url,
                                shadow="promote_ok", actor=admin))
    assert all(t.empty for t in found)
    assert persistence("public") == {"p"}  # what went live survives a crash
    assert stack.sql("select count(*) from promote_ok.five_have")[0][0] > 0  # the old tables
    incident = an_incident(grid)  # the live projector carries on into the promoted tables
    with stack.ingest(stack.token(Role.worker, grid)) as phone:
        assert phone.post("/v1/events", json=incident).status_code == 201
    wait_until(lambda: stack.sql("select 1 from five_have where incident_id = %s",
                                 incident["aggregate_id"]), what="the promoted model to grow")

    asyncio.run(replay(OffByOne(), bootstrap=bootstrap, database_url=url,
                       schema="promote_buggy"))
    reason = "口径调整 definition changed on purpose (test)"
    changed = asyncio.run(promote(FiveHave(), bootstrap=bootstrap, database_url=url,
                                  shadow="promote_buggy", actor=admin, reason=reason))
    assert {t.table for t in changed if not t.empty} == {"five_have"}
    recorded = wait_until(lambda: stack.sql(
        "select convert_from(body, 'utf8')::jsonb from archive"
        " where event_type = 'audit.projection_promoted'"), what="the promotion in the log")
    assert recorded[-1][0]["payload"]["reason"] == reason
    assert recorded[-1][0]["actor"] == {"id": "admin-audit", "role": "admin"}
    # and back to the true definition, so the rest of the session reads correct chains
    asyncio.run(replay(FiveHave(), bootstrap=bootstrap, database_url=url, schema="promote_ok"))
    asyncio.run(promote(FiveHave(), bootstrap=bootstrap, database_url=url, shadow="promote_ok",
                        actor=admin, reason="restore the definition after the test"))
    assert stack.sql("select incident_id, reopen_count from five_have where stage = 'closed'"
                     " order by 1 limit 5") == closed_before
