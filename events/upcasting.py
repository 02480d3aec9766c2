"""Upcasters: an event written at an older version, read as its type's current version.

The log and the archive keep every event as its producer wrote it; old events are never
rewritten. Readers get the current shape (the catalog upcasts what it decodes), so a reducer
names one class per event type and a log holding v1 and v2 folds as if every app had sent v2.
Each upcaster is a pure function from one version's payload to the next; `upcast` chains them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events.envelope import Event, Payload
from events.incident import IncidentReported, reported_v2

#: an older payload model -> the function reading it as the next version
UPCASTERS: dict[type[Payload], Callable[[Any], Payload]] = {
    IncidentReported: reported_v2,
}


_EVENT_CLASSES: dict[type[Payload], Any] = {}


def _event_class(payload: type[Payload]) -> Any:
    """The catalog's own `Event[payload]` class (pydantic's lookup of it is not free)."""
    if payload not in _EVENT_CLASSES:
        _EVENT_CLASSES[payload] = Event[payload]  # type: ignore[valid-type]
    return _EVENT_CLASSES[payload]


def upcast(event: Event[Any]) -> Event[Any]:
    """The event at its type's current version; the same object if it already is."""
    payload = event.payload
    while (step := UPCASTERS.get(type(payload))) is not None:
        payload = step(payload)
    if payload is event.payload:
        return event
    current: Any = _event_class(type(payload))
    # every field was validated on the way in and the upcaster built a valid payload:
    # validating the envelope again cost a rebuild a tenth of its time. The fields as they
    # are stored and the set the sender gave: model_construct then works them out no more
    # (it took twice the upcaster's own time, BENCHMARKS.md)
    upcasted: Event[Any] = current.model_construct(
        event.model_fields_set,
        **{**event.__dict__, "schema_version": payload.schema_version, "payload": payload})
    return upcasted
