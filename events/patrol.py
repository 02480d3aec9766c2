"""Patrol events: 有人巡查, a grid worker walked the grid and logged what was found."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from events.envelope import Payload, Role

Text = Annotated[str, Field(min_length=1, max_length=2000)]


class Checkpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    at: AwareDatetime
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None


class Finding(BaseModel):
    """Something seen on the patrol; names the incident it was reported as, if any."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    note: Text
    incident_id: Annotated[str, Field(max_length=64)] | None = None


class PatrolLogged(
    Payload,
    type="patrol.logged",
    emitted_by=frozenset({Role.worker, Role.grid_chief, Role.police}),
):
    """治安巡逻日志: one patrol of a grid, its route and what it found."""

    started_at: AwareDatetime
    ended_at: AwareDatetime
    route: Annotated[list[Checkpoint], Field(max_length=200)] = []
    findings: Annotated[list[Finding], Field(max_length=100)] = []

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> PatrolLogged:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


PatrolLogged.example = {
    "started_at": "2026-11-20T08:00:00+08:00",
    "ended_at": "2026-11-20T09:10:00+08:00",
    "route": [{"name": "银田寺社区 3 号院", "at": "2026-11-20T08:20:00+08:00"}],
    "findings": [{"note": "楼道堆放杂物，存在消防隐患"}],
}
