"""Old apps send incident.reported v1, new ones v2: both are read as v2, v1 is kept as sent."""

from __future__ import annotations

from typing import Any

import httpx

from events.envelope import Role
from tests.stack import RunningStack, an_incident, wait_until

SITE = ("address", "group", "building", "landmark", "lat", "lon")


def shape(value: Any) -> Any:
    """The keys of a JSON value, all the way down: what a client's parser depends on."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return None


def chain_shown(reader: httpx.Client, incident_id: str) -> dict[str, Any]:
    return wait_until(
        lambda: (r := reader.get(f"/v1/incidents/{incident_id}")).status_code == 200
        and r.json()["timeline"] and r.json(),
        what=f"incident {incident_id} in the five-have read model",
    )


def test_a_v1_and_a_v2_report_read_back_in_one_shape_and_v1_is_archived_as_sent(
    stack: RunningStack, grid: str, worker: str
) -> None:
    old_app = an_incident(grid)
    v1_place = old_app["payload"]["location"]
    new_app = an_incident(grid, schema_version=2, payload={
        **old_app["payload"],
        "location": {"address": "银田寺社区 3 号楼二单元", "group": "银田寺小区",
                     "building": "3 号楼二单元", "landmark": "小区北门东侧", "lat": 27.93,
                     "lon": 112.52}})
    with stack.ingest(worker) as app:
        for sent in (old_app, new_app):
            answer = app.post("/v1/events", json=sent)
            assert answer.status_code == 201, answer.text

    reader = stack.query(stack.token(Role.supervisor, grid.split("/")[0]))
    old, new = (chain_shown(reader, e["aggregate_id"]) for e in (old_app, new_app))
    for shown in (old, new):
        (report,) = shown["timeline"]
        assert (report["event_type"], report["schema_version"]) == ("incident.reported", 2)
        assert tuple(report["payload"]["location"]) == SITE
        assert (shown["stage"], shown["kind"], shown["title"]) == \
            ("reported", "incident", "楼道堆放杂物")
        assert shown["links"]["report"]["role"] == "worker"
    assert shape(old) == shape(new)
    assert old["timeline"][0]["payload"]["location"] == {
        "address": v1_place["description"], "group": None, "building": None, "landmark": None,
        "lat": None, "lon": None}
    assert new["timeline"][0]["payload"]["location"] == new_app["payload"]["location"]

    archived = wait_until(
        lambda: (r := reader.get(f"/v1/events/{old_app['event_id']}")).status_code == 200
        and r.json()["event"], what="the v1 report in the archive")
    assert archived["schema_version"] == 1
    assert archived["payload"] == {**old_app["payload"], "photos": [], "patrol_id": None,
                                   "location": {**v1_place, "lat": None, "lon": None}}
    assert {k: archived[k] for k in ("event_id", "event_type", "grid", "aggregate_id")} == \
        {k: old_app[k] for k in ("event_id", "event_type", "grid", "aggregate_id")}
    rows = wait_until(  # the two reports may sit on different partitions, archived apart
        lambda: len(found := stack.sql(
            "select event_id::text, schema_version from archive where event_id = any(%s)"
            " order by schema_version", [old_app["event_id"], new_app["event_id"]])) == 2 and found,
        what="both reports in the archive")
    assert rows == [(old_app["event_id"], 1), (new_app["event_id"], 2)]
