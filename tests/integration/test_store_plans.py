"""A rebuild's store (`replay`: `Store(custom_plans=True)`) plans each statement for its own
batch: a plan cached while a fresh schema's tables were small would go on reading them whole
(projections/store.py). So does the query service's, each read for the place it asks about: a
plan cached for any place walked every chain to list one grid's. The live projectors keep
PostgreSQL's cached plans."""

from __future__ import annotations

import asyncio

from projections.matters import FiveHave
from projections.store import Store
from projections.worker import Projector
from services.query import read_models
from tests.stack import RunningStack


async def settings(store: Store) -> tuple[str, str]:
    """The store's plan_cache_mode and search_path, as its connections have them."""
    await store.open()
    try:
        async with store.cursor() as cur:
            await cur.execute("select current_setting('plan_cache_mode'),"
                              " current_setting('search_path')")
            row = await cur.fetchone()
            assert row is not None
            return str(row[0]), str(row[1])
    finally:
        await store.close()


def test_the_query_service_plans_each_read_for_the_place_it_asks_about(stack: RunningStack
                                                                       ) -> None:
    assert asyncio.run(settings(read_models(stack.info["database_url"])))[0] \
        == "force_custom_plan"


def test_a_store_with_custom_plans_plans_each_statement_in_its_schema_and_a_projectors_does_not(
        stack: RunningStack) -> None:
    url = stack.info["database_url"]
    rebuild = Store(url, schema="rebuild_plans", custom_plans=True)
    assert asyncio.run(settings(rebuild)) == ("force_custom_plan", "rebuild_plans")
    projector = Projector(FiveHave(), bootstrap=stack.info["kafka_bootstrap"], database_url=url)
    assert asyncio.run(settings(projector.store))[0] == "auto"
