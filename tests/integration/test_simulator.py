"""The demo simulator plays grid workers' apps and the people after them through the real API."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

from services.places import DEMO_GRIDS
from tests.stack import RunningStack, wait_until


def test_the_simulator_reports_in_the_demo_places_and_carries_matters_to_closed(
    stack: RunningStack,
) -> None:
    started = datetime.now(UTC)
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "simulate", "--rate", "20", "--seconds", "15",
         "--ingest-url", stack.info["ingest_url"]],
        env=stack.env, capture_output=True, text=True, timeout=90, check=True).stdout
    accepted = int(re.search(r"(\d+) events accepted", out).group(1))  # type: ignore[union-attr]
    assert accepted >= 50  # the rate is a target; a loaded machine runs fewer ticks

    def archived() -> list[tuple[str, str, int]]:
        return stack.sql("select event_type, place, count(*) from archive"
                         " where recorded_at >= %s and place = any(%s) group by 1, 2",
                         started, list(DEMO_GRIDS))

    # the deciders' events count in the archive too: a sum past `accepted` does not yet say
    # every kind has arrived, so the kinds are waited for, and named if they never come
    kinds = {"patrol.logged", "incident.reported", "dispute.reported", "incident.assigned",
             "incident.accepted", "incident.resolved", "incident.verified", "incident.closed"}
    wait_until(lambda: (r := archived()) and sum(n for *_, n in r) >= accepted
               and kinds <= {t for t, _, _ in r}, what=f"the simulated events archived: {kinds}")
    points = wait_until(lambda: {t for (t,) in stack.sql(
        "select distinct event_type from archive where recorded_at >= %s"
        " and event_type like 'points.%%'", started)} >= {"points.claimed", "points.approved"}
        and True, what="households' deeds claimed and validated")
    assert points

    def chains() -> dict[str, int]:
        return dict(stack.sql(
            "select stage || case when chain_complete then '+complete' else '' end, count(*)"
            " from five_have where grid = any(%s) and report_at >= %s - interval '4 hours'"
            " group by 1", list(DEMO_GRIDS), started))

    stages = wait_until(lambda: (c := chains()).get("closed+complete") and c,
                        what="simulated matters closed with all five links")
    assert set(stages) <= {"reported", "assigned", "owned", "resolved", "closed+complete",
                           "rejected", "suspended"}, stages
    wait_until(lambda: stack.sql("select count(*) from five_have where grid = any(%s) and"
                                 " kind = 'dispute' and mediations ? 'succeeded' and"
                                 " report_at >= %s - interval '4 hours'",
                                 list(DEMO_GRIDS), started)[0][0] >= 1,
               what="a simulated dispute mediated")
