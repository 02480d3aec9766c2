"""Residents' personal data at the edges: keys in PostgreSQL, sealing at ingest, masks and
break-glass reads in the APIs, erasure (crypto-shredding). The pure part is events/personal.py.

Keys: each person's AES-256 data key is kept in `person_keys`, wrapped (AES-GCM) by a key
derived from the current master key of the ring (GRIDGOV_MASTER_KEYS, or GRIDGOV_MASTER_KEY
alone as "m1"), with the id of the master key that wrapped it; the older keys of the ring
still unwrap, and `rewrap` moves every data key to the current one so they can be retired.
Person ids are a keyed HMAC under a key of their own (`person_id_key`), wrapped by the ring
too, so that rotating the master key never changes who a person is. Nothing here logs a
value, and no metric is labelled with one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from events.audit import REVEALERS, PersonalDataRevealed, PersonErased
from events.catalog import CATALOG, event_from_dict
from events.dispute import Name, Party, Phone
from events.envelope import Actor, Event, Grid, Payload, Role
from events.incident import Text
from events.log import EventLog, LogUnavailable
from events.personal import (
    ERASED,
    Kind,
    Sealed,
    carries_personal,
    mask,
    people,
    person_id,
    rewrite,
    said_in,
    scrub,
    seal,
    unseal,
)
from projections.store import Cursor, Store
from services.auth import Caller, Principal
from services.errors import Forbidden, Invalid, NotFound, Unavailable, json_response
from services.settings import Settings

#: event types whose payload may name a person: only these are decoded to mask or seal
PERSONAL_TYPES = frozenset(t for (t, _), p in CATALOG.items() if carries_personal(p))


class Keyring:
    """What the master key ring opens: data keys (wrapped in person_keys) and person ids."""

    def __init__(self, settings: Settings, pseudonym_key: bytes | None = None) -> None:
        ring = settings.master_ring
        if not ring:
            raise Unavailable("personal_data", "no master key is configured (GRIDGOV_MASTER_KEY)")
        self.current = ring[0][0]
        self._wrappers = {kid: AESGCM(hmac.new(master, b"gridgov wrap", hashlib.sha256).digest())
                          for kid, master in ring}
        # before rings, person ids were keyed by a key derived from the one master key; a ring
        # grows at its head, so its last key is that one until person_id_key holds it (open())
        self.first_pseudonym_key = hmac.new(ring[-1][1], b"gridgov person id",
                                            hashlib.sha256).digest()
        self.pseudonym_key = pseudonym_key or self.first_pseudonym_key

    async def open(self, store: Store) -> Keyring:
        """This ring with the person-id key kept in PostgreSQL, made there on first use."""
        try:
            async with store.cursor() as cur:
                await cur.execute("select master_key_id, wrapped from person_id_key")
                row = await cur.fetchone()
                if row is None:
                    await cur.execute(
                        "insert into person_id_key (master_key_id, wrapped) values (%s, %s)"
                        " on conflict (singleton) do nothing",
                        [self.current, self.wrap(PERSON_ID_KEY, None, self.first_pseudonym_key)])
                    await cur.execute("select master_key_id, wrapped from person_id_key")
                    row = await cur.fetchone()
        except psycopg.Error as exc:
            raise Unavailable("database", "personal data keys are unavailable, retry later"
                              ) from exc
        assert row is not None  # noqa: S101 - inserted or found just above
        pseudonym_key = self.unwrap(PERSON_ID_KEY, None, bytes(row[1]), row[0])
        if pseudonym_key is None:
            raise Unavailable("personal_data", f"the person-id key is wrapped by master key"
                              f" {row[0]}, which is not in the ring")
        self.pseudonym_key = pseudonym_key
        return self

    def wrap(self, person: str, key_id: UUID | None, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._wrappers[self.current].encrypt(nonce, data_key,
                                                            f"{person}|{key_id}".encode())

    def unwrap(self, person: str, key_id: UUID | None, wrapped: bytes, master_key_id: str
               ) -> bytes | None:
        wrapper = self._wrappers.get(master_key_id)
        if wrapper is None:
            return None  # wrapped by a retired master key: as good as erased
        try:
            return wrapper.decrypt(wrapped[:12], wrapped[12:], f"{person}|{key_id}".encode())
        except InvalidTag:
            return None  # wrapped by another key of that id: as good as erased

    def person(self, grid: str, record: BaseModel) -> str:
        return person_id(self.pseudonym_key, grid, said_in(record))


PERSON_ID_KEY = "person id key"  # what person_id_key's wrapping is bound to


async def keyring(store: Store, settings: Settings) -> Keyring:
    return await Keyring(settings).open(store)


@dataclass(frozen=True)
class Rewrapped:
    rewrapped: int  # data keys moved to the current master key
    unopenable: int  # data keys whose master key is no longer in the ring (left as they are)


async def rewrap(store: Store, keys: Keyring, *, batch: int = 500) -> Rewrapped:
    """Every data key (and the person-id key) wrapped again under the current master key, a
    batch per transaction; afterwards the older master keys can leave the ring. Safe beside
    ingest and erasures (rows are locked, an erased one is simply gone) and safe to rerun."""
    rewrapped = unopenable = 0
    after = ""
    while True:
        async with store.transaction() as cur:
            await cur.execute(
                "select person_id, key_id, wrapped, master_key_id from person_keys"
                " where master_key_id <> %s and person_id > %s order by person_id limit %s"
                " for update skip locked", [keys.current, after, batch])
            rows = await cur.fetchall()
            moved = []
            for who, key_id, wrapped, master_key_id in rows:
                data_key = keys.unwrap(who, key_id, bytes(wrapped), master_key_id)
                if data_key is None:
                    unopenable += 1
                else:
                    moved.append((keys.wrap(who, key_id, data_key), keys.current, who))
            if moved:
                await cur.executemany("update person_keys set wrapped = %s, master_key_id = %s"
                                      " where person_id = %s", moved)
            rewrapped += len(moved)
        if len(rows) < batch:
            break
        after = rows[-1][0]
    async with store.transaction() as cur:
        await cur.execute("select master_key_id, wrapped from person_id_key for update")
        row = await cur.fetchone()
        if row is not None and row[0] != keys.current:
            await cur.execute("update person_id_key set master_key_id = %s, wrapped = %s",
                              [keys.current, keys.wrap(PERSON_ID_KEY, None, keys.pseudonym_key)])
    return Rewrapped(rewrapped, unopenable)


# -- ingest: seal before the log ------------------------------------------------------------
async def sealed(store: Store, settings: Settings, events: list[Event[Any]]) -> list[Event[Any]]:
    """The events as the log may carry them: each personal value sealed under its person's
    data key, and the same names and numbers in the event's free text said as 某某. One query
    for the whole batch (get or make every key), none when no event names a person."""
    if not any(carries_personal(type(e.payload)) for e in events):
        return events
    keyring = await Keyring(settings).open(store)
    wanted = {keyring.person(e.grid, r): e.grid for e in events for r in people(e.payload)}
    if not wanted:
        return events
    keys = await _data_keys(store, keyring, wanted)
    return [_sealed(e, keyring, keys) if carries_personal(type(e.payload)) else e
            for e in events]


def _sealed(event: Event[Any], keyring: Keyring, keys: dict[str, tuple[UUID, bytes]]
            ) -> Event[Any]:
    said = [v for r in people(event.payload) for _, v in said_in(r).values()]

    def person(record: BaseModel) -> BaseModel:
        who = keyring.person(event.grid, record)
        key_id, data_key = keys[who]
        return record.model_copy(update={name: seal(data_key, who, key_id, kind, text)
                                         for name, (kind, text) in said_in(record).items()})

    return event.model_copy(update={"payload": rewrite(event.payload, person,
                                                       lambda text: scrub(text, said))})


async def _data_keys(store: Store, keyring: Keyring, wanted: dict[str, str]
                     ) -> dict[str, tuple[UUID, bytes]]:
    """Each person's data key, made for those who have none yet; one statement, safe against
    a concurrent request making the same person's key (the row it made wins)."""
    offered = [(who, grid, uuid.uuid4(), os.urandom(32)) for who, grid in wanted.items()]
    try:
        async with store.cursor() as cur:
            await cur.execute(
                "insert into person_keys (person_id, grid, key_id, wrapped, master_key_id)"
                " select *, %s from unnest(%s::text[], %s::text[], %s::uuid[], %s::bytea[])"
                " on conflict (person_id) do update set person_id = excluded.person_id"
                " returning person_id, key_id, wrapped, master_key_id",
                [keyring.current, [o[0] for o in offered], [o[1] for o in offered],
                 [o[2] for o in offered],
                 [keyring.wrap(who, key_id, key) for who, _, key_id, key in offered]])
            rows = await cur.fetchall()
    except psycopg.Error as exc:
        raise Unavailable("database", "personal data keys are unavailable, retry later"
                          ) from exc
    keys = {}
    for who, key_id, wrapped, master_key_id in rows:
        data_key = keyring.unwrap(who, key_id, bytes(wrapped), master_key_id)
        if data_key is None:
            raise Unavailable("personal_data", "a data key does not open with this master key")
        keys[who] = (key_id, data_key)
    return keys


