"""The envelope every event carries, whatever its type (DESIGN.md, "The event envelope")."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, TypeVar
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


class Role(StrEnum):
    worker = "worker"  # 网格员
    grid_chief = "grid_chief"  # 网格长
    police = "police"  # 社区民警
    mediator = "mediator"  # 人民调解员
    supervisor = "supervisor"  # 综治中心 / 督查
    auditor = "auditor"  # 纪检 / 审计
    admin = "admin"
    resident = "resident"  # 住户: a household's own account in the points scheme (积分制)
    system = "system"  # the platform itself (SLA timers); never carried by a token


_SEGMENT = re.compile(r"^[0-9A-Za-z_-]{1,16}$")


#: the same rules as regular expressions, for the APIs' OpenAPI documents
PLACE_PATTERN = r"^\d{6}(/[0-9A-Za-z_-]{1,16}){0,4}$"
GRID_PATTERN = r"^\d{6}(/[0-9A-Za-z_-]{1,16}){3,4}$"
_PLACE = re.compile(r"\d{6}(/[0-9A-Za-z_-]{1,16}){0,4}", re.ASCII)


def place_path(value: str) -> str:
    """county/town/community/grid[/building]: a 6-digit county code, then short codes."""
    if _PLACE.fullmatch(value):  # every event carries one: the common case in one match
        return value
    segments = value.split("/")
    if len(segments) > 5 or not all(_SEGMENT.match(s) for s in segments):
        raise ValueError("a place is 1-5 '/'-separated codes of letters, digits, '-' or '_'")
    if not re.fullmatch(r"\d{6}", segments[0]):
        raise ValueError("a place starts with a 6-digit county code, e.g. 430382")
    return value


def grid_path(value: str) -> str:
    """An event happens in a grid (4 codes) or a building/courtyard inside one (5)."""
    if len(place_path(value).split("/")) < 4:
        raise ValueError("an event's place is a grid: county/town/community/grid")
    return value


Place = Annotated[str, AfterValidator(place_path)]
Grid = Annotated[str, AfterValidator(grid_path)]


def covers(scope: str, place: str) -> bool:
    """A scope prefix covers a place at or below it, segment by segment ('*' covers all)."""
    return scope == "*" or place == scope or place.startswith(scope + "/")


class Actor(BaseModel):
    """Who emitted the event; taken from the bearer token, never from the body."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:@-]+$")
    role: Role


class Payload(BaseModel):
    """Base of every event payload; subclasses declare their type, version and emitters."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)
    event_type: ClassVar[str]
    schema_version: ClassVar[int]
    emitted_by: ClassVar[frozenset[Role]]  # who may publish it directly as a fact
    decided: ClassVar[bool]  # emitted only by a decider, as the outcome of a command
    example: ClassVar[dict[str, object]]

    def __init_subclass__(
        cls,
        *,
        type: str | None = None,  # noqa: A002 - reads like the catalog entry it is
        version: int = 1,
        emitted_by: frozenset[Role] = frozenset(),
        decided: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type is not None:
            cls.event_type = type
            cls.schema_version = version
            cls.emitted_by = emitted_by
            cls.decided = decided


P = TypeVar("P", bound=Payload)


class Event(BaseModel, Generic[P]):
    """An immutable fact: the envelope plus a payload typed by (event_type, schema_version)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    event_id: UUID
    event_type: str
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    actor: Actor
    grid: Grid
    aggregate_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$")
    aggregate_seq: int = Field(ge=0, le=2_147_483_647)
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    payload: P


#: Fields the server owns: a body that carries them is refused, they come from token and clock.
SERVER_OWNED = ("actor", "recorded_at")

