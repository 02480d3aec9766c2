"""The session's closing grep of service logs (tests/residents.py) finds what it must find."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.residents import RESIDENTS, a_resident, service_logs, sightings


def stack_home(root: Path) -> Path:
    """The files a RunningStack leaves: stack.out, logs/*.log, and a database's own files."""
    home = root / "gridgov0" / "home"
    (home / "logs").mkdir(parents=True)
    (home / "stack.out").write_text("started\n", encoding="utf-8")
    (home / "logs" / "ingest.log").write_text("201 POST /v1/events\n", encoding="utf-8")
    (home / "pg").mkdir()
    return home


def test_a_planted_name_or_phone_is_found_with_its_file_and_line() -> None:
    # planted outside the session's basetemp, so the session's own closing grep never reads
    # it: names are drawn from few characters, and another resident may share this one
    with tempfile.TemporaryDirectory() as outside:
        root = Path(outside)
        home = stack_home(root)
        name, phone = resident = a_resident()
        RESIDENTS.remove(resident)
        with (home / "logs" / "ingest.log").open("a", encoding="utf-8") as log:
            log.write(f"422 party {name}\nok\nphone {phone}\n")
        found = sightings(root, [resident])
    assert [(s.path.name, s.line) for s in found] == [("ingest.log", 2), ("ingest.log", 4)]
    assert name not in str(found[0]) and phone not in str(found[1])  # the report masks them
    assert str(found[1]).endswith(f"ingest.log:4: {phone[:3]}****{phone[-4:]}")


def test_only_service_logs_are_read_and_a_clean_run_finds_nothing(tmp_path: Path) -> None:
    home = stack_home(tmp_path)
    (home / "pg" / "base.log").write_text(a_resident()[0], encoding="utf-8")  # not a log
    assert service_logs(tmp_path) == [home / "logs" / "ingest.log", home / "stack.out"]
    assert sightings(tmp_path, RESIDENTS) == []


def test_a_run_whose_stack_logged_a_resident_exits_non_zero(tmp_path: Path) -> None:
    """The conftest hook in a pytest of its own: one passing test, one planted log line."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_leak.py").write_text(
        "from tests.residents import a_resident\n\n"
        "def test_a_stack_logs_a_resident(tmp_path_factory):\n"
        "    home = tmp_path_factory.mktemp('gridgov') / 'home'\n"
        "    (home / 'logs').mkdir(parents=True)\n"
        "    (home / 'logs' / 'query.log').write_text('GET ' + a_resident()[1] + '\\n')\n",
        encoding="utf-8")
    (suite / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n"
                                       "from tests.conftest import pytest_sessionfinish"
                                       "  # noqa: F401\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", suite,
         "--basetemp", tmp_path / "bt", suite], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).parents[2], env={**os.environ, "PYTHONPATH": "."}, check=False)
    assert run.returncode == 1, run.stdout
    assert "1 passed" in run.stdout
    assert "a service log names a test resident" in run.stdout
    assert "query.log:1: 139****" in run.stdout