# -- reads: masked, or revealed by break-glass ------------------------------------------------
async def break_glass(
    caller: Caller,
    reveal: Annotated[Literal["personal"] | None, Query(
        description="`personal`: show residents' personal data unmasked (break-glass; recorded"
                    " on the audit topic; grid_chief, police and mediator only)")] = None,
    reason: Annotated[str | None, Query(max_length=500, description="why (break-glass)")] = None,
) -> str | None:
    """The stated reason of a break-glass read, or None for a masked one."""
    if reveal is None:
        return None
    if caller.role not in REVEALERS:
        raise Forbidden("reveal", f"role {caller.role} may not read personal data unmasked")
    if reason is None or len(reason.strip()) < 2 or "\x00" in reason:
        raise Invalid("reason", "a break-glass read states its reason")
    return reason.strip()


BreakGlass = Annotated[str | None, Depends(break_glass)]


async def disclosed(request: Request, caller: Principal, bodies: list[dict[str, Any]], *,
                    reason: str | None = None, about: tuple[str, str] | None = None
                    ) -> list[dict[str, Any]]:
    """Events (as JSON) as this caller may see them: personal values masked, or with a
    `reason` unmasked once the break-glass read is on the audit topic about (id, grid);
    erased ones as 〔已删除〕 either way."""
    at = [i for i, b in enumerate(bodies) if b.get("event_type") in PERSONAL_TYPES]
    if not at:
        return bodies
    events = {i: event_from_dict(bodies[i], as_written=True) for i in at}
    values = [v for e in events.values() for r in people(e.payload)
              for _, v in said_in(r).values()]
    keys = await _keys_of(request, {v.key for v in values if isinstance(v, Sealed)})
    revealing = reason is not None and about is not None  # only a read that can be recorded

    def plain(kind: Kind, value: str | Sealed) -> str | None:
        if isinstance(value, str):
            return value  # written in clear by a producer that bypassed ingest
        key = keys.get(value.key)
        return unseal(key, value, kind) if key else None

    said = [p for r in (r for e in events.values() for r in people(e.payload))
            for kind, v in said_in(r).values() if (p := plain(kind, v)) is not None]
    if revealing and said and reason is not None and about is not None:
        persons = sorted({v.person for v in values if isinstance(v, Sealed) and v.key in keys})
        await _record(request, caller, PersonalDataRevealed(
            read=request.url.path[:300], persons=persons, reason=scrub(reason, said)), about)

    def person(record: BaseModel) -> BaseModel:
        shown = {}
        for name, (kind, value) in said_in(record).items():
            text = plain(kind, value)
            shown[name] = ERASED if text is None else text if revealing else mask(kind, text)
        return record.model_copy(update=shown)

    out = list(bodies)
    for i, event in events.items():
        out[i] = event.model_copy(update={"payload": rewrite(event.payload, person)}
                                  ).model_dump(mode="json")
    return out


