"""Resolution rates: the facts each matter counts as, on which local day, rolled up per place,
and the rates published from them (docs/METRICS.md)."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from events.commands import IssuedCommand
from events.dispute import DisputeKind, DisputeReported, Party
from events.envelope import Actor, Event, Payload, Role
from events.incident import (
    Category,
    IncidentEscalated,
    IncidentOverdue,
    IncidentReported,
    Level,
    Location,
)
from events.patrol import Finding, PatrolLogged
from projections.five_have import Chain, evolve, fold
from projections.incident_decider import SLA_CLOCK, decide, due, envelopes, for_command
from projections.resolution_rates import (
    MEASURES,
    RATE_BY_NAME,
    RATES,
    Fact,
    facts,
    figures,
    moves,
    patrol_facts,
    percent,
    places_of,
)
from projections.sla import load
from tests.lifecycles import dispute, lifecycle

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
RULES = load()
GRID = "610728/105/001/02"
TOWN = "610728/105"
PLACE = Location(description="马场村 3 组")
FRIDAY = datetime(2026, 11, 20, 9, 12, tzinfo=SHANGHAI)
# safety_hazard at grid level is due one working day after acceptance: Friday -> Monday.
MONDAY = datetime(2026, 11, 23, 9, 12, tzinfo=SHANGHAI)
NEW_YEARS_EVE = datetime(2023, 12, 31, 17, 30, tzinfo=UTC)  # 01:30 on 1 January in Shanghai

finder = Actor(id="w-lina", role=Role.worker)
owner = Actor(id="w-wangqiang", role=Role.worker)
chief = Actor(id="gc-zhaomin", role=Role.grid_chief)
supervisor = Actor(id="sv-chenjing", role=Role.supervisor)
admin = Actor(id="ad-root", role=Role.admin)

ACCEPT = {"type": "accept"}
RESOLVE = {"type": "resolve", "measures": "联系物业清理楼道杂物", "outcome": "消防通道已畅通"}
REJECTED = {"type": "verify", "verdict": "rejected", "note": "现场仍有杂物"}


def accepted(satisfaction: int | None = None) -> dict[str, Any]:
    return {"type": "verify", "verdict": "accepted", "satisfaction": satisfaction}


def shanghai_day(at: datetime) -> date:
    """Asia/Shanghai has been UTC+8 all year round since 1991: no zone database needed."""
    return (at.astimezone(UTC) + timedelta(hours=8)).date()


@dataclass(frozen=True)
class Matter:
    """One matter's timeline as the log holds it, moved on through the real decider."""

    events: tuple[Event[Any], ...]
    chain: Chain

    @property
    def id(self) -> str:
        return self.chain.incident_id

    def happen(self, *events: Event[Any]) -> Matter:
        chain = self.chain
        for event in events:
            chain = evolve(chain, event)
        return Matter((*self.events, *events), chain)

    def does(self, actor: Actor, step: dict[str, Any], at: datetime) -> Matter:
        command = IssuedCommand.model_validate({
            "command_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{self.id}/{len(self.events)}"),
            "incident_id": self.id, "occurred_at": at, "recorded_at": at, "actor": actor,
            "command": step})
        decided = decide(command, self.chain, RULES)
        return self.happen(*envelopes(self.chain, for_command(command, decided), actor=actor,
                                      recorded_at=at, correlation_id=command.command_id))

    def tick(self, now: datetime) -> Matter:
        """The SLA clock looks at the matter at `now`."""
        return self.happen(*envelopes(self.chain, due(self.chain, now, RULES), actor=SLA_CLOCK,
                                      recorded_at=now))

    def next_event(self, payload: Payload, *, by: Actor, at: datetime) -> Event[Any]:
        """An event the decider did not emit, at the timeline's next sequence number."""
        return an_event(payload, by=by, at=at, aggregate_id=self.id,
                        seq=self.chain.last_seq + 1)

    def facts(self) -> list[Fact]:
        return facts(self.id, self.events)

    def counted(self) -> Counter[str]:
        return Counter(f.measure for f in self.facts())

    def days(self, measure: str) -> list[date]:
        return [f.day for f in self.facts() if f.measure == measure]


