"""The published figures come out of events: publish -> log -> projection -> /v1/rates."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from events.envelope import Event, Role
from projections import sla
from projections.matters import FiveHave
from projections.resolution_rates import facts, percent
from tests.lifecycles import dispute, lifecycle
from tests.stack import RunningStack, a_patrol, a_place, an_incident, wait_until

RULES = sla.load()


def rates(stack: RunningStack, token: str, **params: Any) -> dict[str, Any]:
    with stack.query(token) as api:
        answer = api.get("/v1/rates", params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def disputes(rng: random.Random, grids: list[str], year: int, mediated: int, failed: int
             ) -> list[Event[Any]]:
    """Disputes spread over a year and over the grids, unevenly, mediated as asked."""
    outcomes = ["succeeded"] * mediated + rng.choices(["failed", "continuing"], k=failed)
    rng.shuffle(outcomes)
    start = datetime(year, 1, 1, tzinfo=sla.LOCAL)
    weights = [i + 1 for i in range(len(grids))]  # grids of different sizes
    return [event for outcome in outcomes
            for event in dispute(RULES, rng.choices(grids, weights)[0], rng,
                                 start + timedelta(minutes=rng.randrange(360 * 24 * 60)),
                                 outcome)]


def settled(stack: RunningStack) -> None:
    wait_until(lambda: stack.caught_up(FiveHave.name, *FiveHave.topics), timeout=120,
               what="the matters projection to apply the fixture")


def test_zhenba_county_2023_mediation_success_is_644_of_655(stack: RunningStack) -> None:
    rng = random.Random(610728)
    grids = [f"610728/{t}/{c:03d}/{g:02d}" for t in (105, 106, 107) for c in (1, 2)
             for g in (1, 2)]
    published = disputes(rng, grids, 2023, mediated=644, failed=11)
    stack.publish(published)
    settled(stack)
    supervisor = stack.token(Role.supervisor, "610728")

    county = rates(stack, supervisor, place="610728", period="2023", children="true")
    mediation = county["rates"]["mediation_success_rate"]
    assert (mediation["numerator"], mediation["denominator"]) == (644, 655)
    assert mediation["percent"] == 98.3 and mediation["ranked"] is True
    assert county["counts"]["disputes_found"] == 655

    # a town's rate is its places' numerators over their denominators, not a mean of rates
    towns = county["children"]
    assert {t["place"] for t in towns} == {"610728/105", "610728/106", "610728/107"}
    for name in ("mediation_success_rate", "dispute_resolution_rate"):
        assert sum(t["rates"][name]["numerator"] for t in towns) == \
            county["rates"][name]["numerator"]
        assert sum(t["rates"][name]["denominator"] for t in towns) == \
            county["rates"][name]["denominator"]
    town = rates(stack, supervisor, place="610728/107", period="2023", children="true")
    grids_of_town = town["children"]
    num = sum(c["rates"]["mediation_success_rate"]["numerator"] for c in grids_of_town)
    den = sum(c["rates"]["mediation_success_rate"]["denominator"] for c in grids_of_town)
    assert town["rates"]["mediation_success_rate"]["percent"] == percent(num, den)

    # explain: the counts, and exactly the events behind them, at a watermark
    with stack.query(supervisor) as api:
        explained = api.get("/v1/rates/explain", params={
            "place": "610728", "period": "2023", "figure": "mediation_success_rate"}).json()
    mediations = {str(e.event_id) for e in published
                  if e.event_type == "dispute.mediation_recorded"
                  and e.payload.outcome == "succeeded"}
    assert explained["formula"] == "调解成功率 = mediated_ok / disputes_found"
    assert explained["numerator_facts"]["count"] == 644
    assert {f["event_id"] for f in explained["numerator_facts"]["facts"]} == mediations
    assert len(explained["denominator_facts"]["facts"]) == 655
    assert explained["watermark"]["offsets"]
    assert explained["watermark"]["lag_records"] >= 0

    # the same table as CSV, for pasting into a report
    with stack.query(supervisor) as api:
        exported = api.get("/v1/rates", params={"place": "610728", "period": "2023",
                                                "children": "true", "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    county_row = next(r for r in rows if r["place"] == "610728"
                      and r["rate"] == "mediation_success_rate")
    assert (county_row["numerator"], county_row["denominator"], county_row["percent"]) == \
        ("644", "655", "98.3")
    assert county_row["label"] == "调解成功率 mediation success rate"
    assert {r["place"] for r in rows} == {"610728", *(t["place"] for t in towns)}

    # any range, whole months or not, counts what the facts hold (months from the monthly
    # grain, the days around them from the daily one)
    matters: dict[str, list[Event[Any]]] = {}
    for event in published:
        matters.setdefault(event.aggregate_id, []).append(event)
    found = [f for i, m in matters.items() for f in facts(i, m) if f.grid.startswith("610728/")]
    for first, last in [(date(2023, 1, 1), date(2023, 12, 31)),
                        (date(2023, 2, 14), date(2023, 11, 3)),
                        (date(2023, 3, 1), date(2023, 3, 20)),
                        (date(2023, 5, 9), date(2023, 5, 31)),
                        (date(2022, 12, 25), date(2024, 1, 6))]:
        ranged = rates(stack, supervisor, place="610728", **{"from": first.isoformat(),
                                                             "to": last.isoformat()})
        assert ranged["counts"]["disputes_found"] == sum(
            1 for f in found if f.measure == "disputes_found" and first <= f.day <= last)
        towns_ranged = rates(stack, supervisor, place="610728", children="true", by="month",
                             **{"from": first.isoformat(), "to": last.isoformat()})
        assert sum(t["counts"].get("disputes_found", 0) for t in towns_ranged["children"]) \
            == ranged["counts"]["disputes_found"]
        assert sum(s["counts"].get("disputes_found", 0) for s in towns_ranged["series"]) \
            == ranged["counts"]["disputes_found"]


def test_xiameiqiao_138_disputes_all_resolved_is_100_percent(stack: RunningStack) -> None:
    rng = random.Random(431002)
    grids = [f"431002/004/{c:03d}/{g:02d}" for c in range(1, 12) for g in (1, 2, 3)]
    stack.publish(disputes(rng, grids, 2024, mediated=138, failed=0))
    settled(stack)
    street = rates(stack, stack.token(Role.supervisor, "431002/004"), place="431002/004",
                   period="2024", by="quarter")
    resolved = street["rates"]["dispute_resolution_rate"]
    assert (resolved["numerator"], resolved["denominator"], resolved["percent"]) == \
        (138, 138, 100.0)
    quarters = street["series"]
    assert [q["period"] for q in quarters] == sorted(q["period"] for q in quarters)
    assert sum(q["counts"]["disputes_found"] for q in quarters) == 138


def test_a_late_event_moves_last_months_figure_not_todays(stack: RunningStack,
                                                          grid: str) -> None:
    worker = stack.token(Role.worker, grid)
    supervisor = stack.token(Role.supervisor, grid)
    today = datetime.now(sla.LOCAL).date()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=15)
    this_period = f"{today.year}-{today.month:02d}"
    last_period = f"{last_month.year}-{last_month.month:02d}"
    before = {p: rates(stack, supervisor, place=grid, period=p)["counts"].get("reported", 0)
              for p in (this_period, last_period)}

    occurred = datetime.combine(last_month, datetime.min.time(), sla.LOCAL) + timedelta(hours=9)
    late = an_incident(grid, occurred_at=occurred.astimezone(UTC).isoformat())
    with stack.ingest(worker) as phone:
        receipt = phone.post("/v1/events", json=late).json()
    wanted = f"{receipt['topic']}:{receipt['partition']}:{receipt['offset']}"
    # read your own write: the query waits for the projection to apply that offset
    after = {p: rates(stack, supervisor, place=grid, period=p, min_offsets=wanted)
             ["counts"].get("reported", 0) for p in (this_period, last_period)}
    assert after[last_period] == before[last_period] + 1
    assert after[this_period] == before[this_period]
    day = rates(stack, supervisor, place=grid, period=last_month.isoformat())
    assert day["counts"]["reported"] == 1


def test_rates_refuse_what_they_cannot_answer(stack: RunningStack, grid: str) -> None:
    supervisor = stack.token(Role.supervisor, grid)
    with stack.query(supervisor) as api:
        for params, field in (({"place": grid, "period": "2023-13"}, "period"),
                              ({"place": grid, "period": "2023-W54"}, "period"),
                              ({"place": grid, "from": "2024-01-01"}, "to"),
                              ({"place": "not/a/place"}, "place"),
                              ({"place": grid, "min_offsets": "nonsense"}, "min_offsets")):
            answer = api.get("/v1/rates", params=params)
            assert answer.status_code == 422, (params, answer.text)
            assert answer.json()["errors"][0]["field"] == field
        elsewhere = api.get("/v1/rates", params={"place": "999999"})
        assert elsewhere.status_code == 403
        far_ahead = api.get("/v1/rates", params={
            "place": grid, "min_offsets": "gridgov.incidents:0:999999999"})
        assert far_ahead.status_code == 409
        assert far_ahead.json()["error"] == "not_caught_up"


def test_the_funnel_counts_matters_at_each_link(stack: RunningStack, grid: str) -> None:
    worker = stack.token(Role.worker, grid)
    with stack.ingest(worker) as phone:
        for _ in range(3):
            assert phone.post("/v1/events", json=an_incident(grid)).status_code == 201
    with stack.query(stack.token(Role.supervisor, grid)) as api:
        shown = wait_until(lambda: (f := api.get("/v1/funnel", params={"place": grid}).json())
                           ["funnel"]["report"] == 3 and f, what="three matters awaiting owners")
    assert shown["funnel"] == {"report": 3, "own": 0, "resolve": 0, "supervise": 0, "closed": 0}


def test_the_funnel_of_a_town_is_its_chains_counted_by_stage(stack: RunningStack) -> None:
    """Matters stopped at every link, their steps arriving shuffled: the counts the projection
    keeps per place and stage equal a count of the chains themselves."""
    rng = random.Random()
    town = "/".join(a_place().split("/")[:2])
    start = datetime.now(UTC) - timedelta(days=3)
    published = []
    for n in range(40):
        steps = lifecycle(RULES, f"{town}/00{n % 2 + 1}/0{n % 3 + 1}", rng, start)
        published += steps[:rng.randint(1, len(steps))]
    rng.shuffle(published)
    stack.publish(published)
    settled(stack)
    with stack.query(stack.token(Role.supervisor, town)) as api:
        shown = api.get("/v1/funnel", params={"place": town}).json()
    counted = dict(stack.sql("select stage, count(*) from five_have where grid like %s"
                             " group by stage", town + "/%"))
    assert shown["stages"] == counted
    assert sum(shown["stages"].values()) == 40

def test_patrol_coverage_counts_grid_days_and_names_the_quiet_grids(stack: RunningStack
                                                                     ) -> None:
    """Coverage comes from the rollup: grid-days patrolled over days in the period, and the
    grids without a patrol in the period's last 3 days, each with its last patrol."""
    county = a_place().split("/")[0]
    every_day, early, never, lately = (f"{county}/101/001/{g:02d}" for g in (1, 2, 3, 4))

    def patrol(grid: str, day: int, hour: int = 10) -> dict[str, Any]:
        ended = datetime(2025, 11, day, hour, tzinfo=sla.LOCAL)
        event = a_patrol(grid)
        event.update(occurred_at=ended.isoformat())
        event["payload"].update(started_at=(ended - timedelta(hours=1)).isoformat(),
                                ended_at=ended.isoformat(), route=[])
        return event

    posted = [patrol(every_day, d) for d in range(1, 31)]
    posted += [patrol(early, d, h) for d in range(1, 11) for h in (9, 15)]  # twice a day
    posted += [patrol(lately, d) for d in (29, 30)]
    posted.append(an_incident(never, occurred_at=datetime(2025, 11, 5, tzinfo=UTC).isoformat()))
    with stack.ingest(stack.token(Role.worker, county)) as phone:
        answer = phone.post("/v1/events/batch", json={"events": posted})
    assert answer.json()["accepted"] == len(posted), answer.text
    settled(stack)

    coverage = rates(stack, stack.token(Role.supervisor, county), place=county,
                     period="2025-11")["patrol_coverage"]
    assert coverage["grids"] == 4
    assert coverage["grids_patrolled_per_day"] == round((30 + 10 + 2) / 30, 2)
    assert sorted(coverage["quiet_grids"], key=lambda q: q["grid"]) == [
        {"grid": early, "last_patrol": "2025-11-10"}, {"grid": never, "last_patrol": None}]


