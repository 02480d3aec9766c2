"""The log's ends every read discloses its lag against: asked of the broker by one ask at a
time, and waited for only when the ends a read has are too old to disclose."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import cast

import pytest

from projections.store import Store
from services.watermark import FRESH, STALE, Watermarks

Ends = dict[tuple[str, int], int]


class Broker(Watermarks):
    """Watermarks whose broker answers `answer` when released (an ask runs in a thread)."""

    def __init__(self) -> None:
        super().__init__(cast(Store, None), "broker:9092", "five_have")
        self.answer: Ends | Exception = {}
        self.asks = 0
        self.release = threading.Event()

    def _ask_broker(self) -> Ends:
        self.asks += 1
        self.release.wait(5)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def age_by(self, seconds: float) -> None:
        self._read_at -= seconds


async def _until(condition: Callable[[], object], what: str) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)  # polls for the ask's thread, with the deadline above


def answered(marks: Broker, ends: Ends | Exception) -> None:
    marks.answer = ends
    marks.release.set()


async def asked_once(ends: Ends) -> Broker:
    """Watermarks whose first read waited for an ask that answered `ends`; the broker is held
    from then on."""
    marks = Broker()
    answered(marks, ends)
    assert await marks.log_ends() == ends
    marks.release.clear()
    return marks


def test_a_read_with_ends_under_stale_old_answers_at_once_while_one_ask_runs_behind_it() -> None:
    async def scenario() -> None:
        marks = await asked_once({("gridgov.incidents", 0): 5})
        marks.age_by(FRESH + 0.5)
        for _ in range(3):  # the broker is held: these answer with what the process has
            assert await marks.log_ends() == {("gridgov.incidents", 0): 5}
        await _until(lambda: marks.asks == 2, "the ask in the background")

        answered(marks, {("gridgov.incidents", 0): 9})
        await _until(lambda: marks._asking is None, "the ask to end")
        assert await marks.log_ends() == {("gridgov.incidents", 0): 9}
        assert marks.asks == 2  # three reads fell due, one ask went

    asyncio.run(scenario())


def test_a_process_that_asked_at_its_start_answers_its_first_read_without_an_ask() -> None:
    async def scenario() -> None:
        marks = Broker()
        marks.ask_when_due()  # what the query service does at its start
        marks.ask_when_due()  # one ask at a time
        answered(marks, {("gridgov.incidents", 4): 11})
        await _until(lambda: marks._asking is None, "the ask at the start")
        assert await marks.log_ends() == {("gridgov.incidents", 4): 11}
        assert marks.asks == 1

    asyncio.run(scenario())


def test_a_read_with_ends_over_stale_old_waits_for_the_broker() -> None:
    async def scenario() -> None:
        marks = await asked_once({("gridgov.patrols", 3): 1})
        marks.age_by(STALE + 0.5)
        read = asyncio.create_task(marks.log_ends())
        await _until(lambda: marks.asks == 2, "the ask")
        assert not read.done()
        answered(marks, {("gridgov.patrols", 3): 40})
        assert await read == {("gridgov.patrols", 3): 40}

    asyncio.run(scenario())


def test_a_broker_silent_past_stale_leaves_a_read_its_lag_unknown_after_a_bounded_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.watermark.WAIT", 0.05)

    async def scenario() -> None:
        marks = await asked_once({("gridgov.incidents", 2): 3})
        marks.age_by(STALE + 0.5)
        assert await marks.log_ends() is None  # the broker is held: no ends to disclose
        assert await marks.log_ends() is None
        assert marks.asks == 2  # still the one ask
        answered(marks, {("gridgov.incidents", 2): 8})
        await _until(lambda: marks._asking is None, "the ask to end")
        assert await marks.log_ends() == {("gridgov.incidents", 2): 8}

    asyncio.run(scenario())


def test_a_failed_ask_keeps_the_ends_it_had_until_they_are_stale(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> int:
        marks = await asked_once({("gridgov.incidents", 1): 7})
        marks.age_by(FRESH + 0.5)
        answered(marks, ConnectionError("broker gone"))
        assert await marks.log_ends() == {("gridgov.incidents", 1): 7}
        await _until(lambda: marks._asking is None, "the ask to fail")
        assert await marks.log_ends() == {("gridgov.incidents", 1): 7}  # and one more goes
        await _until(lambda: marks._asking is None, "the second ask to fail")

        marks.age_by(STALE)
        assert await marks.log_ends() is None  # a third, waited for, fails too
        return marks.asks

    with caplog.at_level(logging.WARNING, logger="services.watermark"):
        assert asyncio.run(scenario()) == 4
    assert caplog.text.count("broker gone") == 3
