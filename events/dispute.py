"""Dispute events (矛盾纠纷): incidents of kind dispute, with mediation."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.envelope import Payload
from events.incident import REPORTERS, Location, Text
from events.personal import Personal, Sealed


class DisputeKind(StrEnum):
    family = "family"  # 家庭
    neighbour = "neighbour"  # 邻里
    debt = "debt"  # 债务
    emotional = "emotional"  # 情感
    land = "land"  # 土地
    petition = "petition"  # 信访
    other = "other"


Name = Annotated[str, Field(min_length=1, max_length=50)]
Phone = Annotated[str, Field(pattern=r"^\+?[0-9 -]{5,20}$")]


class Party(BaseModel):
    """A party to the dispute: a resident, whose name and phone are personal data.

    Apps send text; on the log each value is `Sealed` under the party's own key (ingest seals
    it, events/personal.py). Text on the log is what older producers wrote: masked, not erasable.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: Annotated[Name | Sealed, Personal("name")]
    phone: Annotated[Phone | Sealed, Personal("phone")] | None = None


class DisputeReported(Payload, type="dispute.reported", emitted_by=REPORTERS):
    """有人报告: a dispute found (often by a village mediator, who earns points for it)."""

    kind: DisputeKind
    parties: Annotated[list[Party], Field(min_length=1, max_length=20)]
    summary: Annotated[str, Field(min_length=1, max_length=4000)]
    location: Location
    patrol_id: Annotated[str, Field(max_length=64)] | None = None


class MediationRecorded(Payload, type="dispute.mediation_recorded", decided=True):
    """有人解决 for a dispute: a mediation and its outcome."""

    outcome: Literal["succeeded", "failed", "continuing"]
    agreement: Text | None = None


DisputeReported.example = {
    "kind": "neighbour",
    "parties": [{"name": "张三", "phone": "13800001234"}, {"name": "李四"}],
    "summary": "两户因宅基地边界发生争执。",
    "location": {"description": "马场村 3 组"},
    "patrol_id": None,
}
MediationRecorded.example = {"outcome": "succeeded", "agreement": "双方同意以原界桩为准"}
