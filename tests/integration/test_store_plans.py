"""A rebuild's store plans each statement for its own batch: a plan cached while a fresh
schema's tables were small would go on reading them whole (projections/store.py)."""

from __future__ import annotations

import asyncio

from projections.matters import FiveHave
from projections.store import Store
from projections.worker import Projector
from tests.stack import RunningStack


async def plan_cache_mode(store: Store) -> str:
    await store.open()
    try:
        async with store.cursor() as cur:
            await cur.execute("show plan_cache_mode")
            row = await cur.fetchone()
            assert row is not None
            return str(row[0])
    finally:
        await store.close()


def test_a_rebuilds_store_plans_each_statement_and_a_live_projectors_keeps_cached_plans(
        stack: RunningStack) -> None:
    url = stack.info["database_url"]
    assert asyncio.run(plan_cache_mode(Store(url, schema="public", custom_plans=True))) \
        == "force_custom_plan"
    projector = Projector(FiveHave(), bootstrap=stack.info["kafka_bootstrap"], database_url=url)
    assert asyncio.run(plan_cache_mode(projector.store)) == "auto"
