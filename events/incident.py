"""Incident events: a matter seen in a grid, and every step of its five-have chain.

Facts (a report) are published by apps; decisions (assign, accept, resolve, verify, ...) are
emitted only by the incident decider as the outcome of a command (`decided=True`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.envelope import Payload, Role

Text = Annotated[str, Field(min_length=1, max_length=2000)]
PersonId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:@-]+$")]
REPORTERS = frozenset({Role.worker, Role.grid_chief, Role.police, Role.mediator})


class Category(StrEnum):
    safety_hazard = "safety_hazard"  # 安全隐患
    environment = "environment"  # 人居环境
    public_order = "public_order"  # 治安
    dispute = "dispute"  # 矛盾纠纷
    facilities = "facilities"  # 设施
    epidemic_prevention = "epidemic_prevention"  # 防疫
    other = "other"  # 其他


class Level(StrEnum):
    """The escalation ladder: 小事不出网格、大事不出警格 / 小事不出村、大事不出镇."""

    grid = "grid"
    community = "community"
    town = "town"
    county = "county"


class Location(BaseModel):
    """Where, as v1 reports and disputes say it: one line of free text, maybe a GPS fix."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    description: Annotated[str, Field(min_length=1, max_length=500)]
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None


Label = Annotated[str, Field(min_length=1, max_length=100)]


class Site(BaseModel):
    """Where, as v2 reports say it: the address as said, and the parts of it the app knows.

    Villages are addressed by 组 and 院落, towns by 小区 and 楼栋; the free text stays the
    source of truth, the parts are there to group and search by.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    address: Annotated[str, Field(min_length=1, max_length=500)]
    group: Label | None = None  # 村民小组 / 小区: e.g. "3 组", "银田寺小区"
    building: Label | None = None  # 楼栋 / 院落: e.g. "3 号楼二单元", "王家院子"
    landmark: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # 参照物
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None


class Person(BaseModel):
    """Someone a step names: an assignee, a new owner."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: PersonId
    role: Role


class IncidentReported(Payload, type="incident.reported", emitted_by=REPORTERS):
    """有人报告, v1: a matter reported with its place as one line of text.

    Still admitted from older apps and kept in the log as written; readers see it as
    `IncidentReportedV2` (events/upcasting.py).
    """

    category: Category
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(min_length=1, max_length=4000)]
    location: Location
    photos: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=20)] = []
    patrol_id: Annotated[str, Field(max_length=64)] | None = None


class IncidentReportedV2(Payload, type="incident.reported", version=2, emitted_by=REPORTERS):
    """有人报告: someone reported a matter in the grid, possibly found on a patrol."""

    category: Category
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(min_length=1, max_length=4000)]
    location: Site
    photos: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=20)] = []
    patrol_id: Annotated[str, Field(max_length=64)] | None = None


def reported_v2(v1: IncidentReported) -> IncidentReportedV2:
    """A v1 report as a v2 app would have sent the same facts.

    The free text becomes the address and nothing is parsed out of it: guessing a building
    from "3 号楼二单元" would put words in the reporter's mouth.
    """
    where = v1.location
    return IncidentReportedV2(
        category=v1.category, title=v1.title, description=v1.description,
        location=Site(address=where.description, lat=where.lat, lon=where.lon),
        photos=v1.photos, patrol_id=v1.patrol_id,
    )


class IncidentRejected(Payload, type="incident.rejected", decided=True):
    """Refused at intake: a duplicate of another incident, invalid, or not our matter."""

    reason: Literal["duplicate", "invalid", "not_ours"]
    duplicate_of: Annotated[str, Field(max_length=64)] | None = None
    note: Text | None = None


class IncidentAssigned(Payload, type="incident.assigned", decided=True):
    """Dispatched to someone, with the deadline the SLA (or an approver) set."""

    assignee: Person
    deadline: AwareDatetime
    level: Level


class IncidentAccepted(Payload, type="incident.accepted", decided=True):
    """有人负责: the owner took the matter on; the deadline is the one now running."""

    deadline: AwareDatetime


class IncidentTransferred(Payload, type="incident.transferred", decided=True):
    assignee: Person
    reason: Text


