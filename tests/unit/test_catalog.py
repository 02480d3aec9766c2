"""The contract: every event type has a schema, an example that satisfies it, and clear errors."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.catalog import CATALOG, InvalidEvent, event_from_dict, event_from_json, example_event
from events.codec import canonical
from events.topics import INCIDENTS, PATROLS, topic_for

SCHEMAS = __import__("events.catalog", fromlist=["json_schemas"]).json_schemas()


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_schema_carries_a_complete_example_that_it_accepts(name: str) -> None:
    schema = SCHEMAS[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    (example,) = schema["examples"]
    jsonschema.validate(example, schema)
    assert event_from_dict(example).event_type == example["event_type"]


@pytest.mark.parametrize("payload", list(CATALOG.values()), ids=lambda p: p.event_type)
def test_an_event_survives_the_canonical_round_trip_byte_for_byte(payload: type) -> None:
    event = event_from_dict(example_event(payload))
    wire = canonical(event)
    assert canonical(event_from_json(wire)) == wire
    assert list(orjson.loads(wire)) == sorted(orjson.loads(wire))  # keys sorted


def _outcome(decode: Any, data: Any) -> Any:
    try:
        return decode(data)
    except InvalidEvent:
        return "refused"


@given(st.sampled_from(sorted(CATALOG)), st.sampled_from(sorted(CATALOG)),
       st.sampled_from(["as written", "named as the other", "the other's type",
                        "the other's version", "the other's type again, second", "spaced"]))
def test_bytes_decode_as_their_fields_do_whichever_type_they_name(
        written: tuple[str, int], other: tuple[str, int], change: str) -> None:
    """Bytes are validated against the one type they name, where the log's encoding puts it:
    named another type, or twice, or spelled otherwise, they still decode (or are refused)
    exactly as the same fields do."""
    fields = orjson.loads(canonical(event_from_dict(example_event(CATALOG[written]),
                                                    as_written=True)))
    if change == "named as the other":
        fields |= {"event_type": other[0], "schema_version": other[1]}
    elif change == "the other's type":
        fields["event_type"] = other[0]
    elif change == "the other's version":
        fields["schema_version"] = other[1]
    data = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    if change == "the other's type again, second":
        named = b'"event_type":"%s"' % written[0].encode()
        data = data.replace(named, named + b',"event_type":"%s"' % other[0].encode())
    elif change == "spaced":
        data = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    as_fields = orjson.loads(data)  # the last of two keys wins, as in the bytes
    assert _outcome(event_from_json, data) == _outcome(event_from_dict, as_fields)


def test_chinese_text_is_utf8_on_the_wire_not_escaped() -> None:
    wire = canonical(event_from_dict(example_event(CATALOG[("incident.reported", 1)])))
    assert "楼道堆放杂物".encode() in wire


def test_an_unknown_event_type_is_named_as_such() -> None:
    with pytest.raises(InvalidEvent) as refused:
        event_from_dict({**example_event(CATALOG[("patrol.logged", 1)]), "event_type": "x.y"})
    assert refused.value.errors[0]["field"] == "event_type"


def test_a_patrol_that_ends_before_it_starts_is_invalid() -> None:
    example = example_event(CATALOG[("patrol.logged", 1)])
    example["payload"] = {**example["payload"], "ended_at": "2026-11-20T07:00:00+08:00"}
    with pytest.raises(InvalidEvent, match="ended_at is before started_at"):
        event_from_dict(example)


def test_events_go_to_their_familys_topic() -> None:
    assert topic_for("incident.reported") is INCIDENTS
    assert topic_for("dispute.reported") is INCIDENTS
    assert topic_for("patrol.logged") is PATROLS
    with pytest.raises(KeyError):
        topic_for("weather.changed")
