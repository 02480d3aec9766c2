"""(event_type, schema_version) -> payload model; the one place bytes become events.

Events decode at their type's current version (events/upcasting.py), so every reader sees one
shape; `as_written=True` keeps the version the producer wrote, for ingest and the archive.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Union

import orjson
from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from events import audit, dispute, incident, patrol, points
from events.envelope import Event, Payload, Role
from events.upcasting import upcast

PAYLOADS: tuple[type[Payload], ...] = tuple(
    value
    for module in (patrol, incident, dispute, points, audit)  # one module per family
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, Payload) and "event_type" in vars(value)
)
CATALOG: dict[tuple[str, int], type[Payload]] = {
    (p.event_type, p.schema_version): p for p in PAYLOADS
}


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return f"{value.get('event_type')}@{value.get('schema_version')}"
    if isinstance(value, Event):
        return f"{value.event_type}@{value.schema_version}"
    return None


def _tagged(payload: type[Payload]) -> Any:
    return Annotated[Event[payload], Tag(f"{payload.event_type}@{payload.schema_version}")]  # type: ignore[valid-type]


AnyEvent: Any = Annotated[
    Union[tuple(_tagged(p) for p in PAYLOADS)],  # noqa: UP007 - built from the catalog
    Discriminator(
        _tag,
        custom_error_type="unknown_event_type",
        custom_error_message="unknown event_type and schema_version",
    ),
]
_adapter: TypeAdapter[Event[Any]] = TypeAdapter(AnyEvent)
#: each type and version alone, for bytes that name theirs where the log's encoding puts it
_ONE_TYPE: dict[tuple[bytes, bytes], TypeAdapter[Event[Any]]] = {
    (p.event_type.encode(), str(p.schema_version).encode()): TypeAdapter(Event[p])  # type: ignore[valid-type]
    for p in PAYLOADS
}
#: keys sorted and no spaces (`codec.canonical`): the type among the first keys, the version last
_NAMED = re.compile(rb'"event_type":"([a-z0-9_.]{1,64})".*"schema_version":(\d{1,4})}\Z', re.S)


class InvalidEvent(ValueError):
    """Bytes or fields that are not a valid event; carries per-field reasons."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.errors = errors


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"]]
        if loc and "@" in loc[0]:
            loc = loc[1:]  # the union tag: an internal name, not a field of the body
        if err["type"] == "unknown_event_type":
            loc = ["event_type"]
        errors.append({"field": ".".join(loc) or "body", "reason": err["msg"]})
    return errors


def _nul_characters(value: Any, path: str = "") -> list[dict[str, str]]:
    """Fields holding a NUL character, which no PostgreSQL text column can store."""
    if isinstance(value, str):
        return [{"field": path or "body", "reason": "contains a NUL character"}] \
            if "\x00" in value else []
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _nul_characters(v, f"{path}.{k}"
                                                                      if path else str(k))]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _nul_characters(v, f"{path}.{i}")]
    return []


def _may_hold_nul(data: dict[str, Any]) -> bool:
    """JSON spells a NUL character one way only: most events need no walk through their
    fields (a fifteenth of ingest's time went to that walk)."""
    try:
        return b"\\u0000" in orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return True


def _validated_json(data: bytes) -> Event[Any]:
    """The union's discriminator is a function, so the union turns the JSON into Python objects
    to call it: validating the bytes against the one type they name costs about a quarter
    less (every projector decodes every record). Bytes that name no type there, or that the type
    refuses, or whose validated type is not the one named, get the union's own answer."""
    named = _NAMED.search(data)
    tag = (named[1], named[2]) if named else (b"", b"")
    if (one := _ONE_TYPE.get(tag)) is not None:
        try:
            event = one.validate_json(data)
        except ValidationError:
            return _adapter.validate_json(data)  # the union's own reasons
        if (event.event_type.encode(), str(event.schema_version).encode()) == tag:
            return event
    return _adapter.validate_json(data)


def event_from_json(data: bytes, *, as_written: bool = False) -> Event[Any]:
    """The event these bytes hold, validated at the version they name, then upcast."""
    try:
        event = _validated_json(data)
    except ValidationError as exc:
        raise InvalidEvent(_field_errors(exc)) from None
    if b"\\u0000" in data and (nul := _nul_characters(event.model_dump())):
        raise InvalidEvent(nul)
    return event if as_written else upcast(event)


def event_from_dict(data: dict[str, Any], *, as_written: bool = False) -> Event[Any]:
    """The event these fields describe, validated at the version they name, then upcast."""
    try:
        event = _adapter.validate_python(data)
    except ValidationError as exc:
        raise InvalidEvent(_field_errors(exc)) from None
    if _may_hold_nul(data) and (nul := _nul_characters(event.model_dump())):
        raise InvalidEvent(nul)
    return event if as_written else upcast(event)


def example_event(payload: type[Payload]) -> dict[str, Any]:
    """A complete, valid event of this type, for schemas and docs."""
    return {
        "event_id": "0b5c2a5e-6a0e-4f8b-9a53-5f8f1b2c9d01",
        "event_type": payload.event_type,
        "schema_version": payload.schema_version,
        "occurred_at": "2026-11-20T09:12:00+08:00",
        "recorded_at": "2026-11-20T09:12:03+08:00",
        "actor": {"id": "w-0001", "role": min(payload.emitted_by, default=Role.worker)},
        "grid": "430382/101/003/07",
        "aggregate_id": "inc-430382-0001",
        "aggregate_seq": 0,
        "correlation_id": None,
        "causation_id": None,
        "payload": payload.example,
    }


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every event type and version, each with a complete example."""
    schemas = {}
    for (event_type, version), payload in CATALOG.items():
        schema = TypeAdapter(Event[payload]).json_schema()  # type: ignore[valid-type]
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"{event_type} v{version}"
        schema["properties"]["event_type"] = {"const": event_type}
        schema["properties"]["schema_version"] = {"const": version}
        schema["examples"] = [example_event(payload)]
        schemas[f"{event_type}.v{version}"] = schema
    return schemas
