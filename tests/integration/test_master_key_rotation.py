"""Rotating the master key: data sealed under the old key stays readable after `rewrap` and
after the old key has left the ring; erasure still works. Real PostgreSQL (a schema of this
test's own, so the stack's person-id key is not touched) and the real broker."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import pytest

from events.catalog import event_from_json, example_event
from events.codec import canonical
from events.dispute import DisputeReported
from events.envelope import Actor, Event, Role
from events.log import EventLog
from events.personal import Sealed, unseal
from projections.replay import fresh_schema
from projections.store import Store, migrate
from services.errors import Unavailable
from services.personal import Erasure, erase, held_keys, keyring, rewrap, sealed
from services.settings import Settings
from tests.residents import a_resident
from tests.stack import RunningStack, a_place

TOKEN = "q7Hk2-vR9xLw4Zp8nB3mT6yC1sD5fG0jK" * 2


def a_dispute(grid: str, *parties: tuple[str, str]) -> Event[Any]:
    body = example_event(DisputeReported)
    body["grid"], body["event_id"] = grid, str(uuid.uuid4())
    body["payload"] = {**body["payload"], "summary": "宅基地争执",
                       "parties": [{"name": n, "phone": p} for n, p in parties]}
    return event_from_json(canonical(body))


def test_data_sealed_under_a_retired_master_key_stays_readable_and_erasable(
    stack: RunningStack,
) -> None:
    url, grid = stack.info["database_url"], a_place()
    schema = f"rotation_{uuid.uuid4().hex[:8]}"
    fresh_schema(url, schema)
    migrate(url, schema=schema)
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    before = Settings(token_secret=TOKEN, master_key=old)  # the key before rings: id m1
    rotated = Settings(token_secret=TOKEN, master_keys=f"m2:{new},m1:{old}")
    retired = Settings(token_secret=TOKEN, master_keys=f"m2:{new}")
    kept, erased = a_resident(), a_resident()

    async def scenario() -> None:
        store = await Store(url, schema=schema).open()
        log = EventLog(stack.info["kafka_bootstrap"], client_id="test-rotation")
        try:
            (event,) = await sealed(store, before, [a_dispute(grid, kept, erased)])
            values = [v for p in event.payload.parties for v in (p.name, p.phone)]
            assert all(isinstance(v, Sealed) for v in values)

            async def opened(settings: Settings) -> list[str | None]:
                keys = await held_keys(store, await keyring(store, settings),
                                       {v.key for v in values})
                return [unseal(keys[v.key], v, k) if v.key in keys else None
                        for v, k in zip(values, ["name", "phone"] * 2, strict=True)]

            assert await opened(before) == [*kept, *erased]
            # a person met after the rotation is wrapped by the new key; the old still opens
            await sealed(store, rotated, [a_dispute(grid, a_resident())])
            assert await opened(rotated) == [*kept, *erased]
            with pytest.raises(Unavailable, match="not in the ring"):  # not re-wrapped yet
                await keyring(store, retired)

            done = await rewrap(store, await keyring(store, rotated), batch=1)
            assert (done.rewrapped, done.unopenable) == (2, 0)
            again = await rewrap(store, await keyring(store, rotated), batch=1)
            assert (again.rewrapped, again.unopenable) == (0, 0)
            async with store.cursor() as cur:
                await cur.execute("select master_key_id, count(*) from person_keys group by 1")
                assert await cur.fetchall() == [("m2", 3)]

            assert await opened(retired) == [*kept, *erased]  # break-glass reads still open
            # the same person ids without the old key: the same person is found to erase
            (known,) = await sealed(store, retired, [a_dispute(grid, kept, erased)])
            assert [p.name.person for p in known.payload.parties] == \
                [p.name.person for p in event.payload.parties]
            gone = await erase(store, log, await keyring(store, retired),
                               Erasure(grid=grid, name=erased[0], phone=erased[1],
                                       reason="本人申请，工单 9"),
                               Actor(id="admin-rotation", role=Role.admin))
            assert gone is not None and gone.payload.keys == 1
            assert await opened(retired) == [*kept, None, None]
        finally:
            log.close()
            await store.close()

    asyncio.run(scenario())
