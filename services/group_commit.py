"""Group commit: concurrent requests' items gathered into one round trip.

Thirty-two phones posting one event each should not cost thirty-two statements: each caller
adds its items and waits; one call at a time takes everything waiting and answers each caller
its own share. Under no load a caller goes alone, at once; under load the round trips stay
few and each carries many items. With more than one lane, a group may start while another is
still out: a single event then need not wait behind the round trip of a 500-event batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]],
                 max_items: int = 5000, lanes: int = 1) -> None:
        self.run = run  # one result per item, in order; or an exception for all of them
        self.max_items = max_items
        self.lanes = lanes  # groups out at once
        self.waiting: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        self.running = 0  # lanes draining now; counted down as a lane ends, not after
        self.draining: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def __call__(self, items: list[T]) -> list[R]:
        if not items:
            return []
        answer: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self.waiting.append((items, answer))
        if self.running < self.lanes:
            self.running += 1
            lane = asyncio.create_task(self._drain())
            self.draining.add(lane)
            lane.add_done_callback(self.draining.discard)
        return await answer

    async def _drain(self) -> None:
        try:
            while self.waiting:
                group: list[tuple[list[T], asyncio.Future[list[R]]]] = []
                size = 0
                while self.waiting and (not group or size + len(self.waiting[0][0])
                                        <= self.max_items):
                    items, answer = self.waiting.pop(0)
                    group.append((items, answer))
                    size += len(items)
                await self._commit(group)
        finally:
            self.running -= 1

    async def _commit(self, group: list[tuple[list[T], asyncio.Future[list[R]]]]) -> None:
        try:
            results = list(await self.run([item for items, _ in group for item in items]))
        except Exception as exc:  # every caller of the group hears why  # noqa: BLE001
            for _, answer in group:
                if not answer.done():
                    answer.set_exception(exc)
            return
        start = 0
        for items, answer in group:
            if not answer.done():  # a caller that gave up (client gone) wants nothing
                answer.set_result(results[start:start + len(items)])
            start += len(items)
