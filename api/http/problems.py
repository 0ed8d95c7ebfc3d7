"""Every error as application/problem+json (RFC 9457): status, stable code, field, message."""

from typing import Any

import psycopg
from eventsourcing import persistence
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.http.deps import Forbidden, NotCaughtUp, Unauthorized
from api.http.metrics import METRICS
from api.http.schemas import DATE_FORMAT
from domain.errors import (
    Conflict,
    HarborError,
    InvalidInput,
    NotFound,
    RuleRefused,
    StaleVersion,
    Unavailable,
)

PROBLEM = "application/problem+json"
# The domain names the command's arguments; over HTTP the client sent these headers.
HEADER_FIELDS = {"expected_version": "If-Match", "idempotency_key": "Idempotency-Key"}


def status_of(error: HarborError) -> int:
    """The HTTP status a refusal maps to."""
    if isinstance(error, Unauthorized):
        return 401
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, NotFound):
        return 404 if error.field in (None, "member_id", "case_id", "unit_id") else 422
    if isinstance(error, InvalidInput):
        return 422
    if isinstance(error, RuleRefused | Conflict):
        return 409
    if isinstance(error, Unavailable | NotCaughtUp):
        return 503
    return 400


def problem(
    status: int,
    code: str,
    detail: str,
    field: str | None,
    instance: str,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """One problem document."""
    body = {
        "type": f"urn:harbor:problem:{code}",
        "title": code.replace("_", " ").lower(),
        "status": status,
        "code": code,
        "detail": detail,
        "field": field,
        "instance": instance,
        **(extra or {}),
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers (routes contain no try/except)."""

    @app.exception_handler(HarborError)
    async def refused(request: Request, error: HarborError) -> JSONResponse:
        METRICS.refusal(error.code)
        field = HEADER_FIELDS.get(error.field or "", error.field)
        # A stale version names the one the member is at: decide again on it, no re-read.
        extra = (
            {"current_version": error.current_version}
            if isinstance(error, StaleVersion) and error.current_version is not None
            else None
        )
        return problem(status_of(error), error.code, error.message, field, request.url.path, extra)

    async def unreachable(request: Request, error: Exception) -> JSONResponse:
        # A read that could not reach the store (a command's append says so itself, as
        # Unavailable): the server restarting or gone. Retrying later is all a client
        # can do, so it is told to, rather than given a 500.
        code = Unavailable.default_code
        METRICS.refusal(code)
        detail = f"the event store could not be reached ({error.__class__.__name__}); retry"
        return problem(503, code, detail, None, request.url.path)

    for lost in (
        persistence.OperationalError,
        persistence.InterfaceError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
    ):
        app.add_exception_handler(lost, unreachable)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        location = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(
            location[1:] if location and location[0] in ("query", "path", "header") else location
        )
        METRICS.refusal("INVALID_INPUT")
        if first.get("type") == "json_invalid" or first.get("msg") == "JSON decode error":
            # The location is a character offset, not a field.
            return problem(
                422, "INVALID_INPUT", "the body is not valid JSON (UTF-8)", None, request.url.path
            )
        # A date's own message reads after its name: "on must be a date YYYY-MM-DD (got …)".
        joint = " " if first.get("type") == DATE_FORMAT else ": "
        return problem(
            422,
            "INVALID_INPUT",
            f"{field or 'request'}{joint}{first.get('msg', 'invalid')}",
            field or None,
            request.url.path,
            {
                "errors": [
                    {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg")}
                    for e in error.errors()[:20]
                ]
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # a body that cannot even be decoded
            METRICS.refusal("INVALID_INPUT")
            return problem(
                422,
                "INVALID_INPUT",
                f"the body could not be read: {error.detail}",
                None,
                request.url.path,
            )
        code = {
            404: "NOT_FOUND",
            405: "METHOD_NOT_ALLOWED",
            413: "BODY_TOO_LARGE",
            401: "UNAUTHORIZED",
            403: "FORBIDDEN",
        }.get(error.status_code, "HTTP_ERROR")
        return problem(error.status_code, code, str(error.detail), None, request.url.path)
