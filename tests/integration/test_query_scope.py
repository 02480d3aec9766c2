"""Reads stay inside the caller's scope; pages continue where they stopped."""

from __future__ import annotations

from events.envelope import Role
from tests.stack import RunningStack, a_place, an_incident, wait_until


def test_an_event_of_another_grid_is_not_found_by_id(stack: RunningStack, grid: str,
                                                     worker: str) -> None:
    event = an_incident(grid)
    stack.ingest(worker).post("/v1/events", json=event)
    wait_until(lambda: stack.sql("select 1 from archive where event_id = %s", event["event_id"]),
               what="the event archived")
    neighbour = stack.query(stack.token(Role.grid_chief, a_place()))
    answer = neighbour.get(f"/v1/events/{event['event_id']}")
    assert answer.status_code == 404
    assert stack.query(worker).get(f"/v1/events/{event['event_id']}").status_code == 200


def test_listing_a_place_outside_the_scope_is_forbidden(stack: RunningStack, worker: str
                                                        ) -> None:
    answer = stack.query(worker).get(f"/v1/places/{a_place()}/events")
    assert answer.status_code == 403
    assert answer.json()["errors"][0]["field"] == "place"


def test_a_place_listing_pages_through_every_event_once(stack: RunningStack, grid: str,
                                                        worker: str) -> None:
    events = [an_incident(grid) for _ in range(7)]
    stack.ingest(worker).post("/v1/events/batch", json={"events": events})
    community = grid.rsplit("/", 1)[0]
    wait_until(lambda: stack.archived_under(community) == 7, what="seven archived")
    reader = stack.query(stack.token(Role.supervisor, community))
    seen, after = [], 0
    while True:
        page = reader.get(f"/v1/places/{community}/events", params={"limit": 3, "after": after})
        assert page.status_code == 200
        seen += [item["event"]["event_id"] for item in page.json()["items"]]
        if page.json()["next"] is None:
            break
        after = page.json()["next"]
    assert sorted(seen) == sorted(e["event_id"] for e in events)


def test_bad_query_parameters_are_named(stack: RunningStack, grid: str, worker: str) -> None:
    reader = stack.query(worker)
    assert reader.get("/v1/events/not-a-uuid").json()["errors"][0]["field"] == "event_id"
    answer = reader.get(f"/v1/places/{grid}/events", params={"limit": 10_000})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "limit"
    assert reader.get("/v1/places/nowhere/events").status_code == 422