def an_event(payload: Payload, *, by: Actor, at: datetime, aggregate_id: str, seq: int,
             grid: str = GRID) -> Event[Any]:
    event: Event[Any] = Event[type(payload)](  # type: ignore[misc,operator]
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{aggregate_id}/{seq}/{at.isoformat()}"),
        event_type=payload.event_type, schema_version=payload.schema_version,
        occurred_at=at, recorded_at=at, actor=by, grid=grid, aggregate_id=aggregate_id,
        aggregate_seq=seq, payload=payload)
    return event


def reported(by: Actor = finder, at: datetime = FRIDAY, *, kind: str = "incident",
             category: Category = Category.safety_hazard,
             patrol_id: str | None = None) -> Matter:
    payload: Payload
    if kind == "dispute":
        payload = DisputeReported(kind=DisputeKind.neighbour, parties=[Party(name="张建国")],
                                  summary="两户因宅基地边界发生争执。", location=PLACE,
                                  patrol_id=patrol_id)
    else:
        payload = IncidentReported(category=category, title="楼道堆放杂物",
                                   description="楼道堆放纸箱，阻塞消防通道。", location=PLACE,
                                   patrol_id=patrol_id)
    incident_id = f"inc-610728-{uuid.uuid5(uuid.NAMESPACE_URL, f'{by.id}/{at}').hex[:8]}"
    return Matter((), Chain(incident_id)).happen(
        an_event(payload, by=by, at=at, aggregate_id=incident_id, seq=0))


def closed(by: Actor = finder, verifier: Actor = supervisor, **report: Any) -> Matter:
    """Reported Friday 09:12, taken on at 10:00, resolved at 15:00, closed Saturday 09:00."""
    return (reported(by, **report)
            .does(owner, ACCEPT, FRIDAY + timedelta(minutes=48))
            .does(owner, RESOLVE, FRIDAY + timedelta(hours=5, minutes=48))
            .does(verifier, accepted(5), FRIDAY + timedelta(hours=23, minutes=48)))


# --- any valid timeline, delivered in any order ------------------------------------------------

GRIDS = (GRID, "610728/105/001/03", "610728/106/002/01", "430382/101/003/07/12")
MOMENTS = st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2027, 12, 31),
                       timezones=st.sampled_from((UTC, SHANGHAI, NEW_YORK)))


@st.composite
def timelines(draw: st.DrawFn) -> list[Event[Any]]:
    """One matter's events as the real decider emits them: an incident to its close, or a
    dispute mediated on the spot."""
    rng = random.Random(draw(st.integers(0, 2**32), label="seed"))
    grid, start = draw(st.sampled_from(GRIDS)), draw(MOMENTS)
    outcome = draw(st.sampled_from((None, None, "succeeded", "failed", "continuing")))
    if outcome is None:
        return lifecycle(RULES, grid, rng, start)
    return dispute(RULES, grid, rng, start, outcome)


PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ACROSS_MIDNIGHT = lifecycle(RULES, GRID, random.Random(7), NEW_YEARS_EVE)


@PROPERTY
@given(timelines(), st.data())
def test_facts_do_not_depend_on_the_order_events_arrive_in(events: list[Event[Any]],
                                                           data: st.DataObject) -> None:
    incident_id = events[0].aggregate_id
    late = data.draw(st.permutations(events), label="delivery order")
    in_order = facts(incident_id, events)
    assert in_order  # a reported matter always counts as reported
    assert facts(incident_id, late) == in_order


@PROPERTY
@given(timelines(), st.data())
def test_an_event_delivered_twice_adds_no_fact(events: list[Event[Any]],
                                               data: st.DataObject) -> None:
    incident_id = events[0].aggregate_id
    again = data.draw(st.sampled_from(events), label="redelivered")
    delivered = list(events)
    delivered.insert(data.draw(st.integers(0, len(delivered)), label="where"), again)
    assert facts(incident_id, delivered) == facts(incident_id, events)


@PROPERTY
@given(timelines())
@example(ACROSS_MIDNIGHT)
def test_every_fact_is_a_known_measure_counted_on_the_shanghai_day_it_happened(
        events: list[Event[Any]]) -> None:
    incident_id = events[0].aggregate_id
    by_id = {e.event_id: e for e in events}
    deadline = fold(incident_id, events).deadline
    for fact in facts(incident_id, events):
        assert fact.measure in MEASURES
        assert (fact.grid, fact.incident_id) == (events[0].grid, incident_id)
        if fact.event_id is None:  # figures due by a deadline count on the deadline's day
            assert fact.measure in {"due", "due_closed", "due_closed_on_time",
                                    "due_closed_clean", "due_closed_on_time_clean"}
            assert deadline is not None and fact.day == shanghai_day(deadline)
        else:
            assert fact.day == shanghai_day(by_id[fact.event_id].occurred_at)


