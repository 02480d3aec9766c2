"""Group commit: concurrent callers share round trips, each hears its own share, and a second
lane lets a small group go while a big one is still out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from services.group_commit import GroupCommit


class Recorded:
    """A round trip that remembers the groups it was given and finishes when released."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.out = 0
        self.most_out = 0
        self.release = asyncio.Event()

    async def __call__(self, items: list[int]) -> Sequence[int]:
        self.groups.append(items)
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        await self.release.wait()
        self.out -= 1
        if -1 in items:
            raise ValueError("a refused item fails its whole group")
        return [10 * i for i in items]


async def _until(condition: Callable[[], object], what: str) -> None:
    """Let the other tasks run until the condition holds (a yield, not a wait for time)."""
    try:
        async with asyncio.timeout(5):
            while not condition():
                await asyncio.sleep(0)
    except TimeoutError:
        raise AssertionError(f"no {what} within 5 s") from None


async def _waiting_behind_one(trip: Recorded, commit: GroupCommit[int, int], *items: list[int]
                              ) -> tuple[asyncio.Task[list[int]], list[asyncio.Task[list[int]]]]:
    """A caller of [1] whose round trip is out (held by the trip), and callers of `items`
    waiting behind it for the next group."""
    first = asyncio.create_task(commit([1]))
    await _until(lambda: trip.groups, "the first round trip")
    waiting = [asyncio.create_task(commit(i)) for i in items]
    await _until(lambda: len(commit.waiting) == len(items), f"{len(items)} callers waiting")
    return first, waiting


def test_callers_waiting_together_share_one_round_trip_and_each_hears_its_own_share() -> None:
    async def scenario() -> None:
        trip = Recorded()
        commit = GroupCommit(trip)
        first, rest = await _waiting_behind_one(trip, commit, [2, 3], [4, 5], [6, 7])
        trip.release.set()
        assert await first == [10]
        assert [await r for r in rest] == [[20, 30], [40, 50], [60, 70]]
        assert trip.groups == [[1], [2, 3, 4, 5, 6, 7]]
        assert commit.running == 0

    asyncio.run(scenario())


def test_a_failed_round_trip_fails_every_caller_of_its_group_and_no_other() -> None:
    async def scenario() -> None:
        trip = Recorded()
        commit = GroupCommit(trip)
        first, doomed = await _waiting_behind_one(trip, commit, [-1], [2])
        trip.release.set()
        assert await first == [10]
        for caller in doomed:
            with pytest.raises(ValueError, match="whole group"):
                await caller
        assert await commit([3]) == [30]  # the next group goes on

    asyncio.run(scenario())


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_second_lane_lets_a_group_start_while_another_is_out(lanes: int) -> None:
    async def scenario() -> None:
        trip = Recorded()
        commit = GroupCommit(trip, lanes=lanes)
        big = asyncio.create_task(commit(list(range(500))))
        await _until(lambda: trip.groups, "the batch's round trip")
        single = asyncio.create_task(commit([7]))
        await _until(lambda: len(trip.groups) == 2 or commit.running == lanes == 1,
                     "the single to go, or to wait for the only lane")
        for _ in range(10):
            await asyncio.sleep(0)  # the other tasks had their turns: the single is still out
        assert (len(trip.groups) == 2) == (lanes == 2)
        assert bool(commit.waiting) == (lanes == 1)
        trip.release.set()
        assert await single == [70] and len(await big) == 500
        assert trip.most_out == lanes
        assert commit.running == 0 and not commit.waiting

    asyncio.run(scenario())


def test_a_group_holds_at_most_max_items_unless_one_caller_brings_more() -> None:
    async def scenario() -> None:
        trip = Recorded()
        trip.release.set()
        commit = GroupCommit(trip, max_items=4)
        answers = await asyncio.gather(commit([1, 2, 3]), commit([4, 5]), commit([6]),
                                       commit([8, 9, 10, 11, 12]))
        assert answers == [[10, 20, 30], [40, 50], [60], [80, 90, 100, 110, 120]]
        assert all(len(g) <= 4 for g in trip.groups[:-1])
        assert sorted(i for g in trip.groups for i in g) == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]

    asyncio.run(scenario())
