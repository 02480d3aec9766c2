"""Bearer tokens: signed JWTs carrying a role and a grid scope (place-path prefixes)."""

from __future__ import annotations

import time
from typing import Annotated

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from events.envelope import Place, Role, covers
from services.errors import ScopeViolation, Unauthenticated
from services.settings import Settings

ALGORITHM = "HS256"  # pinned: a token naming any other algorithm is refused


class Principal(BaseModel):
    """The caller, as the token says."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    sub: str
    role: Role
    scope: tuple[Place | str, ...]

    def covers(self, place: str) -> bool:
        return any(covers(s, place) for s in self.scope)

    def require(self, place: str, field: str = "place") -> None:
        if not self.covers(place):
            raise ScopeViolation(field, f"{place} is outside your scope")


def issue(settings: Settings, *, sub: str, role: Role, scope: list[str],
          ttl_seconds: int = 12 * 3600, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {"sub": sub, "role": role.value, "scope": scope, "iss": settings.token_issuer,
              "aud": settings.token_audience, "iat": issued, "exp": issued + ttl_seconds}
    return jwt.encode(claims, settings.token_secret, algorithm=ALGORITHM)


def verify(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, settings.token_secret, algorithms=[ALGORITHM],
            audience=settings.token_audience, issuer=settings.token_issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
        return Principal.model_validate(claims)
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("authorization", "token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated("authorization", f"invalid token: {exc}") from None
    except ValidationError:
        raise Unauthenticated("authorization", "token lacks a valid role or scope") from None


def authenticated(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization", "a Bearer token is required")
    settings: Settings = request.app.state.settings
    return verify(settings, token.strip())


Caller = Annotated[Principal, Depends(authenticated)]
