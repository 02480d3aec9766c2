"""An event's whole path: HTTP -> Kafka -> archive projector -> PostgreSQL -> query API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from events.envelope import Role
from tests.stack import RunningStack, an_incident, wait_until

# Tansu 0.6 answers ApiVersions v3 with tagged fields that Debian's librdkafka 2.0.2 cannot
# parse; without the ApiVersions request kcat speaks the old protocol, which Tansu serves.
KCAT_FOR_TANSU = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]


def test_a_published_incident_is_readable_through_the_query_api_with_chinese_intact(
    stack: RunningStack, grid: str, worker: str
) -> None:
    event = an_incident(grid)
    answer = stack.ingest(worker).post("/v1/events", json=event)
    assert answer.status_code == 201, answer.text
    receipt = answer.json()
    assert receipt["event_id"] == event["event_id"]
    assert receipt["topic"] == "gridgov.incidents"

    reader = stack.query(stack.token(Role.supervisor, grid.split("/")[0]))
    found = wait_until(
        lambda: (r := reader.get(f"/v1/events/{event['event_id']}")).status_code == 200 and r,
        what="the event in the archive",
    )
    archived = found.json()
    assert archived["event"]["payload"] == {**event["payload"], "photos": [],
                                            "patrol_id": None,
                                            "location": {**event["payload"]["location"],
                                                         "lat": None, "lon": None}}
    assert archived["event"]["actor"]["role"] == "worker"
    assert archived["archive"]["partition"] == receipt["partition"]
    assert archived["archive"]["offset"] == receipt["offset"]
    assert len(archived["archive"]["hash"]) == 64

    page = reader.get(f"/v1/places/{grid}/events").json()
    assert [item["event"]["event_id"] for item in page["items"]] == [event["event_id"]]


def test_the_record_on_the_topic_is_read_by_kcat_and_matches_the_exported_schema(
    stack: RunningStack, grid: str, worker: str, tmp_path: Path
) -> None:
    event = an_incident(grid)
    receipt = stack.ingest(worker).post("/v1/events", json=event).json()

    out = subprocess.run(
        ["kcat", "-b", stack.info["kafka_bootstrap"], *KCAT_FOR_TANSU, "-C",
         "-t", receipt["topic"], "-p", str(receipt["partition"]), "-o", str(receipt["offset"]),
         "-c", "1", "-f", "%k\\n%s"],
        capture_output=True, timeout=30, check=True,
    ).stdout.decode("utf-8")
    key, value = out.split("\n", 1)
    record = json.loads(value)
    assert key == event["aggregate_id"]
    assert record["event_id"] == event["event_id"]
    assert record["payload"]["description"] == event["payload"]["description"]

    subprocess.run([sys.executable, "-m", "services.cli", "schema", "export", str(tmp_path)],
                   check=True, capture_output=True, env=stack.env)
    schema = json.loads((tmp_path / "incident.reported.v1.json").read_text(encoding="utf-8"))
    jsonschema.validate(record, schema)
    jsonschema.validate(schema["examples"][0], schema)


def test_a_batch_from_a_phone_answers_per_item_and_archives_the_good_ones(
    stack: RunningStack, grid: str, worker: str
) -> None:
    good = [an_incident(grid) for _ in range(3)]
    bad = an_incident(grid, payload={"category": "ufo"})
    answer = stack.ingest(worker).post("/v1/events/batch", json={"events": [*good, bad]})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["accepted"], body["refused"]) == (3, 1)
    assert [r["status"] for r in body["results"]] == [201, 201, 201, 422]
    assert body["results"][3]["errors"][0]["field"].startswith("payload")
    wait_until(lambda: stack.archived_under(grid.rsplit("/", 1)[0]) == 3,
               what="three archived events")
