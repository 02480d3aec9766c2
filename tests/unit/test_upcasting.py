"""Schema evolution: v1 reports stay in the log as written and read as the v2 of the same facts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.catalog import CATALOG, event_from_dict, event_from_json, example_event, json_schemas
from events.codec import GENESIS, canonical, chain_hash
from events.envelope import Event, Role
from events.incident import IncidentReported, IncidentReportedV2
from events.log import Record
from events.upcasting import UPCASTERS, upcast
from projections import five_have, resolution_rates
from projections.archive import Archive, chain
from projections.matters import FiveHave
from projections.points_ledger import PointsLedger
from projections.runner import decode
from projections.sla import load
from services.admission import admit
from services.auth import Principal
from tests.lifecycles import lifecycle

#: any text an app may send: every character but NUL, which ingest refuses (no PostgreSQL
#: text column can hold it), and lone surrogates, which no UTF-8 JSON can carry
TEXT = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))

RULES = load()
GRID = "430382/101/003/07"
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
V1, V2 = CATALOG[("incident.reported", 1)], CATALOG[("incident.reported", 2)]

coordinate = st.none() | st.floats(-90, 90)
v1_locations = st.fixed_dictionaries(
    {"description": st.text(TEXT, min_size=1, max_size=500)},
    optional={"lat": coordinate, "lon": coordinate.map(lambda x: x and x * 2)},
)


def v1_report(location: dict[str, Any], **payload: Any) -> dict[str, Any]:
    """An old app's report: its place is one line of text."""
    event = example_event(V1)
    event["payload"] = {**event["payload"], "location": location, **payload}
    return event


def as_a_v2_app_sends(v1: dict[str, Any]) -> dict[str, Any]:
    """The same facts from the new app: the line of text is the address, nothing more known."""
    where = v1["payload"]["location"]
    site = {"address": where["description"],
            **{k: where[k] for k in ("lat", "lon") if where.get(k) is not None}}
    return {**v1, "schema_version": 2, "payload": {**v1["payload"], "location": site}}


def v2_of(report: Event[Any]) -> bytes:
    """The bytes a v2 app would have published for this v1 report, built without the upcaster."""
    return canonical(as_a_v2_app_sends(orjson.loads(canonical(report))))


@given(v1_locations, st.lists(st.text(TEXT, max_size=300), max_size=20),
       st.none() | st.text(TEXT, max_size=64))
def test_a_v1_report_reads_as_the_v2_a_new_app_would_have_sent_for_the_same_facts(
    location: dict[str, Any], photos: list[str], patrol_id: str | None
) -> None:
    old = v1_report(location, photos=photos, patrol_id=patrol_id)
    wire = canonical(event_from_dict(old, as_written=True))

    read = event_from_json(wire)

    assert read == event_from_dict(as_a_v2_app_sends(old))
    assert isinstance(read.payload, IncidentReportedV2)
    envelope = {"schema_version", "payload"}
    assert read.model_dump(exclude=envelope) == \
        event_from_json(wire, as_written=True).model_dump(exclude=envelope)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.booleans(), min_size=1, max_size=6))
def test_a_log_of_v1_and_v2_reports_folds_like_an_all_v2_log_of_the_same_facts(
    seed: int, written_as_v1: list[bool]
) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    lifecycles = [lifecycle(RULES, GRID, rng, start + timedelta(hours=n))
                  for n in range(len(written_as_v1))]
    mixed: dict[str, list[bytes]] = {}
    all_v2: dict[str, list[bytes]] = {}
    for events, v1 in zip(lifecycles, written_as_v1, strict=True):
        report, *steps = events
        rest = [canonical(e) for e in steps]
        mixed[report.aggregate_id] = [canonical(report) if v1 else v2_of(report), *rest]
        all_v2[report.aggregate_id] = [v2_of(report), *rest]
    assert any(b'"schema_version":1' in log[0] for log in mixed.values()) == any(written_as_v1)

    for incident_id in mixed:
        replayed = [event_from_json(b) for b in reversed(mixed[incident_id])]  # arrival order
        reference = [event_from_json(b) for b in all_v2[incident_id]]
        chain_of = five_have.fold(incident_id, replayed)
        assert chain_of == five_have.fold(incident_id, reference)
        assert five_have.row(chain_of)[5] == "closed"
        assert resolution_rates.facts(incident_id, replayed) == \
            resolution_rates.facts(incident_id, reference)