@PROPERTY
@given(timelines())
def test_each_resolution_ends_in_a_close_or_a_rework_and_each_reopen_in_another_close(
        events: list[Event[Any]]) -> None:
    counted = Counter(f.measure for f in facts(events[0].aggregate_id, events))
    kinds = Counter(e.event_type for e in events)
    assert counted["reported"] == 1
    assert counted["owned"] == 1  # nobody transfers or returns in these lifecycles
    assert counted["rework"] == kinds["incident.rework_requested"]
    assert counted["reopened"] == kinds["incident.reopened"]
    assert counted["closed"] == counted["verified"] == kinds["incident.closed"]
    if kinds["incident.closed"]:  # an incident lifecycle: closed once, and again per reopen
        assert counted["closed"] == 1 + counted["reopened"]
        assert counted["resolved"] == counted["closed"] + counted["rework"]
        assert counted["due"] == counted["due_closed"] == 1
    assert counted["repeated_rework"] == (1 if counted["rework"] >= 2 else 0)
    # 处置率 and 化解率 count the matter, however often it was resolved
    assert counted["matters_resolved"] == min(counted["resolved"], 1)
    assert counted["disputes_resolved"] == min(counted["resolved"], counted["disputes_found"])


def test_an_event_at_half_past_five_utc_on_new_years_eve_counts_on_new_years_day() -> None:
    report = ACROSS_MIDNIGHT[0]
    assert report.occurred_at == NEW_YEARS_EVE
    (counted,) = facts(report.aggregate_id, [report])
    assert (counted.measure, counted.day, counted.event_id) == (
        "reported", date(2024, 1, 1), report.event_id)
    before_midnight = reported(at=datetime(2023, 12, 31, 15, 59, tzinfo=UTC))
    assert before_midnight.days("reported") == [date(2023, 12, 31)]


# --- one matter, step by step ------------------------------------------------------------------

def test_a_closed_matter_counts_each_step_of_its_chain_once() -> None:
    matter = closed()
    assert matter.chain.stage == "closed"
    assert matter.counted() == Counter({
        "reported": 1, "owned": 1, "resolved": 1, "matters_resolved": 1,
        "resolved_on_time": 1, "verified": 1, "rated": 1, "satisfied": 1, "closed": 1,
        "due": 1, "due_closed": 1, "due_closed_on_time": 1,
        "due_closed_clean": 1, "due_closed_on_time_clean": 1})
    values = {f.measure: f.value for f in matter.facts() if f.value is not None}
    assert values == {"owned": 48 * 60, "resolved": 5 * 3600, "verified": 18 * 3600,
                      "rated": 5.0}
    assert matter.days("closed") == [date(2026, 11, 21)]  # Saturday morning
    assert matter.days("due") == [MONDAY.date()]


def test_a_closed_matter_found_on_patrol_names_all_five_links_and_is_complete() -> None:
    matter = closed(patrol_id="patrol-0001")
    assert matter.counted()["closed"] == 1
    assert matter.counted()["closed_complete"] == 1
    assert matter.counted()["closed_by_reporter"] == 0


def test_a_closed_matter_nobody_inspected_is_not_complete() -> None:
    assert "inspect" not in closed().chain.links
    assert closed().counted()["closed_complete"] == 0


def test_a_link_held_by_a_role_not_allowed_to_hold_it_leaves_the_chain_incomplete() -> None:
    matter = closed(admin, patrol_id="patrol-0001")  # an admin cannot inspect or report
    assert matter.chain.complete
    assert matter.counted()["closed"] == 1
    assert matter.counted()["closed_complete"] == 0


def test_a_matter_closed_by_the_person_who_reported_it_is_flagged() -> None:
    matter = closed(chief, verifier=chief)
    assert matter.chain.links["report"].actor_id == chief.id
    assert matter.chain.links["supervise"].actor_id == chief.id
    assert matter.counted()["closed"] == 1
    assert matter.counted()["closed_by_reporter"] == 1
    assert closed(chief, verifier=supervisor).counted()["closed_by_reporter"] == 0
    assert closed(finder, verifier=chief).counted()["closed_by_reporter"] == 0


