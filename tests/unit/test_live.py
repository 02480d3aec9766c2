"""A batch's announcement always fits PostgreSQL's NOTIFY limit, and still names its places."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from events.envelope import Actor, Event, Role
from events.incident import Category, IncidentReported, Location
from projections.live import LIMIT, NEWEST, SOMEWHERE, message
from services.auth import Principal
from services.live import in_view


def reported(grid: str, title: str) -> Event[IncidentReported]:
    now = datetime(2026, 11, 26, 9, tzinfo=UTC)
    return Event[IncidentReported](
        event_id=uuid.uuid4(), event_type="incident.reported", schema_version=1,
        occurred_at=now, recorded_at=now, actor=Actor(id="w-1", role=Role.worker), grid=grid,
        aggregate_id=f"inc-{uuid.uuid4().hex[:12]}", aggregate_seq=0,
        payload=IncidentReported(category=Category.other, title=title, description="说明",
                                 location=Location(description="村口")))


def test_a_small_batch_is_announced_whole() -> None:
    events = [reported("430382/101/003/07", "路灯损坏"), reported("430382/101/003/02", "积水")]
    said = orjson.loads(message(events))
    assert said["applied"] == 2
    assert said["grids"] == ["430382/101/003/02", "430382/101/003/07"]
    assert [e["title"] for e in said["events"]] == ["路灯损坏", "积水"]


def test_a_huge_batch_fits_the_limit_and_names_its_places_a_level_up() -> None:
    events = [reported(f"430382/{t:03d}/{c:03d}/{g:02d}", "楼道堆放杂物" * 5)
              for t in range(1, 9) for c in range(1, 9) for g in range(1, 9)]
    body = message(events)
    said = orjson.loads(body)
    assert len(body) < LIMIT
    assert said["applied"] == len(events)
    assert len(said["events"]) < NEWEST
    # every grid is still covered by a place named in the announcement
    assert all(any(e.grid == p or (e.grid or "").startswith(p + "/") for p in said["grids"])
               for e in events)


def test_a_batch_of_more_counties_than_fit_tells_every_scope_something_moved() -> None:
    events = [reported(f"{county}/101/001/01", "积水") for county in range(100000, 101500)]
    body = message(events)
    said = orjson.loads(body)
    assert len(body) < LIMIT
    assert said["grids"] == [SOMEWHERE]
    watching = Principal(sub="s-1", role=Role.supervisor, scope=("100007/101",))
    assert in_view(said, watching) is not None
