"""`below(place)`: the one way every read names a place and everything under it, checked with
PostgreSQL's own `like` (a `_` in a place path is a letter, not `like`'s any character)."""

from __future__ import annotations

import psycopg

from projections.store import below
from tests.stack import RunningStack

GRIDS = ["430382/a_b", "430382/a_b/001", "430382/a_b/001/07", "430382/axb/001",
         "430382/a_bc", "430382/a", "430382"]


def test_a_place_matches_itself_and_the_places_under_it_and_no_lookalike(stack: RunningStack
                                                                          ) -> None:
    with psycopg.connect(stack.info["database_url"]) as conn:
        rows = conn.execute(
            "select grid from unnest(%s::text[]) as g(grid) where grid = %s or grid like %s"
            " order by grid", [GRIDS, *below("430382/a_b")]).fetchall()
    assert [grid for grid, in rows] == ["430382/a_b", "430382/a_b/001", "430382/a_b/001/07"]
