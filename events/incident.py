"""Incident events: a matter seen in a grid, and what happened to it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from events.envelope import Payload, Role


class Category(StrEnum):
    safety_hazard = "safety_hazard"  # 安全隐患
    environment = "environment"  # 人居环境
    public_order = "public_order"  # 治安
    dispute = "dispute"  # 矛盾纠纷
    facilities = "facilities"  # 设施
    epidemic_prevention = "epidemic_prevention"  # 防疫
    other = "other"  # 其他


class Location(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    description: Annotated[str, Field(min_length=1, max_length=500)]
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None


class IncidentReported(
    Payload,
    type="incident.reported",
    emitted_by=frozenset({Role.worker, Role.grid_chief, Role.police, Role.mediator}),
):
    """有人报告: someone reported a matter in the grid, possibly found on a patrol."""

    category: Category
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(min_length=1, max_length=4000)]
    location: Location
    photos: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=20)] = []
    patrol_id: Annotated[str, Field(max_length=64)] | None = None


IncidentReported.example = {
    "category": "safety_hazard",
    "title": "楼道堆放杂物",
    "description": "3 号楼二单元楼道堆放纸箱和电动车，阻塞消防通道。",
    "location": {"description": "银田寺社区 3 号楼二单元", "lat": 27.93, "lon": 112.52},
    "photos": [],
    "patrol_id": "patrol-0001",
}
