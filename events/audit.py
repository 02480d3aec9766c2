"""Audit events: what auditors and administrators did to the platform itself, in the log."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from events.envelope import Payload, Role
from events.incident import Text

#: the place of the platform's own events: no county has the code 000000, so only a '*'
#: (or '000000') scope covers it
PLATFORM = "000000/000/000/00"


class ProjectionPromoted(Payload, type="audit.projection_promoted",
                         emitted_by=frozenset({Role.admin, Role.auditor}), decided=True):
    """A rebuilt read model swapped in for the live one although they differed, and why.

    A rebuild identical to the live model is promoted without an event: nothing changed. A
    definition changed on purpose is recorded here with the differences it made.
    """

    projection: Annotated[str, Field(max_length=64)]
    reason: Text
    differences: dict[str, tuple[int, int]]  # table -> (rows only live, rows only rebuilt)
    watermark: dict[str, int]  # "topic:partition" -> next offset both models had applied


ProjectionPromoted.example = {
    "projection": "five_have", "reason": "满意率口径调整：4 分及以上计为满意",
    "differences": {"rate_facts": [12, 15]}, "watermark": {"gridgov.incidents:0": 1207},
}
