from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.envelope import Role
from projections import points_rules, sla
from projections.sla import DEFAULT_RULES
from tests.residents import RESIDENTS, sightings
from tests.stack import RunningStack, a_place

_basetemp: list[Path] = []  # where every stack of the session keeps its home


@pytest.fixture(scope="session", autouse=True)
def service_log_roots(tmp_path_factory: pytest.TempPathFactory) -> None:
    _basetemp.append(tmp_path_factory.getbasetemp())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Issue 7: after the whole run, no log of any stack names a test resident. Every stack
    has stopped by now (session fixtures are torn down before this hook)."""
    found = [s for root in _basetemp for s in sightings(root, RESIDENTS)]
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "a service log names a test resident (issue 7)", red=True)
        for sighting in found[:50]:
            reporter.write_line(str(sighting))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One real embedded stack for the whole session; tests isolate themselves by place."""
    home = tmp_path_factory.mktemp("gridgov")
    rules = home / "points_rules.toml"  # a copy of the catalog: a points test changes it
    shutil.copyfile(points_rules.DEFAULT_RULES, rules)
    running = RunningStack(home / "home", sla_file=str(fast_sla(home / "sla.toml")),
                           points_rules_file=str(rules)).start()
    try:
        yield running
    finally:
        running.stop()


GRACE_SECONDS = 3


def fast_sla(path: Path) -> Path:
    """The shipped SLA rules with a grace of seconds, so auto-escalation is seen in a test."""
    rules = DEFAULT_RULES.read_text(encoding="utf-8")
    path.write_text(re.sub(r"(?m)^grace_seconds\s*=\s*\d+", f"grace_seconds = {GRACE_SECONDS}",
                           rules), encoding="utf-8")
    assert sla.load(path).grace.total_seconds() == GRACE_SECONDS
    return path


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
