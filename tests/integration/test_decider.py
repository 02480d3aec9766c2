"""The decider on the real stack: one owner under a race, and the SLA clock's breaches once."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from events.envelope import Role
from events.topics import INCIDENTS
from tests.conftest import GRACE_SECONDS
from tests.stack import RunningStack, an_incident, command, wait_until

TRIALS = 50


def decided(stack: RunningStack, token: str, answer: httpx.Response) -> httpx.Response:
    """The decider's answer: a 202 is followed up at its status URL until decided."""
    if answer.status_code != 202:
        return answer
    with stack.ingest(token) as app:
        return wait_until(lambda: (r := app.get(answer.json()["status_url"])).status_code != 202
                          and r, what="the decider's answer")


def report(stack: RunningStack, token: str, grid: str, count: int) -> list[str]:
    incidents = [an_incident(grid) for _ in range(count)]
    with stack.ingest(token) as phone:
        answer = phone.post("/v1/events/batch", json={"events": incidents})
    assert answer.json()["accepted"] == count, answer.text
    ids = [str(i["aggregate_id"]) for i in incidents]
    wait_until(lambda: stack.sql("select count(*) from five_have where incident_id = any(%s)",
                                 ids)[0][0] == count, what="the reports in the chain")
    return ids


def test_two_workers_accepting_at_once_make_exactly_one_owner(
    stack: RunningStack, grid: str
) -> None:
    workers = [stack.token(Role.worker, grid, sub=f"w-race-{n}") for n in (1, 2)]
    incidents = report(stack, workers[0], grid, TRIALS)
    answers: dict[tuple[str, int], httpx.Response] = {}
    start = threading.Barrier(2 * TRIALS)

    def accept(incident_id: str, n: int) -> None:
        with stack.ingest(workers[n]) as app:
            start.wait()
            answers[incident_id, n] = decided(
                stack, workers[n], command(app, incident_id, {"type": "accept"}))

    racers = [threading.Thread(target=accept, args=(i, n)) for i in incidents for n in (0, 1)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()

    for incident_id in incidents:
        codes = sorted(answers[incident_id, n].status_code for n in (0, 1))
        assert codes == [200, 409], incident_id
        loser = next(answers[incident_id, n] for n in (0, 1)
                     if answers[incident_id, n].status_code == 409)
        assert loser.json()["error"] == "already_owned"
        assert "already owned by w-race-" in loser.json()["errors"][0]["reason"]
    winners = {i: f"w-race-{n + 1}" for (i, n), a in answers.items() if a.status_code == 200}
    wait_until(lambda: dict(stack.sql("select incident_id, owner_id from five_have"
                                      " where incident_id = any(%s)", incidents)) == winners,
               what="the chain to show each race's winner as the owner")
    # the whole log archived, then counted: a second accept would not be missed for arriving late
    stack.archived(INCIDENTS.name)
    assert stack.sql("select count(*) from archive where aggregate_id = any(%s)"
                     " and event_type = 'incident.accepted'", incidents)[0][0] == TRIALS
    metrics = httpx.get(stack.info["metrics_urls"]["decider"]).text
    assert 'gridgov_commands_total{code="already_owned",command="accept",status="rejected"}' \
        in metrics


def sla_events(stack: RunningStack, incident_id: str) -> list[tuple[Any, ...]]:
    """Every record the log carried for this incident's SLA clock (the archive keeps copies)."""
    return stack.sql(
        "select event_type, body->>'occurred_at' from ("
        "  select event_type, convert_from(body, 'utf8')::jsonb as body from archive"
        "  where aggregate_id = %s union all"
        "  select a.event_type, convert_from(a.body, 'utf8')::jsonb from archive_duplicates d"
        "  join archive a using (event_id) where a.aggregate_id = %s) e"
        " where event_type in ('incident.overdue', 'incident.escalated') order by 1",
        incident_id, incident_id)


def test_a_missed_deadline_is_overdue_once_and_escalates_once_across_a_restart(
    stack: RunningStack, grid: str
) -> None:
    chief = stack.token(Role.grid_chief, grid, sub="gc-sla")
    late, sentinel = report(stack, chief, grid, 2)
    now = datetime.now(UTC)
    with stack.ingest(chief) as app:
        for incident_id, seconds in ((late, 2), (sentinel, 2 + 3 * GRACE_SECONDS)):
            deadline = (now + timedelta(seconds=seconds)).isoformat()
            assigned = decided(stack, chief, command(app, incident_id, {
                "type": "assign", "assignee": {"id": "w-sla", "role": "worker"},
                "deadline": deadline}))
            assert assigned.status_code == 200, assigned.text

    def chain(incident_id: str) -> tuple[Any, ...]:
        return stack.sql("select overdue, overdue_count, level, deadline from five_have"
                         " where incident_id = %s", incident_id)[0]

    wait_until(lambda: chain(late)[0], timeout=30, what="the late incident to be overdue")
    pid = stack.reload()["pids"]["decider"]
    os.kill(pid, signal.SIGKILL)  # between the breach and the escalation, GRACE_SECONDS later
    wait_until(lambda: stack.reload()["pids"]["decider"] != pid, what="the decider's restart")
    wait_until(lambda: chain(late)[2] == "community", timeout=60,
               what="the late incident to escalate")
    wait_until(lambda: chain(sentinel)[2] == "community", timeout=60,
               what="a later deadline to escalate, so the clock ticked on past the first")

    overdue, count, level, deadline = chain(late)
    assert (overdue, count, level) == (True, 1, "community")
    # the archive is a projector of its own, and the events and their copies are read there
    stack.archived(INCIDENTS.name)
    emitted = sla_events(stack, late)
    assert [kind for kind, _ in emitted] == ["incident.escalated", "incident.overdue"]
    at = {kind: datetime.fromisoformat(when) for kind, when in emitted}
    assert at["incident.overdue"] == deadline  # the breach happened at the deadline itself
    assert at["incident.escalated"] == deadline + timedelta(seconds=GRACE_SECONDS)
    with stack.query(stack.token(Role.supervisor, grid)) as api:
        shown = api.get(f"/v1/incidents/{late}").json()
    assert shown["overdue"] is True
    assert [e["event_type"] for e in shown["timeline"]][-2:] == ["incident.overdue",
                                                                  "incident.escalated"]
    assert all(e["actor"]["role"] == "system" for e in shown["timeline"][-2:])
    assert uuid.UUID(shown["timeline"][-1]["event_id"]).version == 5  # derived, not random
    with stack.query(stack.token(Role.supervisor, grid)) as api:  # both chains are overdue
        funnel = api.get("/v1/funnel", params={"place": grid}).json()
    assert funnel["overdue"] == stack.sql("select count(*) from five_have where grid = %s"
                                          " and overdue", grid)[0][0] == 2