def test_a_v1_report_built_in_memory_evolves_like_its_v2() -> None:
    events = lifecycle(RULES, GRID, random.Random(7), NOW)
    report, *steps = events
    assert isinstance(report.payload, IncidentReported)
    with_v2 = [event_from_json(v2_of(report)), *steps]
    assert five_have.fold(report.aggregate_id, events) == \
        five_have.fold(report.aggregate_id, with_v2)


@pytest.mark.parametrize("payload", [V1, V2], ids=["v1", "v2"])
def test_the_catalog_round_trips_each_version_byte_for_byte_as_written(payload: type) -> None:
    wire = canonical(event_from_dict(example_event(payload), as_written=True))
    assert orjson.loads(wire)["schema_version"] == payload.schema_version
    assert canonical(event_from_json(wire, as_written=True)) == wire
    assert event_from_json(wire).schema_version == 2  # what every reader sees


def test_decoding_a_v1_event_never_rewrites_it_and_the_archive_keeps_its_bytes() -> None:
    wire = canonical(event_from_dict(example_event(V1), as_written=True))
    kept = bytes(wire)
    read = event_from_json(wire)
    assert read.schema_version == 2 and wire == kept

    record = Record("gridgov.incidents", 0, 0, b"inc-430382-0001", wire)
    (delivery,), _ = decode([record])
    assert delivery.event.schema_version == 2  # what the runner hands every reducer
    (as_read,), _, _ = chain({}, [delivery], {})
    assert as_read.body != wire  # what the archive would keep if it took the upcast event
    (written,), _ = decode([record], as_written=Archive.as_written)
    (archived,), _, _ = chain({}, [written], {})
    assert archived.body == wire
    assert archived.hash == chain_hash(GENESIS, wire)
    assert written.event.schema_version == 1  # the archive row's version is the one written


def test_only_the_archive_reads_events_as_written() -> None:
    assert Archive.as_written
    assert not FiveHave.as_written and not PointsLedger.as_written


@pytest.mark.parametrize("payload", [V1, V2], ids=["v1", "v2"])
def test_ingest_admits_both_versions_and_appends_each_as_written(payload: type) -> None:
    body = example_event(payload)
    del body["actor"], body["recorded_at"]
    caller = Principal(sub="w-0001", role=Role.worker, scope=(GRID,))
    event = admit(body, caller, now=NOW)
    assert event.schema_version == payload.schema_version
    assert type(event.payload) is payload


def test_the_schema_export_carries_both_versions_each_with_its_example() -> None:
    schemas = json_schemas()
    v1, v2 = schemas["incident.reported.v1"], schemas["incident.reported.v2"]
    jsonschema.validate(v1["examples"][0], v1)
    jsonschema.validate(v2["examples"][0], v2)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(v1["examples"][0], v2)  # two contracts, not one loosened


def test_every_older_version_has_an_upcaster_to_the_next_one() -> None:
    for (event_type, version), payload in CATALOG.items():
        if (event_type, version + 1) in CATALOG:
            step = UPCASTERS[payload]
            newer = step(payload.model_validate(payload.example))
            assert (newer.event_type, newer.schema_version) == (event_type, version + 1)
        else:
            assert payload not in UPCASTERS


def test_upcasting_an_event_at_its_current_version_changes_nothing() -> None:
    event = event_from_dict(example_event(V2))
    assert upcast(event) is event
