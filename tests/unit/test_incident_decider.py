"""The incident decider: who may do what to an incident, and what the SLA clock owes it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
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
    IncidentReopened,
    IncidentReported,
    IncidentResolved,
    IncidentReworkRequested,
    IncidentVerified,
    Level,
    Location,
)
from projections.five_have import Chain, evolve
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
GRID = "430382/101/003/07"
FRIDAY = datetime(2026, 11, 20, 9, 12, tzinfo=SHANGHAI)
# safety_hazard at grid level is due one working day later: Friday -> Monday, same time.
MONDAY = datetime(2026, 11, 23, 9, 12, tzinfo=SHANGHAI)
GRACE = RULES.grace

finder = Actor(id="w-lina", role=Role.worker)
owner = Actor(id="w-wangqiang", role=Role.worker)
chief = Actor(id="gc-zhaomin", role=Role.grid_chief)
supervisor = Actor(id="sv-chenjing", role=Role.supervisor)
mediator = Actor(id="m-liu", role=Role.mediator)
auditor = Actor(id="a-xu", role=Role.auditor)

RESOLVE = {"type": "resolve", "measures": "联系物业清理楼道杂物", "outcome": "消防通道已畅通"}
ACCEPTED = {"type": "verify", "verdict": "accepted", "satisfaction": 5}


@dataclass
class Incident:
    """One incident's chain, moved on by commands through `decide` as the decider would."""

    chain: Chain
    events: list[Event[Any]] = field(default_factory=list)

    def command(self, actor: Actor, step: dict[str, Any], at: datetime = FRIDAY,
                command_id: uuid.UUID | None = None) -> IssuedCommand:
        return IssuedCommand.model_validate({
            "command_id": command_id or uuid.uuid4(), "incident_id": self.chain.incident_id,
            "occurred_at": at, "recorded_at": at, "actor": actor, "command": step})

    def decide(self, actor: Actor, step: dict[str, Any], at: datetime = FRIDAY
               ) -> list[Payload]:
        return decide(self.command(actor, step, at), self.chain, RULES)

    def does(self, actor: Actor, step: dict[str, Any], at: datetime = FRIDAY
             ) -> list[Event[Any]]:
        command = self.command(actor, step, at)
        decided = decide(command, self.chain, RULES)
        return self.apply(envelopes(self.chain, for_command(command, decided), actor=actor,
                                    recorded_at=at, correlation_id=command.command_id))

    def refuses(self, actor: Actor, step: dict[str, Any], at: datetime = FRIDAY) -> str:
        with pytest.raises(Rejected) as refused:
            self.decide(actor, step, at)
        return refused.value.code

    def tick(self, now: datetime) -> list[Event[Any]]:
        return self.apply(self.owed(now))

    def owed(self, now: datetime) -> list[Event[Any]]:
        return envelopes(self.chain, due(self.chain, now, RULES), actor=SLA_CLOCK,
                         recorded_at=now)

    def apply(self, events: list[Event[Any]]) -> list[Event[Any]]:
        for event in events:
            self.chain = evolve(self.chain, event)
        self.events.extend(events)
        return events


def a_report(kind: str = "incident") -> Incident:
    payload: Payload
    place = Location(description="银田寺社区 3 号楼二单元")
    if kind == "dispute":
        payload = DisputeReported(kind=DisputeKind.neighbour, parties=[Party(name="张三")],
                                  summary="两户因宅基地边界发生争执。", location=place)
    else:
        payload = IncidentReported(category=Category.safety_hazard, title="楼道堆放杂物",
                                   description="楼道堆放纸箱，阻塞消防通道。", location=place)
    incident_id = f"inc-430382-{uuid.uuid4().hex[:8]}"
    reported: Event[Any] = Event[type(payload)](  # type: ignore[misc,operator]
        event_id=uuid.uuid4(), event_type=payload.event_type,
        schema_version=payload.schema_version, occurred_at=FRIDAY, recorded_at=FRIDAY,
        actor=finder, grid=GRID, aggregate_id=incident_id, aggregate_seq=0, payload=payload)
    incident = Incident(Chain(incident_id))
    incident.apply([reported])
    return incident


def owned_by(actor: Actor = owner) -> Incident:
    incident = a_report()
    incident.does(actor, {"type": "accept"})
    return incident


