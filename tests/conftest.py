from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from events.envelope import Role
from tests.stack import RunningStack, a_place


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One real embedded stack for the whole session; tests isolate themselves by place."""
    running = RunningStack(tmp_path_factory.mktemp("gridgov") / "home").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def grid() -> str:
    return a_place()


@pytest.fixture
def worker(stack: RunningStack, grid: str) -> str:
    """A grid worker's token for this test's own grid."""
    return stack.token(Role.worker, grid)


@pytest.fixture
def auditor(stack: RunningStack) -> str:
    return stack.token(Role.auditor, "*")


@pytest.fixture
def artifacts() -> Path:
    path = Path("test-artifacts")
    path.mkdir(exist_ok=True)
    return path
