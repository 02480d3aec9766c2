"""Who may put what into the log: shape, role, scope and clock, checked without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.catalog import CATALOG, example_event
from events.envelope import Role, covers
from services.admission import admit
from services.auth import Principal
from services.errors import Forbidden, Invalid, Malformed, ScopeViolation

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def body(event_type: str = "incident.reported") -> dict[str, object]:
    event = example_event(CATALOG[(event_type, 1)])
    del event["actor"], event["recorded_at"]
    return event


def worker(*scope: str) -> Principal:
    return Principal(sub="w-0001", role=Role.worker, scope=scope or ("430382/101/003/07",))


def test_the_server_stamps_the_actor_and_the_time() -> None:
    event = admit(body(), worker(), now=NOW)
    assert (event.actor.id, event.actor.role, event.recorded_at) == ("w-0001", Role.worker, NOW)


@pytest.mark.parametrize("owned", ["actor", "recorded_at"])
def test_fields_the_server_owns_are_refused_in_the_body(owned: str) -> None:
    with pytest.raises(Invalid) as refused:
        admit({**body(), owned: "x"}, worker(), now=NOW)
    assert refused.value.errors[0]["field"] == owned


def test_a_role_not_allowed_the_event_type_is_forbidden() -> None:
    auditor = Principal(sub="a-1", role=Role.auditor, scope=("*",))
    with pytest.raises(Forbidden):
        admit(body(), auditor, now=NOW)


def test_a_grid_outside_the_scope_is_a_scope_violation() -> None:
    with pytest.raises(ScopeViolation):
        admit(body(), worker("430382/101/003/08"), now=NOW)


def test_a_device_clock_far_ahead_is_refused_but_a_little_skew_is_not() -> None:
    ahead = {**body(), "occurred_at": (NOW + timedelta(minutes=4)).isoformat()}
    assert admit(ahead, worker(), now=NOW)
    with pytest.raises(Invalid, match="future"):
        admit({**ahead, "occurred_at": (NOW + timedelta(hours=1)).isoformat()}, worker(), now=NOW)


def test_a_body_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(Malformed):
        admit(["not", "an", "event"], worker(), now=NOW)


@pytest.mark.parametrize(("scope", "place", "covered"), [
    ("430382", "430382/101/003/07", True),
    ("430382/101", "430382/101", True),
    ("430382/10", "430382/101/003/07", False),
    ("430382/101/003/07", "430382/101/003", False),
    ("*", "610728/105/002/01", True),
])
def test_a_scope_covers_places_segment_by_segment(scope: str, place: str, covered: bool) -> None:
    assert covers(scope, place) is covered