def resolved_by(actor: Actor = owner) -> Incident:
    incident = owned_by(actor)
    incident.does(actor, RESOLVE)
    return incident


def closed() -> Incident:
    incident = resolved_by(owner)
    incident.does(supervisor, ACCEPTED)
    return incident


def kinds(decided: list[Payload] | list[Event[Any]]) -> list[type]:
    return [type(p.payload if isinstance(p, Event) else p) for p in decided]


# --- who may do what ----------------------------------------------------------------------

def test_a_worker_may_not_verify() -> None:
    assert resolved_by(owner).refuses(finder, ACCEPTED) == "forbidden_role"


_PERSON = {"id": "w-wangqiang", "role": "worker"}
A_STEP_OF_EACH_KIND: dict[str, dict[str, Any]] = {
    "assign": {"type": "assign", "assignee": _PERSON},
    "accept": {"type": "accept"},
    "resolve": RESOLVE,
    "mediate": {"type": "mediate", "outcome": "succeeded"},
    "verify": ACCEPTED,
    "reopen": {"type": "reopen", "reason": "复发"},
    "escalate": {"type": "escalate", "reason": "需要上级协调"},
    "transfer": {"type": "transfer", "assignee": _PERSON, "reason": "转办"},
    "reject": {"type": "reject", "reason": "invalid"},
    "return": {"type": "return", "reason": "不属于本网格"},
    "extend": {"type": "extend", "deadline": MONDAY.isoformat(), "reason": "需协调"},
    "suspend": {"type": "suspend", "reason": "冬季停工"},
    "resume": {"type": "resume"},
}


@pytest.mark.parametrize("step", sorted(A_STEP_OF_EACH_KIND))
def test_an_auditor_may_issue_no_command_at_all(step: str) -> None:
    assert a_report().refuses(auditor, A_STEP_OF_EACH_KIND[step]) == "forbidden_role"


def test_every_command_names_the_roles_that_may_issue_it() -> None:
    assert set(COMMAND_ROLES) == set(A_STEP_OF_EACH_KIND)
    assert all(Role.auditor not in roles and Role.system not in roles
               for roles in COMMAND_ROLES.values())


def test_a_supervisor_neither_takes_on_nor_resolves_field_work() -> None:
    incident = a_report()
    assert incident.refuses(supervisor, {"type": "accept"}) == "forbidden_role"
    assert incident.refuses(supervisor, RESOLVE) == "forbidden_role"


def test_an_incident_nobody_reported_cannot_be_taken_on() -> None:
    unreported = Incident(Chain("inc-430382-nobody"))
    assert unreported.refuses(owner, {"type": "accept"}) == "not_found"


# --- 有人负责: one owner ------------------------------------------------------------------------

def test_accepting_takes_the_slas_deadline_counted_from_when_it_was_recorded() -> None:
    incident = a_report()
    (accepted,) = incident.does(owner, {"type": "accept"})
    assert accepted.payload == IncidentAccepted(deadline=MONDAY)
    assert incident.chain.owner == ("w-wangqiang", "worker")


def test_a_second_accept_finds_the_incident_already_owned() -> None:
    incident = owned_by(owner)
    assert incident.refuses(finder, {"type": "accept"}) == "already_owned"
    assert incident.refuses(owner, {"type": "accept"}) == "already_owned"


def test_only_the_assignee_may_take_on_an_assigned_incident() -> None:
    incident = a_report()
    incident.does(chief, {"type": "assign", "assignee": {"id": owner.id, "role": "worker"}})
    assert incident.refuses(finder, {"type": "accept"}) == "not_assignee"
    assert incident.refuses(finder, RESOLVE) == "not_assignee"
    assert kinds(incident.does(owner, {"type": "accept"})) == [IncidentAccepted]


def test_an_assignment_carries_the_approvers_deadline_over_the_slas() -> None:
    incident = a_report()
    tuesday = MONDAY + timedelta(days=1)
    (assigned,) = incident.does(chief, {"type": "assign", "level": "community",
                                        "assignee": {"id": owner.id, "role": "worker"},
                                        "deadline": tuesday.isoformat()})
    assert assigned.payload == IncidentAssigned(
        assignee={"id": owner.id, "role": "worker"}, deadline=tuesday, level=Level.community)
    (accepted,) = incident.does(owner, {"type": "accept"})
    assert accepted.payload.deadline == tuesday