class IncidentReturned(Payload, type="incident.returned", decided=True):
    """回退: dispatched to the wrong owner; back to intake, not counted against the owner."""

    reason: Text


class IncidentEscalated(Payload, type="incident.escalated", decided=True):
    from_level: Level
    to_level: Level
    reason: Text


class IncidentExtended(Payload, type="incident.extended", decided=True):
    """延期: an approved new deadline."""

    deadline: AwareDatetime
    reason: Text


class IncidentSuspended(Payload, type="incident.suspended", decided=True):
    """挂账: an approved pause (seasonal works, waiting on a third party); the SLA clock stops."""

    reason: Text


class IncidentResumed(Payload, type="incident.resumed", decided=True):
    pass


class IncidentResolved(Payload, type="incident.resolved", decided=True):
    """有人解决: the owner dealt with it."""

    measures: Text
    outcome: Text


class IncidentVerified(Payload, type="incident.verified", decided=True):
    """有人督查: someone other than the resolver checked the resolution."""

    verdict: Literal["accepted", "rejected"]
    satisfaction: Annotated[int, Field(ge=1, le=5)] | None = None
    note: Text | None = None


class IncidentReworkRequested(Payload, type="incident.rework_requested", decided=True):
    """返工: verification failed; back to the owner, and counted."""

    reason: Text


class IncidentClosed(Payload, type="incident.closed", decided=True):
    pass


class IncidentReopened(Payload, type="incident.reopened", decided=True):
    """Back to its owner after a close, with a fresh deadline: the old one is history."""

    reason: Text
    deadline: AwareDatetime | None = None


class IncidentOverdue(Payload, type="incident.overdue", emitted_by=frozenset({Role.system}),
                      decided=True):
    """Emitted by the platform once per deadline that passed with the matter still open."""

    deadline: AwareDatetime


IncidentReported.example = {
    "category": "safety_hazard",
    "title": "楼道堆放杂物",
    "description": "3 号楼二单元楼道堆放纸箱和电动车，阻塞消防通道。",
    "location": {"description": "银田寺社区 3 号楼二单元", "lat": 27.93, "lon": 112.52},
    "photos": [],
    "patrol_id": "patrol-0001",
}
IncidentReportedV2.example = {
    "category": "safety_hazard",
    "title": "楼道堆放杂物",
    "description": "3 号楼二单元楼道堆放纸箱和电动车，阻塞消防通道。",
    "location": {"address": "银田寺社区 3 号楼二单元", "group": "银田寺小区",
                 "building": "3 号楼二单元", "landmark": "小区北门东侧",
                 "lat": 27.93, "lon": 112.52},
    "photos": [],
    "patrol_id": "patrol-0001",
}
_PERSON = {"id": "w-0001", "role": "worker"}
_DEADLINE = "2026-11-23T09:12:00+08:00"
IncidentRejected.example = {"reason": "duplicate", "duplicate_of": "inc-430382-0000"}
IncidentAssigned.example = {"assignee": _PERSON, "deadline": _DEADLINE, "level": "grid"}
IncidentAccepted.example = {"deadline": _DEADLINE}
IncidentTransferred.example = {"assignee": {"id": "p-0007", "role": "police"},
                               "reason": "涉及治安，转片警处理"}
IncidentReturned.example = {"reason": "不属于本网格，退回重新派遣"}
IncidentEscalated.example = {"from_level": "grid", "to_level": "community",
                             "reason": "超期未办结，自动上报"}
IncidentExtended.example = {"deadline": "2026-11-30T09:12:00+08:00", "reason": "需协调施工单位"}
IncidentSuspended.example = {"reason": "冬季停工，来年开春处理"}
IncidentResumed.example = {}
IncidentResolved.example = {"measures": "联系物业清理楼道杂物", "outcome": "消防通道已畅通"}
IncidentVerified.example = {"verdict": "accepted", "satisfaction": 5}
IncidentReworkRequested.example = {"reason": "现场仍有杂物"}
IncidentClosed.example = {}
IncidentReopened.example = {"reason": "住户反映问题复发", "deadline": _DEADLINE}
IncidentOverdue.example = {"deadline": _DEADLINE}
