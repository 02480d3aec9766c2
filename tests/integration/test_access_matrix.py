"""Every read endpoint × every role × in scope / out of scope, against docs/SECURITY.md;
the break-glass reads (`?reveal=personal&reason=`) and erasures of residents too.

The objects all live in one grid; each role's token covers either that grid's county
(in scope) or another county (out of scope). Out of scope never answers 200: ids answer 404
(they must not reveal that something exists elsewhere), places answer 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events.envelope import Role
from projections.matters import FiveHave
from projections.sla import LOCAL
from tests.residents import a_resident
from tests.stack import RunningStack, a_place, an_incident, command, wait_until

ROLES = [Role.worker, Role.grid_chief, Role.police, Role.mediator, Role.supervisor,
         Role.auditor, Role.admin, Role.resident]
AUDITORS = {Role.auditor, Role.admin}
#: whose work reaches a dispute's parties: they alone may read them unmasked (break-glass)
REVEALERS = {Role.grid_chief, Role.police, Role.mediator}


def a_dispute(grid: str, *parties: tuple[str, str]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "event_type": "dispute.reported", "schema_version": 1,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(), "grid": grid,
        "aggregate_id": f"dsp-{uuid.uuid4().hex[:12]}", "aggregate_seq": 0,
        "payload": {"kind": "neighbour", "summary": "邻里因排水沟争执。",
                    "parties": [{"name": name, "phone": phone} for name, phone in parties],
                    "location": {"description": "马场村 3 组"}}}


class Objects:
    """One incident and one dispute in one grid, and where to ask for them. The dispute names
    two residents: the first is read (masked, or by break-glass), the second is erased."""

    def __init__(self, stack: RunningStack) -> None:
        self.grid = a_place()
        self.county = self.grid.split("/")[0]
        incident = an_incident(self.grid)
        self.resident, self.erasable = a_resident("居民"), a_resident("居民")
        dispute = a_dispute(self.grid, self.resident, self.erasable)
        with stack.ingest(stack.token(Role.worker, self.grid)) as phone:
            assert phone.post("/v1/events", json=incident).status_code == 201
            assert phone.post("/v1/events", json=dispute).status_code == 201
        self.event_id, self.incident_id = incident["event_id"], incident["aggregate_id"]
        self.dispute_event_id, self.dispute_id = dispute["event_id"], dispute["aggregate_id"]
        wait_until(lambda: stack.caught_up(FiveHave.name, *FiveHave.topics)
                   and stack.caught_up("archive", *FiveHave.topics)
                   and stack.sql("select 1 from five_have where incident_id = %s",
                                 self.dispute_id), what="the fixture")
        now = datetime.now(LOCAL)
        self.month = f"{now.year}-{now.month:02d}"
        self.half = f"{now.year}H{1 if now.month <= 6 else 2}"


#: (name, path built from the objects, who may read it in scope, the out-of-scope answer)
READS: list[tuple[str, Callable[[Objects], str], set[Role] | None, int]] = [
    ("an archived event", lambda o: f"/v1/events/{o.event_id}", None, 404),
    ("a place's events", lambda o: f"/v1/places/{o.grid}/events", None, 403),
    ("an incident's chain", lambda o: f"/v1/incidents/{o.incident_id}", None, 404),
    ("incidents of a place", lambda o: f"/v1/incidents?place={o.grid}", None, 403),
    ("disputes of a place", lambda o: f"/v1/disputes?place={o.grid}", None, 403),
    ("rates", lambda o: f"/v1/rates?place={o.grid}", None, 403),
    ("rates as CSV", lambda o: f"/v1/rates?place={o.grid}&format=csv", None, 403),
    ("a figure explained", lambda o: f"/v1/rates/explain?place={o.grid}&figure=reported",
     None, 403),
    ("the funnel", lambda o: f"/v1/funnel?place={o.grid}", None, 403),
    ("a history", lambda o: f"/v1/audit/history/{o.incident_id}", AUDITORS, 404),
    ("a compound's ranking",
     lambda o: f"/v1/points/rankings?compound={o.grid}&month={o.month}", None, 403),
    ("a place's awards", lambda o: f"/v1/points/awards?place={o.county}&half={o.half}",
     None, 403),
]


@pytest.fixture(scope="module")
def objects(stack: RunningStack) -> Objects:
    return Objects(stack)


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
@pytest.mark.parametrize(("name", "path", "readers", "outside"), READS,
                         ids=[r[0] for r in READS])
def test_a_read_answers_as_documented_in_and_out_of_scope(
    stack: RunningStack, objects: Objects, role: Role, name: str,
    path: Callable[[Objects], str], readers: set[Role] | None, outside: int,
) -> None:
    url = path(objects)
    with stack.query(stack.token(role, objects.county)) as api:
        inside = api.get(url)
    allowed = readers is None or role in readers
    assert inside.status_code == (200 if allowed else 403), (name, role, inside.text[:300])
    with stack.query(stack.token(role, a_place().split("/")[0])) as api:
        elsewhere = api.get(url)
    expected = outside if allowed else 403
    assert elsewhere.status_code == expected, (name, role, elsewhere.text[:300])
    assert objects.incident_id not in elsewhere.text and objects.event_id not in elsewhere.text


#: the reads a break-glass may reveal: one event, one matter
REVEALS: list[tuple[str, Callable[[Objects], str]]] = [
    ("a dispute's event", lambda o: f"/v1/events/{o.dispute_event_id}"),
    ("a dispute's chain", lambda o: f"/v1/incidents/{o.dispute_id}"),
]
BREAK_GLASS = {"reveal": "personal", "reason": "调解需电话联系当事人"}


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
@pytest.mark.parametrize(("name", "path"), REVEALS, ids=[r[0] for r in REVEALS])
def test_a_break_glass_read_answers_as_documented_in_and_out_of_scope(
    stack: RunningStack, objects: Objects, role: Role, name: str,
    path: Callable[[Objects], str],
) -> None:
    """Masked for every role in scope; unmasked only to a grid chief, police or mediator who
    states a reason (422 without one); 403 to every other role wherever the object is; an
    object outside a revealer's scope is absent (404)."""
    url, plaintext = path(objects), list(objects.resident)
    with stack.query(stack.token(role, objects.county)) as api:
        masked = api.get(url)
        inside = api.get(url, params=BREAK_GLASS)
        unstated = api.get(url, params={"reveal": "personal"})
    assert masked.status_code == 200, (name, role, masked.text[:300])
    assert [s for s in plaintext if s in masked.text] == []
    if role in REVEALERS:
        assert inside.status_code == 200, (name, role, inside.text[:300])
        assert all(s in inside.text for s in plaintext), (name, role)
        assert unstated.status_code == 422, (name, role, unstated.text[:300])
    else:
        assert (inside.status_code, unstated.status_code) == (403, 403), (name, role)
        assert [s for s in plaintext if s in inside.text + unstated.text] == []
    with stack.query(stack.token(role, a_place().split("/")[0])) as api:
        elsewhere = api.get(url, params=BREAK_GLASS)
    assert elsewhere.status_code == (404 if role in REVEALERS else 403), (name, role)
    assert [s for s in plaintext if s in elsewhere.text] == []
    assert objects.dispute_id not in elsewhere.text


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
def test_an_erasure_answers_as_documented_in_and_out_of_scope(
    stack: RunningStack, objects: Objects, role: Role,
) -> None:
    """Only an administrator erases, and only in a grid of their scope; a second erasure of
    the same person finds no key (404). Nobody else erases anything anywhere (403)."""
    name, phone = objects.erasable
    erasure = {"grid": objects.grid, "name": name, "phone": phone, "reason": "本人申请，工单 7"}
    with stack.query(stack.token(role, a_place().split("/")[0])) as api:
        elsewhere = api.post("/v1/persons/erasures", json=erasure)
    assert elsewhere.status_code == 403, (role, elsewhere.text[:300])
    with stack.query(stack.token(role, objects.county)) as api:
        inside = api.post("/v1/persons/erasures", json=erasure)
        again = api.post("/v1/persons/erasures", json=erasure)
    if role is Role.admin:
        assert inside.status_code == 200, inside.text[:300]
        assert inside.json()["keys_deleted"] == 1
        assert again.status_code == 404, again.text[:300]
    else:
        assert (inside.status_code, again.status_code) == (403, 403), (role, inside.text[:300])
    assert name not in inside.text + elsewhere.text and phone not in inside.text + elsewhere.text