def test_a_suspect_matter_drops_out_of_the_clean_closure_counts() -> None:
    """The adjusted closure rates read `due_closed_clean`: a closure by its own reporter or
    a reopening within 7 days keeps a matter out of it, whatever else it counts."""
    done = closed()
    assert done.chain.closed_at is not None
    reopened_soon = done.does(supervisor, {"type": "reopen", "reason": "住户反映问题复发"},
                              done.chain.closed_at + timedelta(days=2))
    assert done.counted()["due_closed_clean"] == done.counted()["due_closed"] == 1
    for flagged, guard in ((closed(chief, verifier=chief), "closed_by_reporter"),
                           (reopened_soon, "reopened_soon")):
        assert flagged.counted()[guard] == 1
        assert flagged.counted()["due_closed_clean"] == 0
        assert flagged.counted()["due_closed_on_time_clean"] == 0


@pytest.mark.parametrize(("satisfaction", "rated", "satisfied"),
                         [(None, 0, 0), (1, 1, 0), (3, 1, 0), (4, 1, 1), (5, 1, 1)])
def test_a_score_of_four_or_five_counts_as_satisfied(satisfaction: int | None, rated: int,
                                                      satisfied: int) -> None:
    matter = (reported().does(owner, RESOLVE, FRIDAY)
              .does(supervisor, accepted(satisfaction), FRIDAY + timedelta(hours=1)))
    assert (matter.counted()["rated"], matter.counted()["satisfied"]) == (rated, satisfied)
    assert matter.counted()["verified"] == 1


def test_a_dispute_mediated_successfully_is_found_resolved_and_mediated() -> None:
    events = dispute(RULES, GRID, random.Random(3), FRIDAY, "succeeded")
    counted = Counter(f.measure for f in facts(events[0].aggregate_id, events))
    assert counted == Counter({
        "reported": 1, "disputes_found": 1, "owned": 1, "resolved": 1, "matters_resolved": 1,
        "resolved_on_time": 1, "disputes_resolved": 1, "mediated_ok": 1, "due": 1})


@pytest.mark.parametrize("outcome", ["failed", "continuing"])
def test_a_dispute_not_yet_settled_is_found_and_owned_but_not_resolved(outcome: str) -> None:
    events = dispute(RULES, GRID, random.Random(3), FRIDAY, outcome)
    counted = Counter(f.measure for f in facts(events[0].aggregate_id, events))
    assert counted == Counter({"reported": 1, "disputes_found": 1, "owned": 1, "due": 1})


def test_an_incident_in_the_dispute_category_is_a_dispute_found() -> None:
    assert reported(category=Category.dispute).counted() == Counter(
        {"reported": 1, "disputes_found": 1})
    assert reported(category=Category.environment).counted() == Counter({"reported": 1})


def test_a_matter_only_reported_has_no_deadline_and_is_not_due() -> None:
    assert reported().counted() == Counter({"reported": 1})


def reworked(times: int) -> Matter:
    matter = reported().does(owner, RESOLVE, FRIDAY)
    for n in range(times):
        matter = (matter.does(supervisor, REJECTED, FRIDAY + timedelta(hours=2 * n + 1))
                  .does(owner, RESOLVE, FRIDAY + timedelta(hours=2 * n + 2)))
    return matter


@pytest.mark.parametrize(("times", "repeated"), [(0, 0), (1, 0), (2, 1), (3, 1)])
def test_the_second_rework_of_a_matter_flags_it_as_repeated_once(times: int,
                                                                  repeated: int) -> None:
    counted = reworked(times).counted()
    assert counted["rework"] == times
    assert counted["repeated_rework"] == repeated
    assert counted["resolved"] == times + 1  # every resolution counts, the reworked ones too
    assert counted["matters_resolved"] == 1  # but the matter once: 处置率 counts matters
    rate = figures(counted, min_cases=1)["resolution_rate"]
    assert (rate["numerator"], rate["denominator"], rate["percent"]) == (1, 1, 100.0)
    assert counted["verified"] == 0  # a rejected verification supervises nothing


@pytest.mark.parametrize(("after", "soon"), [
    (timedelta(days=6), 1), (timedelta(days=7), 1), (timedelta(days=8), 0)])
