"""The demo simulator plays grid workers' apps through the real ingest API."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

from services.places import DEMO_GRIDS
from tests.stack import RunningStack, wait_until


def test_the_simulator_publishes_patrols_and_reports_in_the_demo_places(stack: RunningStack
                                                                        ) -> None:
    started = datetime.now(UTC)
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "simulate", "--rate", "40", "--seconds", "2",
         "--ingest-url", stack.info["ingest_url"]],
        env=stack.env, capture_output=True, text=True, timeout=60, check=True).stdout
    accepted = int(re.search(r"(\d+) events accepted", out).group(1))  # type: ignore[union-attr]
    assert accepted >= 40

    def archived() -> list[tuple[str, str, int]]:
        return stack.sql("select event_type, place, count(*) from archive"
                         " where recorded_at >= %s and place = any(%s) group by 1, 2",
                         started, list(DEMO_GRIDS))

    def all_archived() -> list[tuple[str, str, int]]:
        rows = archived()
        return rows if sum(n for *_, n in rows) >= accepted else []

    rows = wait_until(all_archived, what="the simulated events archived")
    assert {t for t, _, _ in rows} == {"patrol.logged", "incident.reported"}
