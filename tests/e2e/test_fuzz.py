"""Schemathesis against both services' OpenAPI documents: no 5xx, nothing off the schema.

A bounded run in `make test` (GRIDGOV_FUZZ_EXAMPLES, default 15 per operation); `make fuzz`
runs many more. The operations are driven with hypothesis directly: schemathesis's pytest
plugin does not run under pytest 9 (it reads a private attribute pytest removed).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from schemathesis import openapi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from events.envelope import Role
from tests.stack import RunningStack

EXAMPLES = int(os.environ.get("GRIDGOV_FUZZ_EXAMPLES", "15"))
ENDLESS = {"/v1/live"}  # an event stream never ends: the dashboard's browser test covers it
# Every other check runs. This one expects every schema-valid request to be accepted, but
# some rules span fields (`from` needs `to`; `min_offsets` names real partitions) and are
# answered 422 naming the field, which is what the API promises.


def operations(url: str) -> list[Any]:
    found = [result.ok() for result in openapi.from_url(url).get_all_operations()]
    return [op for op in found if op.path not in ENDLESS]


def fuzz(operation: Any, token: str) -> list[str]:
    """Every failure schemathesis finds for one operation, as text."""
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy())
    def check(case: Any) -> None:
        try:
            case.call_and_validate(headers={"authorization": f"Bearer {token}"},
                                   excluded_checks=[positive_data_acceptance])
        except Exception as failure:  # noqa: BLE001 - every check failure is collected
            failures.append(f"{operation.method.upper()} {operation.path}: {failure}"[:2000])

    check()
    return failures


#: who drives each service: an admin reaches erasures, a grid chief the break-glass reads
#: (`reveal=personal&reason=`) past the role check, a worker every write
CALLERS = {"query as admin": ("query", Role.admin, "*"),
           "query as grid_chief": ("query", Role.grid_chief, "*"),
           "ingest as worker": ("ingest", Role.worker, "430382")}


@pytest.mark.parametrize("caller", list(CALLERS))
def test_no_operation_fails_or_leaves_its_schema(stack: RunningStack, caller: str) -> None:
    service, role, scope = CALLERS[caller]
    token = stack.token(role, scope, sub=f"{role.value}-fuzz")
    found = operations(stack.info[f"{service}_url"] + "/openapi.json")
    assert len(found) >= 5
    failures = [f for operation in found for f in fuzz(operation, token)]
    assert not failures, "\n\n".join(failures[:10])