async def _keys_of(request: Request, wanted: set[UUID]) -> dict[UUID, bytes]:
    """The data keys still held for these key ids (the erased ones are simply absent)."""
    if not wanted:
        return {}
    return await held_keys(request.app.state.store, Keyring(request.app.state.settings),
                           wanted)


async def held_keys(store: Store, keys: Keyring, wanted: set[UUID]) -> dict[UUID, bytes]:
    """The data keys of these ids that are held and open with the ring."""
    async with store.cursor() as cur:
        await cur.execute("select person_id, key_id, wrapped, master_key_id from person_keys"
                          " where key_id = any(%s)", [list(wanted)])
        rows = await cur.fetchall()
    return {key_id: key for who, key_id, wrapped, master_key_id in rows
            if (key := keys.unwrap(who, key_id, bytes(wrapped), master_key_id)) is not None}


async def _record(request: Request, caller: Principal, payload: Payload,
                  about: tuple[str, str]) -> None:
    await append(request.app.state.log, Actor(id=caller.sub, role=caller.role), payload, about)


async def append(log: EventLog, actor: Actor, payload: Payload, about: tuple[str, str]
                 ) -> Event[Any]:
    """An audit event about (aggregate id, grid), on the log (acks=all) before anything else."""
    now = datetime.fromtimestamp(time.time(), UTC)
    event: Event[Any] = Event[type(payload)](  # type: ignore[misc]
        event_id=uuid.uuid4(), event_type=payload.event_type,
        schema_version=payload.schema_version, occurred_at=now, recorded_at=now, actor=actor,
        grid=about[1], aggregate_id=about[0], aggregate_seq=int(now.timestamp()),
        payload=payload)
    try:
        await log.append(event)
    except LogUnavailable as exc:
        raise Unavailable("broker", "the audit log did not acknowledge, retry later") from exc
    return event


