"""The five-have chain (五有): folded in timeline order, so late phones change nothing, and no
sequence of events, however wrong, makes two owners or a supervision without a resolution."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.commands import IssuedCommand
from events.dispute import DisputeKind, DisputeReported, MediationRecorded, Party
from events.envelope import Actor, Event, Payload, Role
from events.incident import (
    Category,
    IncidentAccepted,
    IncidentAssigned,
    IncidentClosed,
    IncidentEscalated,
    IncidentExtended,
    IncidentOverdue,
    IncidentRejected,
    IncidentReopened,
    IncidentReported,
    IncidentResolved,
    IncidentResumed,
    IncidentReturned,
    IncidentReworkRequested,
    IncidentSuspended,
    IncidentTransferred,
    IncidentVerified,
    Level,
    Location,
    Person,
)
from events.patrol import Finding, PatrolLogged
from projections.five_have import Chain, evolve, fold, incidents_of, row
from projections.incident_decider import (
    COMMAND_ROLES,
    SLA_CLOCK,
    Rejected,
    decide,
    due,
    envelopes,
    for_command,
)
from projections.sla import load

SHANGHAI = ZoneInfo("Asia/Shanghai")
RULES = load()
INCIDENT = "inc-430382-0001"
GRID = "430382/101/003/07"
PLACE = Location(description="银田寺社区 3 号楼二单元")
FRIDAY = datetime(2026, 11, 20, 9, 12, tzinfo=SHANGHAI)
STAGES = {"unknown", "found", "reported", "assigned", "owned", "resolved", "verified", "closed",
          "rejected", "suspended"}

finder = Actor(id="w-lina", role=Role.worker)
owner = Actor(id="w-wangqiang", role=Role.worker)
chief = Actor(id="gc-zhaomin", role=Role.grid_chief)
supervisor = Actor(id="sv-chenjing", role=Role.supervisor)
CAST = (
    finder, owner, chief, supervisor,
    Actor(id="gc-sunli", role=Role.grid_chief),
    Actor(id="p-zhou", role=Role.police),
    Actor(id="m-liu", role=Role.mediator),
    Actor(id="sv-huang", role=Role.supervisor),
    Actor(id="a-xu", role=Role.auditor),
)
FIELD = tuple(a for a in CAST if a.role in (Role.worker, Role.grid_chief, Role.police,
                                            Role.mediator))


def an_event(payload: Payload, *, by: Actor, at: datetime, seq: int,
             aggregate_id: str = INCIDENT, event_id: uuid.UUID | None = None) -> Event[Any]:
    event: Event[Any] = Event[type(payload)](  # type: ignore[misc,operator]
        event_id=event_id or uuid.uuid5(uuid.NAMESPACE_URL, f"{aggregate_id}/{seq}/{at}"),
        event_type=payload.event_type, schema_version=payload.schema_version,
        occurred_at=at, recorded_at=at, actor=by, grid=GRID, aggregate_id=aggregate_id,
        aggregate_seq=seq, payload=payload)
    return event


def a_report(kind: str = "incident", *, category: Category = Category.safety_hazard,
             patrol_id: str | None = None) -> Payload:
    if kind == "dispute":
        return DisputeReported(kind=DisputeKind.neighbour, parties=[Party(name="张三")],
                               summary="两户因宅基地边界发生争执。", location=PLACE,
                               patrol_id=patrol_id)
    return IncidentReported(category=category, title="楼道堆放杂物",
                            description="楼道堆放纸箱，阻塞消防通道。", location=PLACE,
                            patrol_id=patrol_id)


def a_patrol(ended_at: datetime, *, by: Actor = finder) -> Event[Any]:
    """A patrol log whose finding names the incident (有人巡查)."""
    return an_event(
        PatrolLogged(started_at=ended_at - timedelta(hours=1), ended_at=ended_at,
                     findings=[Finding(note="楼道堆放杂物，存在消防隐患", incident_id=INCIDENT)]),
        by=by, at=ended_at, seq=0, aggregate_id="patrol-0001")


@dataclass
class Lifecycle:
    """Events as the log holds them for one incident, and the chain evolved in that order."""

    events: list[Event[Any]]
    chain: Chain

    def happen(self, *events: Event[Any]) -> Lifecycle:
        chain = self.chain
        for event in events:
            chain = evolve(chain, event)
        return Lifecycle([*self.events, *events], chain)

    def command(self, actor: Actor, step: dict[str, Any], at: datetime,
                command_id: uuid.UUID | None = None) -> Lifecycle:
        """What the decider would emit for this command; raises Rejected if it refuses."""
        command = IssuedCommand.model_validate({
            "command_id": command_id or uuid.uuid5(uuid.NAMESPACE_URL, f"{at}/{step}"),
            "incident_id": INCIDENT, "occurred_at": at, "recorded_at": at, "actor": actor,
            "command": step})
        decided = decide(command, self.chain, RULES)
        return self.happen(*envelopes(self.chain, for_command(command, decided), actor=actor,
                                      recorded_at=at, correlation_id=command.command_id))

    def tick(self, now: datetime) -> Lifecycle:
        return self.happen(*envelopes(self.chain, due(self.chain, now, RULES),
                                      actor=SLA_CLOCK, recorded_at=now))


def reported(*, patrolled: bool = False) -> Lifecycle:
    start = Lifecycle([], Chain(INCIDENT))
    if patrolled:
        start = start.happen(a_patrol(FRIDAY - timedelta(minutes=5)))
    return start.happen(an_event(a_report(patrol_id="patrol-0001" if patrolled else None),
                                 by=finder, at=FRIDAY, seq=0))


# --- lifecycles built by the decider, so valid by construction --------------------------------

TEXT = st.sampled_from(["需协调施工单位", "现场仍有杂物", "转片警处理", "住户反映问题复发"])
PERSON = st.sampled_from(FIELD).map(lambda a: {"id": a.id, "role": a.role.value})
LEVELS = st.sampled_from(list(Level))
MINUTES = st.integers(-24 * 60, 10 * 24 * 60)  # a deadline moved by this much
ARGUMENTS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "assign": st.fixed_dictionaries({"assignee": PERSON, "level": st.none() | LEVELS,
                                     "deadline": st.none() | MINUTES}),
    "accept": st.just({}),
    "resolve": st.just({"measures": "联系物业清理", "outcome": "通道已畅通"}),
    "mediate": st.fixed_dictionaries(
        {"outcome": st.sampled_from(["succeeded", "succeeded", "failed", "continuing"])}),
    "verify": st.fixed_dictionaries({"verdict": st.sampled_from(["accepted", "rejected"]),
                                     "satisfaction": st.none() | st.integers(1, 5)}),
    "reopen": st.fixed_dictionaries({"reason": TEXT}),
    "escalate": st.fixed_dictionaries({"reason": TEXT, "to_level": st.none() | LEVELS}),
    "transfer": st.fixed_dictionaries({"assignee": PERSON, "reason": TEXT}),
    "reject": st.fixed_dictionaries(
        {"reason": st.sampled_from(["duplicate", "invalid", "not_ours"])}),
    "return": st.fixed_dictionaries({"reason": TEXT}),
    "extend": st.fixed_dictionaries({"deadline": MINUTES, "reason": TEXT}),
    "suspend": st.fixed_dictionaries({"reason": TEXT}),
    "resume": st.just({}),
}
# What usually comes next at each stage, so lifecycles get far; any command is tried now and
# then, and the decider refuses what does not fit.
LIKELY = {
    "reported": ("assign", "accept", "resolve", "resolve", "mediate", "suspend"),
    "assigned": ("accept", "resolve", "mediate", "transfer", "return", "assign", "escalate",
                 "extend", "suspend"),
    "owned": ("resolve", "resolve", "mediate", "escalate", "extend", "suspend", "transfer",
              "return"),
    "resolved": ("verify", "verify", "verify", "escalate", "extend"),
    "closed": ("reopen",),
    "suspended": ("resume", "resume", "extend", "escalate"),
}


GAP = st.integers(1, 600) | st.integers(1, 5 * 24 * 60)  # minutes until the next thing


def next_thing(draw: st.DrawFn, chain: Chain, now: datetime
               ) -> tuple[Actor, dict[str, Any]] | None:
    """A command someone issues now, or None for a tick of the SLA clock."""
    kind = draw(st.sampled_from((*LIKELY.get(chain.stage, ()) * 4, *ARGUMENTS, *["tick"] * 6)))
    if kind == "tick":
        return None
    step = {"type": kind, **draw(ARGUMENTS[kind])}
    if isinstance(step.get("deadline"), int):
        step["deadline"] = ((chain.deadline or now) + timedelta(minutes=step["deadline"])
                            ).isoformat()
    named = [Actor(id=i, role=Role(r)) for i, r in filter(None, (chain.owner, chain.assignee))]
    allowed = tuple(a for a in (*CAST, *named * 4) if a.role in COMMAND_ROLES[kind])
    return draw(st.sampled_from((*allowed * 5, *CAST))), step


@st.composite
def lifecycles(draw: st.DrawFn) -> Lifecycle:
    kind = draw(st.sampled_from(("incident", "dispute")))
    patrolled = draw(st.booleans())
    life = Lifecycle([], Chain(INCIDENT))
    now = FRIDAY + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    if patrolled:  # a patrol that found it; it may reach the server before or after the report
        life = life.happen(a_patrol(now - timedelta(minutes=5), by=draw(st.sampled_from(FIELD))))
    life = life.happen(an_event(
        a_report(kind, category=draw(st.sampled_from(tuple(Category))),
                 patrol_id="patrol-0001" if patrolled else None),
        by=draw(st.sampled_from(FIELD)), at=now, seq=0))
    for n in range(draw(st.integers(0, 40))):
        now += timedelta(minutes=draw(GAP))
        command = next_thing(draw, life.chain, now)
        if command is None:
            life = life.tick(now)
            continue
        try:
            life = life.command(*command, now, command_id=uuid.UUID(int=n + 1))
        except Rejected:
            pass
    return life


LIFECYCLE = settings(max_examples=100, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@LIFECYCLE
@given(lifecycles(), st.data())
def test_any_delivery_order_folds_to_the_chain_built_in_order(life: Lifecycle,
                                                              data: st.DataObject) -> None:
    assert all(incidents_of(event) == [INCIDENT] for event in life.events)  # all in one timeline
    late = data.draw(st.permutations(life.events), label="delivery order")
    assert fold(INCIDENT, late) == life.chain
    assert row(fold(INCIDENT, late)) == row(life.chain)
    assert fold(INCIDENT, life.events) == life.chain


@LIFECYCLE
@given(lifecycles())
def test_a_closed_chain_names_who_reported_owned_resolved_and_supervised(life: Lifecycle
                                                                       ) -> None:
    chain = Chain(INCIDENT)
    for event in life.events:
        chain = evolve(chain, event)
        if chain.stage == "closed":
            assert {"report", "own", "resolve", "supervise"} <= set(chain.links)
            assert chain.links["resolve"].actor_id != chain.links["supervise"].actor_id
            assert chain.complete == ("inspect" in chain.links)
            assert chain.closed_at is not None
        else:
            assert not chain.complete
            assert chain.closed_at is None


def test_the_lifecycles_reach_the_far_corners_of_the_chain() -> None:
    """The properties above say little if the generator never gets past 'reported'."""
    corners: dict[str, Callable[[Chain], bool]] = {
        "closed again after a reopen": lambda c: c.reopen_count > 0 and c.stage == "closed",
        "resolved again after rework": lambda c: c.rework_count > 0 and "resolve" in c.links,
        "overdue and escalated": lambda c: c.overdue_count > 0 and bool(c.escalations),
        "suspended and resumed": lambda c: c.paused > timedelta(0),
        "a dispute mediated": lambda c: c.kind == "dispute" and "resolve" in c.links,
        "returned to intake": lambda c: c.return_count > 0,
        "rejected at intake": lambda c: c.stage == "rejected",
        "closed, five links named": lambda c: c.complete,
    }
    reached: set[str] = set()

    @settings(max_examples=600, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(lifecycles())
    def explore(life: Lifecycle) -> None:
        chain = Chain(INCIDENT)
        for event in life.events:
            chain = evolve(chain, event)
            reached.update(name for name, seen in corners.items() if seen(chain))

    explore()
    assert reached == set(corners)


# --- any events at all, in any order: the chain's invariants hold ----------------------------

moments = st.integers(-3 * 24 * 60, 30 * 24 * 60).map(lambda m: FRIDAY + timedelta(minutes=m))
people = st.sampled_from(FIELD).map(lambda a: Person(id=a.id, role=a.role))
payloads: st.SearchStrategy[Payload] = st.one_of(
    st.builds(a_report, st.sampled_from(["incident", "dispute"]),
              patrol_id=st.none() | st.just("patrol-0001")),
    st.builds(IncidentRejected, reason=st.sampled_from(["duplicate", "invalid", "not_ours"])),
    st.builds(IncidentAssigned, assignee=people, deadline=moments, level=st.sampled_from(Level)),
    st.builds(IncidentAccepted, deadline=moments),
    st.builds(IncidentTransferred, assignee=people, reason=TEXT),
    st.builds(IncidentReturned, reason=TEXT),
    st.builds(IncidentEscalated, from_level=st.sampled_from(Level),
              to_level=st.sampled_from(Level), reason=TEXT),
    st.builds(IncidentExtended, deadline=moments, reason=TEXT),
    st.builds(IncidentSuspended, reason=TEXT),
    st.builds(IncidentResumed),
    st.builds(IncidentResolved, measures=TEXT, outcome=TEXT),
    st.builds(MediationRecorded, outcome=st.sampled_from(["succeeded", "failed", "continuing"])),
    st.builds(IncidentVerified, verdict=st.sampled_from(["accepted", "rejected"]),
              satisfaction=st.none() | st.integers(1, 5)),
    st.builds(IncidentReworkRequested, reason=TEXT),
    st.builds(IncidentClosed),
    st.builds(IncidentReopened, reason=TEXT),
    st.builds(IncidentOverdue, deadline=moments),
    moments.map(lambda at: PatrolLogged(
        started_at=at, ended_at=at,
        findings=[Finding(note="楼道堆放杂物", incident_id=INCIDENT)])),
)
any_event = st.builds(
    an_event, payloads, by=st.sampled_from((finder, owner, chief, supervisor, SLA_CLOCK)),
    at=moments, seq=st.integers(0, 12),
    aggregate_id=st.sampled_from((INCIDENT, INCIDENT, "inc-430382-0002")), event_id=st.uuids(),
)


@st.composite
def anything(draw: st.DrawFn) -> list[Event[Any]]:
    """Events in any order, some twice, some invented; often a real lifecycle scrambled, so the
    sequence reaches the stages a shuffle of random events would rarely get to."""
    if draw(st.booleans()):
        events = list(draw(lifecycles()).events)
    else:
        events = [an_event(a_report(), by=finder, at=FRIDAY, seq=0)]
    for invented in draw(st.lists(any_event, max_size=25)):
        events.insert(draw(st.integers(0, len(events))), invented)
    for _ in range(draw(st.integers(0, 5))):  # delivered twice
        again = events[draw(st.integers(0, len(events) - 1))]
        events.insert(draw(st.integers(0, len(events))), again)
    for _ in range(draw(st.integers(0, 8))):  # out of order
        at = draw(st.integers(0, len(events) - 1))
        events.insert(draw(st.integers(0, len(events) - 1)), events.pop(at))
    return events


def assert_sound(before: Chain, event: Event[Any], after: Chain) -> None:
    assert after.stage in STAGES
    if "supervise" in after.links:
        assert "resolve" in after.links
        assert after.links["supervise"].actor_id != after.links["resolve"].actor_id
    if "resolve" in after.links:  # 有人解决 is whoever is 负责
        resolver = after.links["resolve"]
        assert after.owner == (resolver.actor_id, resolver.role)
    own = after.links.get("own")
    assert after.owner == ((own.actor_id, own.role) if own else None)
    stage = after.suspended[0] if after.suspended else after.stage
    if stage in ("owned", "resolved", "verified", "closed"):
        assert after.owner is not None
    if stage in ("resolved", "verified", "closed"):
        assert "resolve" in after.links
    if stage in ("verified", "closed"):
        assert "supervise" in after.links
    if before.owner is not None and isinstance(event.payload, IncidentAccepted):
        assert after.owner == before.owner  # never two owners
        assert after.links["own"] == before.links["own"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(anything())
def test_no_sequence_of_events_breaks_the_chains_invariants(events: list[Event[Any]]) -> None:
    chain = Chain(INCIDENT)
    for event in events:
        before, chain = chain, evolve(chain, event)
        assert_sound(before, event, chain)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(anything(), st.data())
def test_folding_any_events_depends_on_their_set_not_their_delivery_order(
        events: list[Event[Any]], data: st.DataObject) -> None:
    timeline = list({e.event_id: e for e in events}.values())  # the timeline keeps one copy
    late = data.draw(st.permutations(timeline), label="delivery order")
    assert fold(INCIDENT, late) == fold(INCIDENT, timeline)


# --- examples -----------------------------------------------------------------------------

def test_resolved_on_the_spot_names_one_person_as_owner_and_resolver() -> None:
    life = reported(patrolled=True).command(
        owner, {"type": "resolve", "measures": "当场清理", "outcome": "通道已畅通"}, FRIDAY)
    chain = life.chain
    assert chain.stage == "resolved"
    assert chain.links["own"].actor_id == chain.links["resolve"].actor_id == owner.id
    assert chain.seconds_between("own", "resolve") == 0
    assert chain.seconds_between("report", "own") == 0

    closed = life.command(supervisor, {"type": "verify", "verdict": "accepted",
                                       "satisfaction": 5}, FRIDAY + timedelta(hours=2)).chain
    assert (closed.stage, closed.satisfaction, closed.complete) == ("closed", 5, True)
    assert closed.seconds_between("resolve", "supervise") == 2 * 3600
    assert [closed.links[n].actor_id for n in ("inspect", "report", "own", "resolve",
                                               "supervise")] == [
        finder.id, finder.id, owner.id, owner.id, supervisor.id]


def test_the_patrol_that_found_it_is_the_inspection_even_when_it_arrives_late() -> None:
    patrol = a_patrol(FRIDAY - timedelta(minutes=30), by=chief)
    report = an_event(a_report(patrol_id="patrol-0001"), by=finder, at=FRIDAY, seq=0)
    for order in ([patrol, report], [report, patrol]):
        chain = fold(INCIDENT, order)
        assert (chain.links["inspect"].actor_id, chain.links["inspect"].at) == (
            chief.id, FRIDAY - timedelta(minutes=30))
        assert chain.stage == "reported"


def test_a_patrol_that_named_the_incident_before_any_report_has_found_it() -> None:
    assert evolve(Chain(INCIDENT), a_patrol(FRIDAY)).stage == "found"


def closed_by(resolver: Actor, verifier: Actor) -> Lifecycle:
    return reported().command(
        resolver, {"type": "resolve", "measures": "清理", "outcome": "已畅通"}, FRIDAY,
    ).command(verifier, {"type": "verify", "verdict": "accepted", "satisfaction": 4},
              FRIDAY + timedelta(hours=1))


def test_reopening_unlinks_the_resolution_and_its_supervision_and_counts() -> None:
    life = closed_by(owner, supervisor).command(
        supervisor, {"type": "reopen", "reason": "住户反映问题复发"}, FRIDAY + timedelta(days=1))
    chain = life.chain
    assert chain.stage == "owned"
    assert chain.owner == (owner.id, "worker")
    assert "own" in chain.links
    assert "resolve" not in chain.links and "supervise" not in chain.links
    assert (chain.reopen_count, chain.closed_at, chain.satisfaction) == (1, None, None)

    again = life.command(owner, {"type": "resolve", "measures": "再次清理", "outcome": "已畅通"},
                         FRIDAY + timedelta(days=2)).chain
    assert again.stage == "resolved"
    assert again.links["resolve"].at == FRIDAY + timedelta(days=2)
    assert again.reopen_count == 1


def test_a_suspension_adds_the_time_paused_to_the_deadline() -> None:
    life = reported().command(owner, {"type": "accept"}, FRIDAY)
    deadline = life.chain.deadline
    assert deadline is not None
    paused = timedelta(days=2, hours=3)
    suspended = life.command(chief, {"type": "suspend", "reason": "冬季停工"},
                             FRIDAY + timedelta(hours=1))
    assert suspended.chain.stage == "suspended"
    resumed = suspended.command(chief, {"type": "resume"}, FRIDAY + timedelta(hours=1) + paused)
    assert resumed.chain.stage == "owned"
    assert resumed.chain.paused == paused
    assert resumed.chain.deadline == deadline + paused


def test_an_overdue_is_counted_once_per_deadline() -> None:
    life = reported().command(owner, {"type": "accept"}, FRIDAY)
    deadline = life.chain.deadline
    assert deadline is not None
    overdue = [an_event(IncidentOverdue(deadline=deadline), by=SLA_CLOCK, at=deadline, seq=s,
                        event_id=uuid.uuid4()) for s in (2, 3)]
    twice = life.happen(*overdue).chain
    assert (twice.overdue_count, twice.overdue) == (1, True)

    later = deadline + timedelta(days=3)
    extended = life.happen(*overdue).command(
        chief, {"type": "extend", "deadline": later.isoformat(), "reason": "需协调"},
        deadline + timedelta(hours=1))
    assert extended.chain.overdue is False  # the new deadline has not passed
    missed_again = extended.happen(an_event(IncidentOverdue(deadline=later), by=SLA_CLOCK,
                                            at=later, seq=5)).chain
    assert (missed_again.overdue_count, missed_again.overdue) == (2, True)


def test_a_second_accept_by_someone_else_leaves_the_owner() -> None:
    life = reported()
    first = an_event(IncidentAccepted(deadline=FRIDAY + timedelta(days=1)), by=owner,
                     at=FRIDAY, seq=1)
    second = an_event(IncidentAccepted(deadline=FRIDAY + timedelta(days=9)), by=finder,
                      at=FRIDAY + timedelta(minutes=1), seq=2)
    chain = life.happen(first, second).chain
    assert chain.owner == (owner.id, "worker")
    assert chain.links["own"].actor_id == owner.id
    assert chain.deadline == FRIDAY + timedelta(days=1)


def test_a_verification_by_the_resolver_themself_supervises_nothing() -> None:
    resolved = reported().command(
        chief, {"type": "resolve", "measures": "清理", "outcome": "已畅通"}, FRIDAY).chain
    self_check = an_event(IncidentVerified(verdict="accepted"), by=chief,
                          at=FRIDAY + timedelta(hours=1), seq=3)
    assert evolve(resolved, self_check) == replace(resolved, last_seq=3)


def test_a_resume_stamped_before_its_suspension_never_moves_the_deadline_earlier() -> None:
    life = reported().command(owner, {"type": "accept"}, FRIDAY)
    deadline = life.chain.deadline
    assert deadline is not None
    suspended = life.command(chief, {"type": "suspend", "reason": "等待第三方"},
                             FRIDAY + timedelta(hours=2))
    resumed = suspended.command(supervisor, {"type": "resume"},  # its phone is 10 minutes slow
                                FRIDAY + timedelta(hours=2) - timedelta(minutes=10)).chain
    assert resumed.paused >= timedelta(0)
    assert resumed.deadline is not None and resumed.deadline >= deadline