def test_someone_else_cannot_resolve_what_another_owns() -> None:
    assert owned_by(owner).refuses(finder, RESOLVE) == "not_owned"


def test_resolving_on_the_spot_takes_the_incident_on_and_resolves_it_in_one_decision() -> None:
    incident = a_report()
    decided = incident.does(owner, RESOLVE)
    assert kinds(decided) == [IncidentAccepted, IncidentResolved]
    assert [e.aggregate_seq for e in decided] == [1, 2]
    assert incident.chain.stage == "resolved"
    assert incident.chain.links["own"].actor_id == incident.chain.links["resolve"].actor_id


def test_the_owner_resolving_later_emits_only_the_resolution() -> None:
    assert kinds(owned_by(owner).decide(owner, RESOLVE)) == [IncidentResolved]


# --- 有人督查: verification ---------------------------------------------------------------------

def test_nobody_verifies_their_own_resolution() -> None:
    # A grid chief is both a field worker and an approver: the one role that could try.
    incident = resolved_by(chief)
    assert incident.refuses(chief, ACCEPTED) == "self_verification"
    assert kinds(incident.decide(supervisor, ACCEPTED)) == [IncidentVerified, IncidentClosed]


def test_a_rejected_verification_sends_the_incident_back_for_rework() -> None:
    incident = resolved_by(owner)
    decided = incident.does(supervisor, {"type": "verify", "verdict": "rejected",
                                         "note": "现场仍有杂物"})
    assert kinds(decided) == [IncidentVerified, IncidentReworkRequested]
    assert decided[1].payload == IncidentReworkRequested(reason="现场仍有杂物")
    assert (incident.chain.stage, incident.chain.rework_count) == ("owned", 1)
    assert "resolve" not in incident.chain.links
    assert kinds(incident.does(owner, RESOLVE)) == [IncidentResolved]


def test_only_a_resolved_incident_can_be_verified() -> None:
    assert owned_by(owner).refuses(supervisor, ACCEPTED) == "invalid_stage"


@pytest.mark.parametrize(("actor", "step"), [
    (owner, {"type": "accept"}), (owner, RESOLVE), (chief, ACCEPTED),
    (chief, {"type": "suspend", "reason": "冬季停工"}),
    (chief, {"type": "escalate", "reason": "需要上级协调"}),
])
def test_a_closed_incident_accepts_nothing_but_a_reopen(actor: Actor, step: dict[str, Any]
                                                        ) -> None:
    incident = closed()
    assert incident.refuses(actor, step) == "closed"
    (reopened,) = incident.decide(supervisor, {"type": "reopen", "reason": "住户反映问题复发"})
    assert isinstance(reopened, IncidentReopened)
    assert reopened.reason == "住户反映问题复发"
    assert reopened.deadline is not None and reopened.deadline > incident.chain.closed_at


def test_only_a_closed_incident_can_be_reopened() -> None:
    assert owned_by(owner).refuses(supervisor, {"type": "reopen", "reason": "复发"}) == \
        "invalid_stage"


# --- disputes ---------------------------------------------------------------------------------

def test_only_a_dispute_is_mediated() -> None:
    incident = a_report("incident")
    assert incident.refuses(mediator, {"type": "mediate", "outcome": "succeeded"}) == \
        "not_a_dispute"


def test_a_mediator_takes_on_a_dispute_by_mediating_it() -> None:
    dispute = a_report("dispute")
    decided = dispute.does(mediator, {"type": "mediate", "outcome": "continuing"})
    assert kinds(decided) == [IncidentAccepted, MediationRecorded]
    # dispute at grid level: 3 working days from Friday is Wednesday.
    assert decided[0].payload.deadline == MONDAY + timedelta(days=2)
    assert dispute.chain.stage == "owned"
    assert kinds(dispute.does(mediator, {"type": "mediate", "outcome": "succeeded"})) == [
        MediationRecorded]
    assert dispute.chain.stage == "resolved"


# --- deadlines and the ladder -----------------------------------------------------------------

def test_an_extension_must_move_the_deadline_later() -> None:
    incident = owned_by(owner)
    for when in (MONDAY, MONDAY - timedelta(minutes=1)):
        assert incident.refuses(chief, {"type": "extend", "deadline": when.isoformat(),
                                        "reason": "需协调施工单位"}) == "invalid_deadline"
    later = MONDAY + timedelta(days=7)
    assert incident.decide(chief, {"type": "extend", "deadline": later.isoformat(),
                                   "reason": "需协调施工单位"}) == [
        IncidentExtended(deadline=later, reason="需协调施工单位")]


