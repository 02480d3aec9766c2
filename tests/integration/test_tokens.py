"""Tokens on the real stack: rotated keys, revoked users and devices, forgeries, rate limits.

A stack of its own: two signing keys (the current one and the previous, still accepted) and
a low rate per subject, so that limits bite here and nowhere else in the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest

from events.envelope import Role
from services import auth
from services.errors import Unauthenticated
from tests.forged_tokens import forgeries
from tests.integration.test_access_matrix import READS, Objects
from tests.stack import RunningStack, a_place, an_incident, wait_until

CURRENT, PREVIOUS = "Cq7-current-Hk2vR9xLw4Zp8nB3mT6yC1" * 2, "Pv5-previous-Jd8sF2gK6hQ1wE9rT3y" * 2
BURST = 40  # more than the access matrix's reads, so one subject can walk them all once


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = RunningStack(tmp_path_factory.mktemp("tokens") / "home",
                           token_keys=f"2026-11:{CURRENT},2026-10:{PREVIOUS}",
                           token_rate="2", token_burst=str(BURST)).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def objects(stack: RunningStack) -> Objects:
    return Objects(stack)


def every_operation(stack: RunningStack) -> list[tuple[str, str, str]]:
    """(service, method, path) of every operation both OpenAPI documents name, with made-up
    path parameters: a refused token must be refused before they are looked at."""
    found = []
    for service in ("ingest", "query"):
        spec = httpx.get(stack.info[f"{service}_url"] + "/openapi.json").json()
        for path, operations in spec["paths"].items():
            if path == "/health":
                continue
            filled = re.sub(r"\{fmt\}", "json", re.sub(r"\{place\}", "430382", path))
            filled = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), filled)
            found += [(service, method.upper(), filled) for method in operations]
    return found


def refused_everywhere(stack: RunningStack, token: str,
                       operations: list[tuple[str, str, str]] | None = None) -> list[str]:
    """Every operation that did not refuse the token as unauthenticated (Open311: 403), on
    one kept-alive connection per service."""
    wrong = []
    with stack.ingest(token) as ingest, stack.query(token) as query:
        clients = {"ingest": ingest, "query": query}
        for service, method, path in operations or every_operation(stack):
            answer = clients[service].request(method, path)
            expected = 403 if path.startswith("/open311/") else 401
            if answer.status_code != expected:
                wrong.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
    return wrong


def test_every_operation_is_listed(stack: RunningStack) -> None:
    paths = {path for _, _, path in every_operation(stack)}
    assert {"/v1/events", "/v1/events/batch", "/v1/commands", "/v1/live"} <= paths
    assert len(paths) >= 20


def test_a_forged_or_stale_token_is_refused_on_every_operation(stack: RunningStack) -> None:
    operations = every_operation(stack)
    found = {name: refused_everywhere(stack, token, operations)
             for name, token in forgeries(stack.settings, ["*"]).items()}
    assert found == {name: [] for name in found}


def read_all(stack: RunningStack, objects: Objects, token: str) -> dict[str, int]:
    with stack.query(token) as api:
        return {name: api.get(path(objects)).status_code for name, path, _, _ in READS}


def test_a_token_of_the_previous_key_is_accepted_until_it_is_retired(
        stack: RunningStack, objects: Objects) -> None:
    previous = stack.settings.model_copy(update={"token_keys": f"2026-10:{PREVIOUS}"})
    old = auth.issue(previous, sub=f"admin-{uuid.uuid4().hex[:8]}", role=Role.admin,
                     scope=["*"])
    assert jwt.get_unverified_header(old)["kid"] == "2026-10"
    assert set(read_all(stack, objects, old).values()) == {200}
    # retired: the ring no longer names it (the forgeries' "retired key" on the live stack)
    retired = stack.settings.model_copy(update={"token_keys": f"2026-11:{CURRENT}"})
    with pytest.raises(Unauthenticated, match="retired"):
        auth.verify(retired, old)


def gridgov(stack: RunningStack, *args: str) -> str:
    """The `gridgov` command as an administrator runs it against this stack."""
    env = {**stack.env, "GRIDGOV_DATABASE_URL": stack.info["database_url"],
           "GRIDGOV_KAFKA_BOOTSTRAP": stack.info["kafka_bootstrap"]}
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def archived(stack: RunningStack, event_type: str, aggregate_id: str) -> bool:
    return bool(stack.sql("select 1 from archive where event_type = %s and aggregate_id = %s",
                          event_type, aggregate_id))


def publishes(stack: RunningStack, token: str, grid: str) -> int:
    with stack.ingest(token) as phone:
        return phone.post("/v1/events", json=an_incident(grid)).status_code


def test_a_revoked_device_then_a_revoked_user_is_refused_on_every_operation(
        stack: RunningStack) -> None:
    grid, person = a_place(), f"w-{uuid.uuid4().hex[:8]}"
    lost, other = f"phone-{uuid.uuid4().hex[:6]}", f"phone-{uuid.uuid4().hex[:6]}"
    on_lost = gridgov(stack, "token", "issue", "--role", "worker", "--place", grid,
                      "--sub", person, "--device", lost)
    on_other = auth.issue(stack.settings, sub=person, role=Role.worker, scope=[grid],
                          device=other)
    assert publishes(stack, on_lost, grid) == publishes(stack, on_other, grid) == 201
    wait_until(lambda: archived(stack, "audit.token_issued", f"user:{person}"),
               what="the issuance in the archive")

    gridgov(stack, "token", "revoke", "--device", lost, "--reason", "手机遗失")
    wait_until(lambda: publishes(stack, on_lost, grid) == 401,
               timeout=stack.settings.revocations_refresh_seconds + 5, what="the device refused")
    assert refused_everywhere(stack, on_lost) == []
    assert publishes(stack, on_other, grid) == 201  # the person's other phone still works
    wait_until(lambda: archived(stack, "audit.token_revoked", f"device:{lost}"),
               what="the device's revocation in the archive")

    gridgov(stack, "token", "revoke", "--user", person, "--reason", "调离岗位")
    wait_until(lambda: publishes(stack, on_other, grid) == 401,
               timeout=stack.settings.revocations_refresh_seconds + 5, what="the user refused")
    assert refused_everywhere(stack, on_other) == []
    assert publishes(stack, stack.token(Role.worker, grid), grid) == 201  # others unaffected


def test_a_subject_past_its_rate_gets_429_with_retry_after_then_is_served_again(
        stack: RunningStack, objects: Objects) -> None:
    token = stack.token(Role.supervisor, objects.county)
    path = f"/v1/incidents?place={objects.grid}"
    with stack.query(token) as api:
        answers = [api.get(path) for _ in range(BURST + 10)]
        limited = next(a for a in answers if a.status_code == 429)
        assert all(a.status_code == 200 for a in answers[:answers.index(limited)])
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"] == "too_many_requests"
        assert limited.json()["errors"][0]["field"] == "authorization"
        wait_until(lambda: api.get(path).status_code == 200, timeout=10,
                   what="the bucket to refill")
    with stack.query(stack.token(Role.supervisor, objects.county)) as api:
        assert api.get(path).status_code == 200  # another subject was never limited
