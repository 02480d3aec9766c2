"""Bearer tokens: signed JWTs carrying a role and a grid scope (place-path prefixes).

A token names the key that signed it (`kid`); every key of the ring is accepted until it is
removed from the ring (retired), and only the first signs. A token of a revoked user or
device is refused, and each subject is held to its request rate (services/limits.py).
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from events.envelope import Place, Role, covers
from services.errors import ScopeViolation, Unauthenticated
from services.limits import BodyDeadline, TokenBuckets
from services.revocations import Revocations, refused
from services.settings import Settings, signing_keys

ALGORITHM = "HS256"  # pinned: a token naming any other algorithm is refused


class Principal(BaseModel):
    """The caller, as the token says."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    sub: str
    role: Role
    scope: tuple[Place | str, ...]
    device: str | None = None  # the phone it was issued to, if any (revocable on its own)
    iat: int = 0  # when its token was issued (every token has one: verify requires it)

    def covers(self, place: str) -> bool:
        return any(covers(s, place) for s in self.scope)

    def require(self, place: str, field: str = "place") -> None:
        if not self.covers(place):
            raise ScopeViolation(field, f"{place} is outside your scope")


@lru_cache(maxsize=8)
def key_set(ring: str) -> jwt.PyJWKSet:
    """The ring as a JWK set; each key carries its algorithm, so none can be used with another."""
    return jwt.PyJWKSet.from_dict({"keys": [
        {"kty": "oct", "kid": kid, "alg": ALGORITHM,
         "k": base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode()}
        for kid, secret in signing_keys(ring).items()]})


def signing_kid(settings: Settings) -> str:
    return next(iter(signing_keys(settings.key_ring)))


def issue(settings: Settings, *, sub: str, role: Role, scope: list[str],
          device: str | None = None, ttl_seconds: int = 12 * 3600,
          now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": sub, "role": role.value, "scope": scope, "iss": settings.token_issuer,
        "aud": settings.token_audience, "iat": issued, "exp": issued + ttl_seconds}
    if device is not None:
        claims["device"] = device
    kid = signing_kid(settings)
    return jwt.encode(claims, key_set(settings.key_ring)[kid], algorithm=ALGORITHM,
                      headers={"kid": kid})


def verify(settings: Settings, token: str) -> Principal:
    """The claims of a token signed by a key of the ring, unexpired, for us, from us."""
    principal, expires = _verified(settings.key_ring, settings.token_issuer,
                                   settings.token_audience, token)
    if expires <= time.time():  # as PyJWT judges `exp`, for a token verified earlier
        raise Unauthenticated("authorization", "token expired")
    return principal


@lru_cache(maxsize=4096)
def _verified(ring: str, issuer: str, audience: str, token: str) -> tuple[Principal, int]:
    """A phone sends the same token with every event: its signature is checked once per
    process and ring, not per request (a tenth of a single event's cost). Refusals raise, so
    they are never kept."""
    try:
        key = key_set(ring)[jwt.get_unverified_header(token).get("kid")]
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
        return Principal.model_validate(claims), int(claims["exp"])
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("authorization", "token expired") from None
    except KeyError:
        raise Unauthenticated("authorization", "signed by an unknown or retired key") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated("authorization", f"invalid token: {exc}") from None
    except ValidationError:
        raise Unauthenticated("authorization", "token lacks a valid role or scope") from None


@dataclass
class Guard:
    """What each API process holds to admit a caller without a database round trip."""

    revocations: Revocations
    buckets: TokenBuckets


def caller_of(request: Request, token: str) -> Principal:
    """The caller behind a token: validly signed, not revoked, within its subject's rate."""
    principal = verify(request.app.state.settings, token)
    guard: Guard = request.app.state.guard
    if refused(guard.revocations.revoked, principal.sub, principal.device, principal.iat):
        raise Unauthenticated("authorization", "token revoked")
    guard.buckets.take(principal.sub, time.monotonic())
    return principal


async def authenticated(request: Request) -> Principal:
    """On the event loop, not in a thread: the guard's state needs no lock."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization", "a Bearer token is required")
    return caller_of(request, token.strip())


Caller = Annotated[Principal, Depends(authenticated)]


def install(app: FastAPI, settings: Settings) -> None:
    """Guard an API: revocations watched for the app's life, rates per subject, and a
    deadline for each request's body."""
    app.add_middleware(BodyDeadline, seconds=settings.body_seconds)
    serve = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        revocations = Revocations(settings.database_url or "",
                                  settings.revocations_refresh_seconds)
        await revocations.start()
        app.state.guard = Guard(revocations, TokenBuckets(settings.token_rate,
                                                          settings.token_burst))
        try:
            async with serve(app) as state:
                yield state
        finally:
            await revocations.stop()

    app.router.lifespan_context = lifespan
