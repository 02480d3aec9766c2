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
    retry_after: int | None = None  # seconds, sent as Retry-After

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


class SlowRequest(Refused):
    status, code = 408, "request_timeout"


class Invalid(Refused):
    status, code = 422, "invalid"


class IdConflict(Invalid):
    code = "event_id_conflict"


class TooManyRequests(Refused):
    status, code = 429, "too_many_requests"

    def __init__(self, field: str, reason: str, retry_after: int) -> None:
        super().__init__(field, reason)
        self.retry_after = retry_after


class Unavailable(Refused):
    status, code, retry_after = 503, "unavailable", 2


def error_body(code: str, errors: list[dict[str, str]]) -> bytes:
    return orjson.dumps({"error": code, "errors": errors})


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


WHERE = ("query", "path", "header", "cookie", "body")  # FastAPI's first element of a field


def install(app: FastAPI) -> None:
    """Every refusal, framework ones included, answers the same JSON shape."""

    async def refused(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)  # noqa: S101 - registered for Refused only
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return Response(error_body(exc.code, exc.errors), exc.status, headers,
                        media_type="application/json")

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        errors = [  # named as the client wrote them: `place`, not `query.place`
            {"field": ".".join(str(p) for p in e["loc"][1:] if e["loc"][0] in WHERE)
             or ".".join(str(p) for p in e["loc"]), "reason": e["msg"]}
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
    document(app)


REFUSAL = {
    "type": "object", "required": ["error", "errors"],
    "properties": {
        "error": {"type": "string", "description": "a stable code"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "reason"],
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}
REFUSALS = {
    "400": "Malformed: not JSON, not UTF-8, not an object",
    "401": "No valid token (WWW-Authenticate: Bearer)",
    "403": "The role may not, or the place is outside the token's scope",
    "404": "No such thing in your scope",
    "405": "Method not allowed",
    "408": "The body did not arrive in time",
    "409": "Refused by a decision's invariant, or not caught up yet (min_offsets)",
    "413": "Body too large",
    "422": "Invalid: every field at fault, with the reason",
    "429": "Too many requests for this token (Retry-After)",
    "503": "The log or the database is unavailable (Retry-After)",
}


OPEN311_ERRORS = {"type": "array", "items": {
    "type": "object", "required": ["code", "description"],
    "properties": {"code": {"type": "integer"}, "description": {"type": "string"}}}}
#: a decision not in yet: commands answer 202 with where to ask again
PENDING: dict[int | str, dict[str, Any]] = {202: {
    "description": "Not decided yet: ask again at status_url", "content": {
    "application/json": {"schema": {"type": "object", "properties": {
        "command_id": {"type": "string"}, "status": {"const": "pending"},
        "status_url": {"type": "string"}}}}}}}


def document(app: FastAPI) -> None:
    """Every refusal in the OpenAPI document, in the shape it really has (not FastAPI's)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Refusal"] = REFUSAL
        schema["components"]["schemas"]["Open311Errors"] = OPEN311_ERRORS
        ours = {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Refusal"}}}}
        open311 = {"content": {  # the GeoReport v2 shape, in the format the path asked for
            "application/json": {"schema": {"$ref": "#/components/schemas/Open311Errors"}},
            "text/xml": {"schema": {"type": "string"}}}}
        for path, operations in schema["paths"].items():
            refusal = open311 if path.startswith("/open311/") else ours
            for operation in operations.values():
                answers = operation.setdefault("responses", {})
                for code, text in REFUSALS.items():
                    answers[code] = {"description": text, **refusal}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