def test_a_running_years_coverage_is_judged_as_of_today(stack: RunningStack) -> None:
    """While a period runs, its quiet grids are those unpatrolled in the last 3 days up to
    today, not up to its last day (which has not come: every grid would read as quiet), and
    patrolled-per-day averages over the days lived so far."""
    county = a_place().split("/")[0]
    fresh, stale = f"{county}/101/001/01", f"{county}/101/001/02"
    now = datetime.now(UTC)
    patrolled = {fresh: now, stale: now - timedelta(days=5)}
    posted = []
    for grid, ended in patrolled.items():
        event = a_patrol(grid)
        event.update(occurred_at=ended.isoformat())
        event["payload"].update(started_at=(ended - timedelta(hours=1)).isoformat(),
                                ended_at=ended.isoformat(), route=[])
        posted.append(event)
    with stack.ingest(stack.token(Role.worker, county)) as phone:
        answer = phone.post("/v1/events/batch", json={"events": posted})
    assert answer.json()["accepted"] == len(posted), answer.text
    settled(stack)

    year = f"{now.astimezone(sla.LOCAL):%Y}"  # its last day weeks away but in its last days
    coverage = rates(stack, stack.token(Role.supervisor, county), place=county,
                     period=year)["patrol_coverage"]
    as_of = date.fromisoformat(coverage["as_of"])  # today, unless midnight passed meanwhile
    first = as_of.replace(month=1, day=1)
    days = {g: t.astimezone(sla.LOCAL).date() for g, t in patrolled.items()}
    assert as_of >= days[fresh]
    assert coverage["grids"] == 2
    assert coverage["quiet_grids"] == [{"grid": stale, "last_patrol": days[stale].isoformat()}]
    lived = sum(first <= day <= as_of for day in days.values())
    assert coverage["grids_patrolled_per_day"] == round(lived / ((as_of - first).days + 1), 2)