def test_an_incident_without_a_deadline_cannot_be_extended() -> None:
    assert a_report().refuses(chief, {"type": "extend", "deadline": MONDAY.isoformat(),
                                      "reason": "需协调"}) == "invalid_deadline"


def test_escalation_goes_one_rung_up_by_default() -> None:
    assert owned_by(owner).decide(chief, {"type": "escalate", "reason": "需要上级协调"}) == [
        IncidentEscalated(from_level=Level.grid, to_level=Level.community,
                          reason="需要上级协调")]


def test_escalation_past_the_top_of_the_ladder_or_downwards_is_refused() -> None:
    incident = owned_by(owner)
    incident.does(chief, {"type": "escalate", "reason": "上报县级", "to_level": "county"})
    assert incident.chain.level is Level.county
    assert incident.refuses(chief, {"type": "escalate", "reason": "再上报"}) == "invalid_level"
    assert incident.refuses(chief, {"type": "escalate", "reason": "下放",
                                    "to_level": "town"}) == "invalid_level"


def test_a_suspended_incident_must_be_resumed_before_work_goes_on() -> None:
    incident = owned_by(owner)
    incident.does(chief, {"type": "suspend", "reason": "冬季停工，来年开春处理"})
    assert incident.refuses(owner, RESOLVE) == "suspended"
    incident.does(chief, {"type": "resume"})
    assert kinds(incident.decide(owner, RESOLVE)) == [IncidentResolved]


def test_a_retried_command_decides_the_same_event_ids() -> None:
    incident = a_report()
    command = incident.command(owner, RESOLVE, command_id=uuid.uuid4())

    def wrapped() -> list[Event[Any]]:
        return envelopes(incident.chain, for_command(command, decide(command, incident.chain,
                                                                     RULES)),
                         actor=owner, recorded_at=FRIDAY)

    assert [e.event_id for e in wrapped()] == [e.event_id for e in wrapped()]
    assert len({e.event_id for e in wrapped()}) == 2


# --- the SLA clock ----------------------------------------------------------------------------

def test_nothing_is_owed_until_the_deadline_has_passed() -> None:
    incident = owned_by(owner)
    assert incident.chain.deadline == MONDAY
    assert due(incident.chain, FRIDAY, RULES) == []
    assert due(incident.chain, MONDAY, RULES) == []


def test_a_missed_deadline_is_owed_exactly_one_overdue_stamped_at_the_deadline() -> None:
    owed = due(owned_by(owner).chain, MONDAY + timedelta(seconds=1), RULES)
    assert [(at, payload) for _, at, payload in owed] == [
        (MONDAY, IncidentOverdue(deadline=MONDAY))]


def test_escalation_waits_for_the_grace_after_the_deadline() -> None:
    chain = owned_by(owner).chain
    assert kinds([p for _, _, p in due(chain, MONDAY + GRACE, RULES)]) == [IncidentOverdue]
    owed = due(chain, MONDAY + GRACE + timedelta(seconds=1), RULES)
    assert kinds([p for _, _, p in owed]) == [IncidentOverdue, IncidentEscalated]
    _, at, escalated = owed[1]
    assert at == MONDAY + GRACE
    assert isinstance(escalated, IncidentEscalated)
    assert (escalated.from_level, escalated.to_level) == (Level.grid, Level.community)


def test_the_top_of_the_ladder_is_reported_overdue_but_never_auto_escalated() -> None:
    incident = a_report()
    incident.does(chief, {"type": "assign", "level": "county",
                          "assignee": {"id": owner.id, "role": "worker"}})
    deadline = incident.chain.deadline
    assert deadline is not None
    owed = due(incident.chain, deadline + timedelta(days=30), RULES)
    assert kinds([p for _, _, p in owed]) == [IncidentOverdue]


moments = st.lists(st.integers(-3 * 86400, 3 * 86400), min_size=1, max_size=8).map(sorted)


