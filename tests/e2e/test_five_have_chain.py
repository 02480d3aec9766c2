"""The five-have chain through HTTP: commands -> decider -> log -> projection -> query API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from events.envelope import Role
from tests.stack import RunningStack, a_patrol, an_incident, command, wait_until


def chain(stack: RunningStack, token: str, incident_id: str,
          until: Any = lambda c: True) -> dict[str, Any]:
    """The incident as the query API shows it, once `until(chain)` holds."""
    def read() -> dict[str, Any] | None:
        with stack.query(token) as api:
            found = api.get(f"/v1/incidents/{incident_id}")
        return found.json() if found.status_code == 200 and until(found.json()) else None
    return wait_until(read, what=f"incident {incident_id} in the chain read model")


def report(stack: RunningStack, token: str, grid: str, **over: Any) -> str:
    incident = an_incident(grid, **over)
    with stack.ingest(token) as phone:
        assert phone.post("/v1/events", json=incident).status_code == 201
    return str(incident["aggregate_id"])


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def refused(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == code, answer.text


def test_a_full_lifecycle_names_five_people(stack: RunningStack, grid: str) -> None:
    finder = stack.token(Role.worker, grid, sub="w-lina")
    owner = stack.token(Role.worker, grid, sub="w-wangqiang")
    chief = stack.token(Role.grid_chief, grid, sub="gc-zhaomin")
    supervisor = stack.token(Role.supervisor, grid.rsplit("/", 2)[0], sub="sv-chenjing")

    patrol = a_patrol(grid)
    with stack.ingest(finder) as phone:
        assert phone.post("/v1/events", json=patrol).status_code == 201
    incident_id = report(stack, finder, grid,
                         payload={**an_incident(grid)["payload"],
                                  "patrol_id": patrol["aggregate_id"]})
    chain(stack, chief, incident_id)

    with stack.ingest(chief) as app:
        assigned = ok(command(app, incident_id, {
            "type": "assign", "assignee": {"id": "w-wangqiang", "role": "worker"}}))
        assert [e["event_type"] for e in assigned["events"]] == ["incident.assigned"]
    with stack.ingest(finder) as app:  # not the assignee
        refused(command(app, incident_id, {"type": "accept"}), "not_assignee")
    with stack.ingest(owner) as app:
        ok(command(app, incident_id, {"type": "accept"}))
        ok(command(app, incident_id, {"type": "resolve", "measures": "联系物业清理楼道杂物",
                                      "outcome": "消防通道已畅通"}))
        forbidden = command(app, incident_id, {"type": "verify", "verdict": "accepted"})
        assert forbidden.status_code == 403, forbidden.text
        assert forbidden.json()["errors"][0]["field"] == "command.type"
    with stack.ingest(supervisor) as app:
        closed = ok(command(app, incident_id, {"type": "verify", "verdict": "accepted",
                                               "satisfaction": 5}))
        assert [e["event_type"] for e in closed["events"]] == ["incident.verified",
                                                                "incident.closed"]

    shown = chain(stack, supervisor, incident_id, until=lambda c: c["stage"] == "closed")
    by = {name: (link["by"], link["role"]) for name, link in shown["links"].items()}
    assert by == {"inspect": ("w-lina", "worker"), "report": ("w-lina", "worker"),
                  "own": ("w-wangqiang", "worker"), "resolve": ("w-wangqiang", "worker"),
                  "supervise": ("sv-chenjing", "supervisor")}
    assert shown["chain_complete"] is True
    assert shown["satisfaction"] == 5
    assert shown["title"] == "楼道堆放杂物"
    assert all(v is not None and v >= 0 for v in shown["durations_seconds"].values())
    assert [e["event_type"] for e in shown["timeline"]] == [
        "incident.reported", "incident.assigned", "incident.accepted",
        "incident.resolved", "incident.verified", "incident.closed"]

    # closed: nothing but a supervisor's reopen
    with stack.ingest(owner) as app:
        refused(command(app, incident_id, {"type": "resolve", "measures": "再次清理",
                                           "outcome": "已清理"}), "closed")
    with stack.ingest(chief) as app:
        assert command(app, incident_id, {"type": "reopen", "reason": "复发"}).status_code == 403
    with stack.ingest(supervisor) as app:
        ok(command(app, incident_id, {"type": "reopen", "reason": "住户反映问题复发"}))
    reopened = chain(stack, supervisor, incident_id, until=lambda c: c["stage"] == "owned")
    assert reopened["reopen_count"] == 1
    assert reopened["links"]["own"]["by"] == "w-wangqiang"
    assert reopened["links"]["resolve"] is None and reopened["links"]["supervise"] is None
    assert reopened["chain_complete"] is False


def test_resolved_on_the_spot_is_one_request_and_the_resolver_cannot_verify(
    stack: RunningStack, grid: str
) -> None:
    chief = stack.token(Role.grid_chief, grid, sub="gc-on-the-spot")
    incident_id = report(stack, chief, grid)
    chain(stack, chief, incident_id)
    with stack.ingest(chief) as app:
        resolved = ok(command(app, incident_id, {"type": "resolve", "measures": "当场劝离",
                                                 "outcome": "已解决"}))
        assert [e["event_type"] for e in resolved["events"]] == ["incident.accepted",
                                                                  "incident.resolved"]
        refused(command(app, incident_id, {"type": "verify", "verdict": "accepted"}),
                "self_verification")
    shown = chain(stack, chief, incident_id, until=lambda c: c["stage"] == "resolved")
    assert shown["links"]["own"]["by"] == shown["links"]["resolve"]["by"] == "gc-on-the-spot"


def test_a_retried_command_answers_the_same_and_emits_once(
    stack: RunningStack, grid: str
) -> None:
    worker = stack.token(Role.worker, grid, sub="w-retry")
    incident_id = report(stack, worker, grid)
    chain(stack, worker, incident_id)
    command_id = str(uuid.uuid4())
    with stack.ingest(worker) as app:
        first = ok(command(app, incident_id, {"type": "accept"}, command_id=command_id))
        again = ok(command(app, incident_id, {"type": "accept"}, command_id=command_id))
        status = ok(app.get(f"/v1/commands/{command_id}"))
    assert again == first == status
    shown = chain(stack, worker, incident_id, until=lambda c: c["stage"] == "owned")
    assert [e["event_type"] for e in shown["timeline"]] == ["incident.reported",
                                                            "incident.accepted"]
    # the archive is another projection: once it holds the log, it holds the two events once
    stack.archived("gridgov.incidents")
    assert stack.sql("select count(*) from archive where aggregate_id = %s",
                     incident_id)[0][0] == 2



def test_commands_refused_at_the_edge_name_the_field(stack: RunningStack, grid: str) -> None:
    worker = stack.token(Role.worker, grid)
    incident_id = report(stack, worker, grid)
    chain(stack, worker, incident_id)
    with stack.ingest(worker) as app:
        unknown = command(app, incident_id, {"type": "demolish"})
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["field"].startswith("command")
        elsewhere = command(app, "inc-not-in-my-grid", {"type": "accept"})
        assert elsewhere.status_code == 404
        assert elsewhere.json()["errors"][0]["field"] == "incident_id"
        bad_rating = command(app, incident_id, {"type": "resolve", "measures": "x"})
        assert bad_rating.status_code == 422
        assert any(e["field"] == "command.resolve.outcome"
                   for e in bad_rating.json()["errors"]), bad_rating.text