#: who may publish which fact (in scope); everyone else gets 403, and out of scope 403 too
REPORTERS = {Role.worker, Role.grid_chief, Role.police, Role.mediator}


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
def test_publishing_a_report_answers_as_documented(stack: RunningStack, role: Role) -> None:
    grid = a_place()
    with stack.ingest(stack.token(role, grid)) as phone:
        inside = phone.post("/v1/events", json=an_incident(grid))
        elsewhere = phone.post("/v1/events", json=an_incident(a_place()))
    assert inside.status_code == (201 if role in REPORTERS else 403), inside.text
    assert elsewhere.status_code == 403, elsewhere.text



#: commands only a grid chief or a supervisor gives (docs/SECURITY.md, Decisions)
SUPERVISORS_COMMANDS: dict[str, dict[str, Any]] = {
    "assign": {"type": "assign", "assignee": {"id": "w-wangqiang", "role": "worker"}},
    "transfer": {"type": "transfer", "assignee": {"id": "w-wangqiang", "role": "worker"},
                 "reason": "转办"},
    "reject": {"type": "reject", "reason": "invalid"},
    "extend": {"type": "extend", "reason": "需协调",
               "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat()},
    "suspend": {"type": "suspend", "reason": "冬季停工"},
    "resume": {"type": "resume"},
    "verify": {"type": "verify", "verdict": "accepted"},
    "reopen": {"type": "reopen", "reason": "复发"},
}


def test_a_worker_token_cannot_issue_supervisor_commands(stack: RunningStack) -> None:
    grid = a_place()
    incident = an_incident(grid)
    with stack.ingest(stack.token(Role.worker, grid)) as phone:
        assert phone.post("/v1/events", json=incident).status_code == 201
        wait_until(lambda: stack.sql("select 1 from five_have where incident_id = %s",
                                     incident["aggregate_id"]), what="the report in the chain")
        refused = {step: command(phone, incident["aggregate_id"], body)
                   for step, body in SUPERVISORS_COMMANDS.items()}
    for step, answer in refused.items():
        # refused at the edge, before the commands topic: the decider never sees it
        assert answer.status_code == 403, (step, answer.text)
        assert answer.json()["errors"] == [{"field": "command.type",
                                            "reason": f"role worker may not {step}"}]
    assert stack.sql("select stage from five_have where incident_id = %s",
                     incident["aggregate_id"]) == [("reported",)]
