"""Every read endpoint × every role × in scope / out of scope, against docs/SECURITY.md.

The objects all live in one grid; each role's token covers either that grid's county
(in scope) or another county (out of scope). Out of scope never answers 200: ids answer 404
(they must not reveal that something exists elsewhere), places answer 403.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from events.envelope import Role
from projections.matters import FiveHave
from projections.sla import LOCAL
from tests.stack import RunningStack, a_place, an_incident, wait_until

ROLES = [Role.worker, Role.grid_chief, Role.police, Role.mediator, Role.supervisor,
         Role.auditor, Role.admin, Role.resident]
AUDITORS = {Role.auditor, Role.admin}


class Objects:
    """One incident in one grid, and where to ask for it."""

    def __init__(self, stack: RunningStack) -> None:
        self.grid = a_place()
        self.county = self.grid.split("/")[0]
        incident = an_incident(self.grid)
        with stack.ingest(stack.token(Role.worker, self.grid)) as phone:
            assert phone.post("/v1/events", json=incident).status_code == 201
        self.event_id, self.incident_id = incident["event_id"], incident["aggregate_id"]
        wait_until(lambda: stack.caught_up(FiveHave.name, *FiveHave.topics)
                   and stack.caught_up("archive", *FiveHave.topics), what="the fixture")
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