def test_a_reopening_within_seven_days_of_the_close_is_flagged(after: timedelta,
                                                                soon: int) -> None:
    done = closed()
    assert done.chain.closed_at is not None
    reopened_at = done.chain.closed_at + after
    matter = done.does(supervisor, {"type": "reopen", "reason": "住户反映问题复发"},
                       reopened_at)
    assert matter.counted()["reopened"] == 1
    assert matter.counted()["reopened_soon"] == soon
    assert matter.days("reopened") == [shanghai_day(reopened_at)]


def test_a_matter_closed_after_its_deadline_is_due_and_closed_but_not_on_time() -> None:
    deadline = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # 01:00 on the 24th in Shanghai
    late = deadline + timedelta(hours=3)
    matter = (reported()
              .does(chief, {"type": "assign", "assignee": {"id": owner.id, "role": "worker"},
                            "deadline": deadline.isoformat()}, FRIDAY)
              .does(owner, ACCEPT, FRIDAY + timedelta(hours=1))
              .does(owner, RESOLVE, late)
              .does(supervisor, accepted(), late + timedelta(hours=1)))
    assert matter.chain.deadline == deadline
    counted = matter.counted()
    assert (counted["due"], counted["due_closed"], counted["due_closed_on_time"]) == (1, 1, 0)
    assert (counted["resolved"], counted["resolved_on_time"]) == (1, 0)
    assert matter.days("due") == matter.days("due_closed") == [date(2026, 11, 24)]


def test_a_matter_closed_before_its_deadline_counts_on_the_deadlines_day() -> None:
    matter = closed()
    assert matter.chain.closed_at is not None and matter.chain.closed_at < MONDAY
    assert matter.days("due_closed_on_time") == [MONDAY.date()]
    assert matter.days("closed") != [MONDAY.date()]


def test_a_suspended_matter_leaves_what_is_due_until_it_resumes() -> None:
    suspended = (reported().does(owner, ACCEPT, FRIDAY)
                 .does(chief, {"type": "suspend", "reason": "冬季停工，来年开春处理"},
                       FRIDAY + timedelta(hours=1)))
    assert suspended.chain.stage == "suspended"
    assert suspended.counted()["suspended"] == 1
    assert suspended.counted()["due"] == 0
    resumed = suspended.does(chief, {"type": "resume"}, FRIDAY + timedelta(days=3, hours=1))
    assert resumed.counted()["due"] == 1
    assert resumed.days("due") == [(MONDAY + timedelta(days=3)).date()]  # paused three days


def test_an_extended_matter_is_due_on_its_new_deadline() -> None:
    later = MONDAY + timedelta(days=10)
    matter = (reported().does(owner, ACCEPT, FRIDAY)
              .does(chief, {"type": "extend", "deadline": later.isoformat(),
                            "reason": "需协调施工单位"}, FRIDAY + timedelta(hours=1)))
    assert matter.counted()["extended"] == 1
    assert matter.days("due") == [later.date()]


def test_a_deadline_the_sla_clock_saw_pass_counts_overdue_on_the_deadlines_day() -> None:
    owned = reported().does(owner, ACCEPT, FRIDAY)
    assert owned.tick(MONDAY - timedelta(minutes=1)).counted()["overdue"] == 0
    late = owned.tick(MONDAY + timedelta(hours=1))
    assert late.counted()["overdue"] == 1
    assert late.days("overdue") == [MONDAY.date()]
    assert late.counted()["escalated"] == 0  # still within the grace
    escalated = late.tick(MONDAY + RULES.grace + timedelta(hours=1))
    assert escalated.chain.level == Level.community
    assert (escalated.counted()["escalated"], escalated.counted()["escalated_beyond_town"]) == (
        1, 0)


@pytest.mark.parametrize(("level", "beyond_town"), [
    ("community", 0), ("town", 0), ("county", 1)])
def test_only_an_escalation_to_the_county_leaves_the_town(level: str, beyond_town: int) -> None:
    matter = reported().does(chief, {"type": "escalate", "reason": "需县级部门协调",
                                     "to_level": level}, FRIDAY + timedelta(hours=1))
    assert matter.chain.level == Level(level)
    assert matter.counted()["escalated"] == 1
    assert matter.counted()["escalated_beyond_town"] == beyond_town


