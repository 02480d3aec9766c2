"""The dashboard in headless Chromium: an incident published over HTTP shows up without reload."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, sync_playwright

from events.envelope import Role
from projections.sla import LOCAL
from tests.stack import RunningStack, an_incident


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by `make tools`"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def test_the_funnel_and_ticker_move_live_when_an_incident_is_published(
    stack: RunningStack, grid: str, browser: Browser, artifacts: Path
) -> None:
    supervisor = stack.token(Role.supervisor, grid)
    opened = datetime.now(LOCAL).date()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{stack.info['query_url']}/dashboard?"
              f"{urlencode({'place': grid, 'token': supervisor})}")
    page.wait_for_selector("#status.live")
    page.wait_for_selector("#funnel [data-stage=report] em")
    assert page.inner_text("#funnel [data-stage=report] em") == "0"
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

    incident = an_incident(grid, payload={**an_incident(grid)["payload"],
                                          "title": "河堤护栏松动"})
    with stack.ingest(stack.token(Role.worker, grid)) as phone:
        assert phone.post("/v1/events", json=incident).status_code == 201

    page.wait_for_function(
        "document.querySelector('#funnel [data-stage=report] em').textContent === '1'",
        timeout=20_000)
    page.wait_for_function(
        "[...document.querySelectorAll('#ticker li')].some(li => li.textContent.includes("
        "'河堤护栏松动'))", timeout=20_000)
    assert page.evaluate("window.sameDocument") is True
    page.wait_for_selector("#points ol li")  # the points panel answered for this grid
    assert "未公示 not yet published" in page.inner_text("#points")
    kpi = page.inner_text("#kpis")
    assert "结案率" in kpi and "closure rate" in kpi
    guards = page.inner_text("#guards")  # this month's coverage is judged as of today
    assert any(f"as of {day}" in guards for day in (opened, datetime.now(LOCAL).date())), guards
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    page.close()
