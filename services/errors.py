"""Domain errors with stable codes, mapped to HTTP once, here at the edge."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response


class Refused(Exception):
    """A request we will not carry out; `status` and `code` say why, per field."""

    status = 400
    code = "bad_request"

    def __init__(self, field: str, reason: str, errors: list[dict[str, str]] | None = None):
        super().__init__(f"{field}: {reason}")
        self.errors = errors or [{"field": field, "reason": reason}]


class Malformed(Refused):
    status, code = 400, "malformed"


class Unauthenticated(Refused):
    status, code = 401, "unauthenticated"


class Forbidden(Refused):
    status, code = 403, "forbidden"


class ScopeViolation(Forbidden):
    code = "scope_violation"


class NotFound(Refused):
    status, code = 404, "not_found"


class TooLarge(Refused):
    status, code = 413, "too_large"


class Invalid(Refused):
    status, code = 422, "invalid"


class IdConflict(Invalid):
    code = "event_id_conflict"


class Unavailable(Refused):
    status, code = 503, "unavailable"


def error_body(code: str, errors: list[dict[str, str]]) -> bytes:
    return orjson.dumps({"error": code, "errors": errors})


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def install(app: FastAPI) -> None:
    """Every refusal, framework ones included, answers the same JSON shape."""

    async def refused(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)  # noqa: S101 - registered for Refused only
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.status == 503:
            headers["Retry-After"] = "2"
        return Response(error_body(exc.code, exc.errors), exc.status, headers,
                        media_type="application/json")

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]}
            for e in exc.errors()
        ]
        return Response(error_body("invalid", errors), 422, media_type="application/json")

    async def http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101
        return Response(error_body(f"http_{exc.status_code}",
                                   [{"field": "path", "reason": str(exc.detail)}]),
                        exc.status_code, exc.headers, media_type="application/json")

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http)