def test_a_second_overdue_for_the_same_deadline_is_not_counted_again() -> None:
    owned = reported().does(owner, ACCEPT, FRIDAY)
    first = owned.happen(owned.next_event(IncidentOverdue(deadline=MONDAY), by=SLA_CLOCK,
                                          at=MONDAY))
    twice = first.happen(first.next_event(IncidentOverdue(deadline=MONDAY), by=SLA_CLOCK,
                                          at=MONDAY))
    assert twice.chain.overdue_count == 1  # the chain took only the first
    assert twice.counted()["overdue"] == 1


def test_an_escalation_of_a_closed_matter_takes_no_effect_and_is_not_counted() -> None:
    done = closed()
    after = done.happen(done.next_event(
        IncidentEscalated(from_level=Level.grid, to_level=Level.county, reason="超期未办结"),
        by=SLA_CLOCK, at=MONDAY))
    assert after.chain.level == Level.grid and after.chain.escalations == ()
    assert after.counted()["escalated"] == 0
    assert after.counted()["escalated_beyond_town"] == 0


def test_an_escalation_delivered_twice_is_counted_once() -> None:
    matter = reported().does(chief, {"type": "escalate", "reason": "需县级部门协调",
                                     "to_level": "county"}, FRIDAY + timedelta(hours=1))
    escalation = matter.events[-1]
    assert isinstance(escalation.payload, IncidentEscalated)
    counted = Counter(f.measure for f in facts(matter.id, [*matter.events, escalation]))
    assert (counted["escalated"], counted["escalated_beyond_town"]) == (1, 1)


def test_an_extension_delivered_twice_is_counted_once() -> None:
    matter = (reported().does(owner, ACCEPT, FRIDAY)
              .does(chief, {"type": "extend", "deadline": (MONDAY + timedelta(days=10))
                            .isoformat(), "reason": "需协调施工单位"}, FRIDAY + timedelta(hours=1)))
    extension = matter.events[-1]
    counted = Counter(f.measure for f in facts(matter.id, [*matter.events, extension]))
    assert counted["extended"] == 1


# --- patrols -----------------------------------------------------------------------------------

def a_patrol(ended_at: datetime, *, finds: str | None = None) -> Event[PatrolLogged]:
    return an_event(
        PatrolLogged(started_at=ended_at - timedelta(hours=2), ended_at=ended_at,
                     findings=[Finding(note="楼道堆放杂物", incident_id=finds)]),
        by=finder, at=ended_at, aggregate_id="patrol-0001", seq=0)


def test_a_patrol_counts_for_its_grid_on_the_shanghai_day_it_ended() -> None:
    patrol = a_patrol(datetime(2023, 12, 31, 16, 30, tzinfo=UTC))  # started on the 31st
    assert patrol_facts(patrol) == [
        Fact("patrolled", date(2024, 1, 1), GRID, "patrol-0001", patrol.event_id)]


def test_a_patrol_in_a_matters_timeline_is_its_inspection_not_a_fact_of_its_own() -> None:
    matter = reported(patrol_id="patrol-0001")
    patrol = a_patrol(FRIDAY - timedelta(minutes=30), finds=matter.id)
    assert facts(matter.id, [patrol]) == []  # found, but nobody reported it yet
    with_patrol = matter.happen(patrol)
    assert with_patrol.counted() == Counter({"reported": 1})
    assert with_patrol.chain.links["inspect"].at == patrol.payload.ended_at


# --- places and rollups ------------------------------------------------------------------------

def test_a_grid_lies_in_its_county_town_and_community() -> None:
    assert places_of("610728/105/001/02") == [
        "610728", "610728/105", "610728/105/001", "610728/105/001/02"]
    assert places_of("610728/105/001/02/7")[-2:] == ["610728/105/001/02", "610728/105/001/02/7"]


def test_a_batch_moves_each_grid_day_and_measure_by_what_it_counts_and_takes_back() -> None:
    day = date(2026, 11, 20)
    owned = Fact("owned", day, GRID, "inc-1", None, 60.0)
    assert sorted(moves([owned, Fact("owned", day, GRID, "inc-2", None, 120.5),
                         Fact("reported", day, "610728/106/002/01", "inc-3")],
                        [owned, Fact("reported", day, GRID, "inc-1")])) == [
        (GRID, day, "owned", 1, 120_500_000), (GRID, day, "reported", -1, None),
        ("610728/106/002/01", day, "reported", 1, None)]


