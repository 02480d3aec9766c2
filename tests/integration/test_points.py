"""Points on the real stack: one winner per redemption race, rankings by hand, replay after a
rules change."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from events.envelope import Role
from events.topics import POINTS
from projections.points_ledger import PointsLedger
from projections.points_ranking import ends, half_of, month_of, preceding, starts
from projections.replay import replay
from tests.points import CATALOG, award, redeem
from tests.stack import RunningStack, wait_until

TRIALS = 50


def ask(stack: RunningStack, token: str, grid: str, account_id: str | None,
        step: dict[str, Any], *, occurred_at: datetime | None = None,
        command_id: str | None = None) -> httpx.Response:
    """A points command as an app sends it; a 202 is followed up until the decider answers."""
    body: dict[str, Any] = {"command_id": command_id or str(uuid.uuid4()), "grid": grid,
                            "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
                            "command": step}
    if account_id is not None:
        body["account_id"] = account_id
    with stack.ingest(token) as app:
        answer = app.post("/v1/points/commands", json=body)
        if answer.status_code != 202:
            return answer
        url = answer.json()["status_url"]
        return wait_until(lambda: (r := app.get(url)).status_code != 202 and r,
                          what="the points decider's answer")


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def ledger(stack: RunningStack, accounts: list[str]) -> dict[str, tuple[int, int, int]]:
    """Per account: awarded, redeemed, reserved, as the points ledger holds them."""
    return {a: (aw, rd, rs) for a, aw, rd, rs in stack.sql(
        "select account_id, awarded, redeemed, reserved from points_accounts"
        " where account_id = any(%s)", accounts)}


def test_two_redemptions_that_together_exceed_the_balance_have_exactly_one_winner(
    stack: RunningStack, grid: str,
) -> None:
    chief = stack.token(Role.grid_chief, grid, sub="gc-points")
    counters = [stack.token(Role.worker, grid, sub=f"w-bank-{n}") for n in (1, 2)]
    accounts = [f"hh-race-{uuid.uuid4().hex[:10]}" for _ in range(TRIALS)]
    with ThreadPoolExecutor(8) as pool:  # 10 points each, posted at once (logged hours)
        for answer in pool.map(lambda a: ask(stack, chief, grid, a,
                                             award("volunteer_hour", 5)), accounts):
            ok(answer)
    start = threading.Barrier(2 * TRIALS)  # both counters of every account at once

    def take(account: str, n: int) -> httpx.Response:
        start.wait()
        return ask(stack, counters[n], grid, account, redeem(6, "大米 10 斤"))

    with ThreadPoolExecutor(2 * TRIALS) as pool:
        racing = {(a, n): pool.submit(take, a, n) for a in accounts for n in (0, 1)}
    answers = {key: future.result() for key, future in racing.items()}

    for account in accounts:
        pair = [answers[account, n] for n in (0, 1)]
        assert sorted(r.status_code for r in pair) == [200, 409], account
        loser = next(r.json() for r in pair if r.status_code == 409)
        assert loser["error"] == "insufficient_points"
        assert loser["errors"][0]["reason"] == "the balance is 4 points; 6 asked"
    wait_until(lambda: ledger(stack, accounts) == {a: (10, 0, 6) for a in accounts},
               what="one reservation of 6 per account in the ledger")
    with stack.query(chief) as api:
        shown = api.get(f"/v1/points/accounts/{accounts[0]}").json()
    assert (shown["awarded"], shown["reserved"], shown["balance"]) == (10, 6, 4)
    assert [e["event_type"] for e in shown["events"]] == ["points.awarded",
                                                          "points.redemption_reserved"]


def test_the_monthly_ranking_of_a_compound_matches_the_hand_count_ties_included(
    stack: RunningStack, grid: str,
) -> None:
    chief = stack.token(Role.grid_chief, grid, sub="gc-ranking")
    this = month_of(datetime.now(UTC))
    last = preceding(this)

    def day(n: int, hour: int = 9) -> datetime:  # a day of last month, Shanghai time
        return starts(last) + timedelta(days=n - 1, hours=hour)

    tag = uuid.uuid4().hex[:6]
    hh = {k: f"hh-{tag}-{k}" for k in "abcdef"}
    # all awarded today, so each account stays under each rule's daily cap (the award's day)
    seeded = [  # (household, rule, units, deed) -> last month, by hand:
        ("a", "volunteer_hour", 4, day(2)), ("a", "golden_idea", 1, day(20)),  # 18
        ("b", "volunteer_hour", 4, day(12)), ("b", "golden_idea", 1, day(12)),  # 18, reached
        # on the 12th: before a
        ("c", "golden_idea", 2, ends(last) - timedelta(hours=2)),  # 30, 22:00 its last day
        ("c", "volunteer_hour", 5, ends(last) - timedelta(hours=2)),
        ("d", "volunteer_hour", 6, day(6)),  # 12
        ("e", "volunteer_hour", 6, day(6)),  # 12 on the same day: the id puts d first
        ("f", "volunteer_hour", 8, starts(this) + timedelta(minutes=1)),  # 16, this month
    ]
    for who, rule, units, deed in seeded:
        ok(ask(stack, chief, grid, hh[who], award(rule, units), occurred_at=deed))
    hand = [(hh["c"], 30), (hh["b"], 18), (hh["a"], 18), (hh["d"], 12), (hh["e"], 12)]

    def ranking(month: str, until: Any = lambda r: True) -> dict[str, Any]:
        def read() -> dict[str, Any] | None:
            with stack.query(chief) as api:
                found = api.get("/v1/points/rankings", params={"compound": grid,
                                                               "month": month}).json()
            return found if until(found) else None
        return wait_until(read, what=f"the ranking of {month}")

    def pairs(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return [(r["account_id"], r["points"]) for r in rows]

    live = ranking(last, lambda r: len(r["standings"]) == 5)
    assert pairs(live["standings"]) == hand and live["published"] is False
    assert [r["rank"] for r in live["ranks"]] == [1, 2, 3]

    published = ok(ask(stack, chief, grid, None, {"type": "publish_ranking", "period": last}))
    assert [e["event_type"] for e in published["events"]] == ["points.ranking_published"]
    frozen = ranking(last, lambda r: r["published"])
    assert pairs(frozen["ranks"]) == hand[:3]
    assert set(frozen["watermark"]) == set(hh.values())  # every account the ranking saw

    # a deed of last month decided after the publication: the published ranking does not
    # move, the points count in this month's
    ok(ask(stack, chief, grid, hh["d"], award("golden_idea", 2), occurred_at=day(15)))
    current = ranking(this, lambda r: len(r["standings"]) == 2)
    assert pairs(current["standings"]) == [(hh["d"], 20), (hh["f"], 16)]
    assert pairs(ranking(last)["ranks"]) == hand[:3]
    again = ask(stack, chief, grid, None, {"type": "publish_ranking", "period": last})
    assert (again.status_code, again.json()["error"]) == (409, "already_published")
    early = ask(stack, chief, grid, None, {"type": "publish_ranking", "period": this})
    assert (early.status_code, early.json()["error"]) == (409, "period_open")

    half = half_of(last)
    with stack.query(chief) as api:
        awards = api.get("/v1/points/awards", params={"place": grid, "half": half}).json()
    # d's late 20 counts this month: in this half if this month is in it
    winner = (hh["d"], 32) if half_of(this) == half else (hh["c"], 30)
    assert (awards["winner"]["account_id"], awards["winner"]["points"]) == winner
    assert awards["progress"] == {"account_id": winner[0], "previous": 0, "current": winner[1]}
    months = {m["month"]: m for m in awards["participation"]}
    assert (months[last]["households"], months[last]["with_points"]) == (5, 5)
    if this in months:
        assert (months[this]["share"], months[this]["percent"]) == ("1/6", 16.7)


def test_a_zero_award_is_refused_with_a_reason_before_the_decider(
    stack: RunningStack, grid: str,
) -> None:
    chief = stack.token(Role.grid_chief, grid)
    refused = ask(stack, chief, grid, "hh-zero", award("volunteer_hour", 0))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "command.award.quantity"


def test_a_grid_chief_cannot_pay_one_household_more_than_the_daily_cap_in_a_day(
    stack: RunningStack, grid: str,
) -> None:
    chief = stack.token(Role.grid_chief, grid, sub="gc-daily")
    worker = stack.token(Role.worker, grid, sub="w-daily")
    household = f"hh-{uuid.uuid4().hex[:8]}"
    long_ago = datetime.now(UTC) - timedelta(days=20)  # a deed dated weeks back counts today
    ok(ask(stack, chief, grid, household, award("volunteer_hour", 8), occurred_at=long_ago))
    for token in (chief, worker):
        refused = ask(stack, token, grid, household, award("volunteer_hour", 1))
        assert (refused.status_code, refused.json()["error"]) == (409, "daily_cap")
        assert "at most 16 a day" in refused.json()["errors"][0]["reason"]
    wait_until(lambda: ledger(stack, [household]) == {household: (16, 0, 0)},
               what="the one award within the cap in the ledger")


def test_a_replay_after_a_rules_change_leaves_historical_balances_unchanged(
    stack: RunningStack, grid: str,
) -> None:
    chief = stack.token(Role.grid_chief, grid, sub="gc-rules")
    worker = stack.token(Role.worker, grid, sub="w-rules")
    old, new = f"hh-old-{uuid.uuid4().hex[:8]}", f"hh-new-{uuid.uuid4().hex[:8]}"
    resident = stack.token(Role.resident, grid, sub=old)

    # the household reports its own deed; the grid worker validates it (v1: 3 a time)
    claim = {"event_id": str(uuid.uuid4()), "event_type": "points.claimed",
             "schema_version": 1, "occurred_at": datetime.now(UTC).isoformat(), "grid": grid,
             "aggregate_id": old, "aggregate_seq": 0,
             "payload": {"rule": "public_welfare", "quantity": 2, "evidence": "为村道捐修路灯"}}
    with stack.ingest(resident) as phone:
        assert phone.post("/v1/events", json=claim).status_code == 201, "claim"
    wait_until(lambda: stack.sql("select claims_pending from points_accounts"
                                 " where account_id = %s", old) == [(1,)],
               what="the claim in the ledger")
    approval = str(uuid.uuid4())
    approved = ok(ask(stack, worker, grid, old, {"type": "approve",
                                                 "claim_id": claim["event_id"]},
                      command_id=approval))
    retried = ok(ask(stack, worker, grid, old, {"type": "approve",
                                                "claim_id": claim["event_id"]},
                     command_id=approval))
    assert retried["events"] == approved["events"]  # a retried command applies once

    # the catalog changes (public welfare now pays 5), and the decider restarts with it
    rules = Path(stack.settings_env["GRIDGOV_POINTS_RULES_FILE"])
    shipped = rules.read_text(encoding="utf-8")
    try:
        changed = shipped.replace(f"version = {CATALOG.version}\n",
                                  f"version = {CATALOG.version + 1}\n", 1).replace(
            "points_per_unit = 3\nmonthly_cap = 15\ndaily_cap = 9",
            "points_per_unit = 5\nmonthly_cap = 15\ndaily_cap = 10", 1)
        assert changed.count("points_per_unit = 5\nmonthly_cap = 15\ndaily_cap = 10") == 1
        rules.write_text(changed, encoding="utf-8")
        pid = stack.reload()["pids"]["points-decider"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: stack.reload()["pids"]["points-decider"] != pid,
                   what="the points decider's restart")
        later = ok(ask(stack, chief, grid, new, award("public_welfare", 2)))
    finally:
        rules.write_text(shipped, encoding="utf-8")
    assert [e["event_type"] for e in later["events"]] == ["points.awarded"]
    wait_until(lambda: ledger(stack, [old, new]) == {old: (6, 0, 0), new: (10, 0, 0)},
               what="both awards in the ledger: 2 x 3 under the old version, 2 x 5 under the new")
    versions = dict(stack.sql("select account_id, rule_version from points_transfers"
                              " where account_id = any(%s)", [old, new]))
    assert versions == {old: CATALOG.version, new: CATALOG.version + 1}

    # rebuild the ledger from offset 0: every balance is what the live ledger says
    wait_until(lambda: stack.caught_up(PointsLedger.name, POINTS.name),
               what="the live ledger at the end of the log")
    shadow = f"replay_points_{uuid.uuid4().hex[:8]}"
    asyncio.run(replay(PointsLedger(), bootstrap=stack.info["kafka_bootstrap"],
                       database_url=stack.info["database_url"], schema=shadow))
    try:
        for table, columns in PointsLedger.tables.items():
            for one, other in (("public", shadow), (shadow, "public")):
                assert stack.sql(f"select {columns} from {one}.{table} except all"  # noqa: S608
                                 f" select {columns} from {other}.{table}") == [], table
    finally:
        with psycopg.connect(stack.info["database_url"], autocommit=True) as conn:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(shadow)))
