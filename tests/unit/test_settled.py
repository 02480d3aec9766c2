"""A long-running process freezes what it built before it serves (`services.cli.settled`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from projections import decider, worker
from services.cli import main


@pytest.fixture
def unfrozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("GRIDGOV_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("GRIDGOV_HOME", str(tmp_path))
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process goes on collecting as before


@pytest.mark.parametrize(("command", "runs"), [
    (["serve", "ingest"], (uvicorn, "run")),
    (["serve", "query"], (uvicorn, "run")),
    (["project", "five_have"], (worker, "run")),
    (["decide", "incidents"], (decider, "run")),
    (["decide", "points"], (decider, "run")),
])
def test_a_process_freezes_its_heap_before_it_serves(
        unfrozen: None, monkeypatch: pytest.MonkeyPatch, command: list[str],
        runs: tuple[Any, str]) -> None:
    frozen_when_served: list[int] = []
    monkeypatch.setattr(*runs, lambda *a, **k: frozen_when_served.append(gc.get_freeze_count()))
    for factory in ("incident_decider_app", "points_decider_app"):  # they dial the broker
        monkeypatch.setattr(decider, factory, lambda **settings: object())
    assert gc.get_freeze_count() == 0
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert len(frozen_when_served) == 1 and frozen_when_served[0] > 0