a_fact = st.builds(
    Fact, measure=st.sampled_from(sorted(MEASURES)),
    day=st.dates(min_value=date(2023, 1, 1), max_value=date(2026, 12, 31)),
    grid=st.sampled_from(GRIDS), incident_id=st.sampled_from(("inc-1", "inc-2")),
    value=st.none() | st.integers(0, 10**6).map(float))


@settings(max_examples=100, deadline=None)
@given(st.lists(a_fact, max_size=30))
def test_taking_facts_back_out_moves_nothing(facts_: list[Fact]) -> None:
    assert all(n == 0 and not micros for *_, n, micros in moves(facts_, facts_))
    moved = moves(facts_, [])
    assert all(micros == sum(round(f.value * 10**6) for f in facts_ if f.value is not None
                             and [f.grid, f.day, f.measure] == key)
               for *key, _, micros in moved if micros is not None)
    assert sum(n for *_, n, _ in moved) == len(facts_)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=5))
def test_a_towns_rate_is_its_grids_numerators_over_their_denominators(
        grids: list[tuple[int, int]]) -> None:
    day = date(2026, 11, 20)
    pairs = [(min(a, b), max(a, b)) for a, b in grids]  # resolved <= reported in each grid
    counted: list[Fact] = []
    for n, (resolved, reported_) in enumerate(pairs):
        grid = f"{TOWN}/00{n}/01"
        counted += [Fact("reported", day, grid, f"inc-{n}-{i}") for i in range(reported_)]
        counted += [Fact("matters_resolved", day, grid, f"inc-{n}-{i}") for i in range(resolved)]
    town = {m: sum(n for grid, _, measure, n, _ in moves(counted, [])
                   if measure == m and TOWN in places_of(grid))
            for m in ("matters_resolved", "reported")}
    assert town == {"matters_resolved": sum(r for r, _ in pairs),
                    "reported": sum(d for _, d in pairs)}
    rate = figures(town, min_cases=5)["resolution_rate"]
    assert (rate["numerator"], rate["denominator"]) == (town["matters_resolved"],
                                                         town["reported"])
    if town["reported"]:  # rounded half up to one decimal: at most half a tenth away
        assert rate["percent"] == pytest.approx(
            100 * town["matters_resolved"] / town["reported"], abs=0.05 + 1e-9)


# --- rates -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("numerator", "denominator", "shown"), [
    (644, 655, 98.3),  # 镇巴县 2023 mediation success
    (138, 138, 100.0),  # 下湄桥街道 dispute resolution
    (1, 8, 12.5), (1, 3, 33.3), (2, 3, 66.7), (0, 7, 0.0),
    (1, 16, 6.3),  # 6.25 rounds half up, not to even
    (1, 80, 1.3),  # 1.25 likewise
])
def test_a_rate_is_a_percentage_rounded_half_up_to_one_decimal(numerator: int, denominator: int,
                                                               shown: float) -> None:
    assert percent(numerator, denominator) == shown


@pytest.mark.parametrize("numerator", [0, 1, 12])
def test_a_rate_of_nothing_is_not_a_number(numerator: int) -> None:
    assert percent(numerator, 0) is None


def test_a_rate_on_too_few_cases_is_shown_but_not_ranked() -> None:
    counts = {"due": 4, "due_closed": 3, "mediated_ok": 644, "disputes_found": 655}
    shown = figures(counts, min_cases=5)
    assert shown["closure_rate"] == {
        "numerator": 3, "denominator": 4, "percent": 75.0, "ranked": False,
        "label": "结案率 closure rate"}
    assert shown["mediation_success_rate"]["percent"] == 98.3
    assert shown["mediation_success_rate"]["ranked"] is True
    assert figures(counts, min_cases=4)["closure_rate"]["ranked"] is True
    nothing = shown["satisfaction_rate"]
    assert (nothing["numerator"], nothing["denominator"], nothing["percent"],
            nothing["ranked"]) == (0, 0, None, False)
    assert set(shown) == {rate.name for rate in RATES}


def test_every_rate_is_a_ratio_of_two_measures_that_are_counted() -> None:
    assert len(RATE_BY_NAME) == len(RATES)
    for rate in RATES:
        assert {rate.numerator, rate.denominator} <= MEASURES
        assert rate.numerator != rate.denominator