@settings(max_examples=150, deadline=None)
@given(moments)
def test_ticks_at_any_times_emit_one_overdue_and_one_escalation_per_deadline(
        offsets: list[int]) -> None:
    incident = owned_by(owner)
    for offset in offsets:
        incident.tick(MONDAY + timedelta(seconds=offset))
    emitted = kinds(incident.events)
    last = timedelta(seconds=offsets[-1])
    assert emitted.count(IncidentOverdue) == (1 if last > timedelta(0) else 0)
    assert emitted.count(IncidentEscalated) == (1 if last > GRACE else 0)
    assert incident.chain.overdue_count == emitted.count(IncidentOverdue)
    assert due(incident.chain, MONDAY + last, RULES) == []  # nothing left owed at the last tick
    if last > GRACE:  # both owed and recorded: nothing more, however late the clock runs
        for later in (last + timedelta(seconds=1), last + timedelta(days=365)):
            assert due(incident.chain, MONDAY + later, RULES) == []


def test_a_new_deadline_can_be_missed_again() -> None:
    incident = owned_by(owner)
    incident.tick(MONDAY + GRACE + timedelta(seconds=1))
    later = MONDAY + timedelta(days=7)
    incident.does(chief, {"type": "extend", "deadline": later.isoformat(), "reason": "需协调"})
    assert due(incident.chain, later, RULES) == []
    owed = due(incident.chain, later + GRACE + timedelta(seconds=1), RULES)
    assert [(type(p), at) for _, at, p in owed] == [
        (IncidentOverdue, later), (IncidentEscalated, later + GRACE)]


def test_a_suspended_incident_owes_nothing() -> None:
    incident = owned_by(owner)
    incident.does(chief, {"type": "suspend", "reason": "冬季停工，来年开春处理"})
    assert due(incident.chain, MONDAY + timedelta(days=60), RULES) == []


def test_a_closed_incident_owes_nothing() -> None:
    assert due(closed().chain, MONDAY + timedelta(days=60), RULES) == []


def test_ticks_at_different_times_emit_the_same_events_but_for_the_recording_time() -> None:
    incident = owned_by(owner)
    early = incident.owed(MONDAY + GRACE + timedelta(seconds=1))
    late = incident.owed(MONDAY + timedelta(days=3))
    assert [e.event_id for e in early] == [e.event_id for e in late]
    assert [e.occurred_at for e in early] == [MONDAY, MONDAY + GRACE]
    assert [e.model_dump(exclude={"recorded_at"}) for e in early] == \
        [e.model_dump(exclude={"recorded_at"}) for e in late]
    assert [e.recorded_at for e in early] != [e.recorded_at for e in late]
    assert all(e.actor == SLA_CLOCK for e in early)


def test_another_incidents_missed_deadline_has_other_event_ids() -> None:
    one, other = owned_by(owner), owned_by(owner)
    assert one.chain.deadline == other.chain.deadline
    now = MONDAY + timedelta(days=1)
    assert not {e.event_id for e in one.owed(now)} & {e.event_id for e in other.owed(now)}


# --- regressions: bugs these tests found ----------------------------------------------------

def test_an_overdue_for_a_deadline_set_again_is_a_new_event() -> None:
    incident = a_report()
    first, second = MONDAY, MONDAY + timedelta(days=1)

    def assign(deadline: datetime, at: datetime) -> None:
        incident.does(chief, {"type": "assign", "deadline": deadline.isoformat(),
                              "assignee": {"id": owner.id, "role": "worker"}}, at=at)

    assign(first, FRIDAY)
    (overdue_first,) = incident.tick(first + timedelta(minutes=1))
    assign(second, first + timedelta(minutes=2))
    incident.tick(second + timedelta(minutes=1))
    assign(first, second + timedelta(minutes=2))
    (overdue,) = [e for e in incident.owed(second + timedelta(minutes=3))
                  if isinstance(e.payload, IncidentOverdue)]
    assert overdue.payload.deadline == first
    assert overdue.aggregate_seq > overdue_first.aggregate_seq  # another event, later on
    assert overdue.event_id != overdue_first.event_id


def test_a_reopened_incident_is_not_overdue_for_a_deadline_that_passed_while_closed() -> None:
    incident = closed()  # closed on Friday, before Monday's deadline
    reopened_at = MONDAY + timedelta(days=2)
    incident.does(supervisor, {"type": "reopen", "reason": "住户反映问题复发"}, at=reopened_at)
    owed = due(incident.chain, reopened_at + timedelta(minutes=1), RULES)
    assert all(at >= reopened_at for _, at, _ in owed), owed