# -- erasure -------------------------------------------------------------------------------
class Erasure(BaseModel):
    """A resident to erase, named as the disputes named them, in the grid they were named in."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    grid: Grid
    name: Name
    phone: Phone | None = None
    reason: Text  # cite the request (a ticket number), not the person: it goes to the log


async def erase(store: Store, log: EventLog, keyring: Keyring, erasure: Erasure,
                by: Actor) -> Event[PersonErased] | None:
    """Delete the person's data key and record it; None if no key is held for them. The
    keyring is open (`keyring()`): the person is found by the kept person-id key.

    The key goes in the same transaction that waits for the log's acks=all: if the log is
    away nothing is deleted; a crash after the ack and before the commit leaves an erasure
    recorded but not done, which a retry finishes (and records again)."""
    who = keyring.person(erasure.grid, Party(name=erasure.name, phone=erasure.phone))
    async with store.transaction() as cur:
        deleted = await _delete_keys(cur, who)
        if not deleted:
            return None
        said = [s for s in (erasure.name, erasure.phone) if s]
        return await append(log, by, PersonErased(person=who, keys=deleted,
                                                  reason=scrub(erasure.reason, said)),
                            (who, "/".join(erasure.grid.split("/")[:4])))


async def _delete_keys(cur: Cursor, who: str) -> int:
    await cur.execute("delete from person_keys where person_id = %s", [who])
    return cur.rowcount


router = APIRouter()


@router.post("/v1/persons/erasures")
async def post_erasure(request: Request, caller: Caller, erasure: Erasure) -> Response:
    """Erase a resident (crypto-shredding): admins only, in their scope. Afterwards no API,
    read model, rebuild or raw read of the log shows their name or phone."""
    if caller.role is not Role.admin:
        raise Forbidden("authorization", "only administrators erase personal data")
    caller.require(erasure.grid, "grid")
    store = request.app.state.store
    erased = await erase(store, request.app.state.log,
                         await keyring(store, request.app.state.settings), erasure,
                         Actor(id=caller.sub, role=caller.role))
    if erased is None:
        raise NotFound("person", "no personal data of such a person is held in this grid")
    return json_response({"person": erased.payload.person, "keys_deleted": erased.payload.keys,
                          "event_id": str(erased.event_id)})