def test_durations_average_from_the_rollup_and_p90_from_the_facts(stack: RunningStack
                                                                   ) -> None:
    """The average is the rollup's sum over its count; `p90=true` adds the facts' 90th
    percentile (PostgreSQL's `percentile_cont`: linear between the two nearest values)."""
    rng = random.Random(906)
    county = a_place().split("/")[0]
    start = datetime(2025, 6, 2, 9, tzinfo=sla.LOCAL)
    matters = [lifecycle(RULES, f"{county}/101/001/01", rng, start + timedelta(hours=n))
               for n in range(40)]
    stack.publish([e for m in matters for e in m])
    settled(stack)
    waits = sorted(f.value for m in matters for f in facts(m[0].aggregate_id, m)
                   if f.measure == "owned" and f.value is not None and f.day.month == 6)
    rank = 0.9 * (len(waits) - 1)
    below_, above = waits[int(rank)], waits[min(int(rank) + 1, len(waits) - 1)]
    expected = below_ + (above - below_) * (rank - int(rank))

    supervisor = stack.token(Role.supervisor, county)
    plain = rates(stack, supervisor, place=county, period="2025-06")["durations"]
    assert plain["report_to_own"] == {"average_s": round(sum(waits) / len(waits), 1)}
    full = rates(stack, supervisor, place=county, period="2025-06", p90="true")["durations"]
    assert full["report_to_own"]["p90_s"] == round(expected, 1)
