"""The busiest routes, run without FastAPI's per-request machinery.

FastAPI 0.16x works out, on every request, how to read each parameter and
dependency of a route from its type annotations: measured in process, a member's
status spent about a third of the event loop's time per request there, and a
command about a fifth (bench/README.md, "HTTP"). The event loop is what limits
the server, so the routes every clerk calls all day — the member and case
commands, enrolment, inquiries and a member's status — are still declared as
usual (their signatures make the OpenAPI document, and nothing else reads them),
but each runs a handler written for it (``LeanRoute``) that does the same work
directly: the body read as FastAPI reads it, the caller admitted by the same
dependency function, path, query and body values validated by the same pydantic
types, and failures raised as the same ``RequestValidationError``, in the same
order (an undecodable body, then the dependencies, then every invalid value at
once), so a client sees the same answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette._exception_handler import _lookup_exception_handler
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http.schemas import Day

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Errors = list[dict[str, Any]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def run_by(lean: Handler) -> Callable[[Endpoint], Endpoint]:
    """Give an endpoint the handler its ``LeanRoute`` runs (before the route is made)."""

    def attach(endpoint: Endpoint) -> Endpoint:
        endpoint.lean = lean  # type: ignore[attr-defined]
        return endpoint

    return attach


class LeanRoute(APIRoute):
    """A route documented by its endpoint's signature and run by the endpoint's ``lean``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any):
        """As APIRoute; also notes the literal text a matching path starts and ends with."""
        super().__init__(path, endpoint, **kwargs)
        self.lean: Handler | None = getattr(endpoint, "lean", None)
        self._starts = self.path.partition("{")[0]
        self._ends = self.path.rpartition("}")[2] if "}" in self.path else self.path

    def get_route_handler(self) -> Handler:
        """The endpoint's own handler, when it has one."""
        handler: Handler | None = getattr(self.endpoint, "lean", None)
        return handler if handler is not None else super().get_route_handler()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """As APIRoute, with paths that cannot match turned away first.

        The router tries its routes in turn, and a try through FastAPI costs a few
        microseconds; these routes come first, so every request tries some of them.
        A path parameter never spans a ``/``, so a matching path starts and ends with
        the route's literal text.
        """
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and not scope.get("root_path")  # else the path to match is only part of it
            and not (path.startswith(self._starts) and path.endswith(self._ends))
        ):
            return Match.NONE, {}
        return super().matches(scope)


class LeanDispatch:
    """Runs a lean route straight from the Guard, past the layers below it.

    Below the Guard a request passes Starlette's ExceptionMiddleware, FastAPI's exit
    stacks, the router and the route's own wrapper (another exit stack pair and
    exception wrapper) before the handler: about 7 % of the event loop's time under
    load, for nothing a lean handler uses. Here a request that a lean route matches
    in full is handed to that route's handler directly, and an exception it raises is
    answered by the handler ExceptionMiddleware would have chosen (the app's
    registered handlers, by status for an HTTPException, else by the exception's
    class). Anything else — another route, a partial match (wrong method), an app
    whose layers are not as expected — goes down the usual way.
    """

    def __init__(self, below: ASGIApp):
        """``below``: the app under the Guard (its ExceptionMiddleware, once built)."""
        self.routes: list[LeanRoute] = []
        self.handlers: tuple[dict[Any, Any], dict[int, Any]] | None = None
        node: Any = below
        while node is not None and not isinstance(node, Router):
            if isinstance(node, ExceptionMiddleware):
                self.handlers = (node._exception_handlers, node._status_handlers)
            node = getattr(node, "app", None)
        if node is not None and self.handlers is not None:
            for route in node.routes:
                if not isinstance(route, LeanRoute):
                    break  # the lean routes come first (app.py sorts them so)
                if route.lean is not None:
                    self.routes.append(route)

    def match(self, scope: Scope) -> LeanRoute | None:
        """The lean route matching ``scope`` in full (its path parameters put in scope)."""
        for route in self.routes:
            found, child = route.matches(scope)
            if found is Match.FULL:
                scope.update(child)
                return route
            if found is Match.PARTIAL:
                return None  # the router answers 405 (or finds the route elsewhere)
        return None

    async def run(self, route: LeanRoute, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request with ``route``'s lean handler."""
        assert route.lean is not None and self.handlers is not None
        request = Request(scope, receive, send)
        try:
            response = await route.lean(request)
        except Exception as exc:
            exception_handlers, status_handlers = self.handlers
            handler: Any = None
            if isinstance(exc, HTTPException):
                handler = status_handlers.get(exc.status_code)
            if handler is None:
                handler = _lookup_exception_handler(exception_handlers, exc)
            if handler is None:
                raise
            if is_async_callable(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)


class _Missing:
    """No body at all (distinct from a JSON null)."""


MISSING = _Missing()

_UUID: TypeAdapter[UUID] = TypeAdapter(UUID)
_DATE: TypeAdapter[date | None] = TypeAdapter(Day | None)  # type: ignore[arg-type]
_POSITION: TypeAdapter[int | None] = TypeAdapter(
    Annotated[int, Field(ge=0, le=2**62)] | None  # type: ignore[arg-type]
)


async def json_body(request: Request) -> Any:
    """The body as FastAPI reads it for a JSON body parameter (JSON only when declared so)."""
    try:
        raw = await request.body()
        if not raw:
            return MISSING
        content_type = request.headers.get("content-type")
        if not content_type or not _is_json(content_type):
            return raw  # validation then says it is not an object, as FastAPI does
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", e.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.msg},
                }
            ],
            body=e.doc,
        ) from e
    except HTTPException:
        raise
    except Exception as e:  # not UTF-8, or the client went away mid-body
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e


def _is_json(content_type: str) -> bool:
    kind = content_type.partition(";")[0].strip().lower()
    major, _, minor = kind.partition("/")
    return major == "application" and (minor == "json" or minor.endswith("+json"))


def body_as(model: type[BaseModel], data: Any, errors: Errors) -> Any:
    """The body validated as ``model`` (None, with the errors noted, if it is not one)."""
    if data is MISSING and all_optional(model):
        return model()  # as FastAPI's Body(default_factory=model) (routes/commands.py)
    if data is MISSING:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required", "input": None})
        return None
    try:
        return model.model_validate(data, from_attributes=True)  # as FastAPI validates
    except ValidationError as e:
        errors.extend(_located(e, ("body",)))
        return None


def all_optional(model: type[BaseModel]) -> bool:
    """Whether ``model`` has no required field, so that no body at all means ``{}``."""
    return not any(field.is_required() for field in model.model_fields.values())


def path_uuid(request: Request, name: str, errors: Errors) -> Any:
    """A path parameter as a UUID (None, with the errors noted, if it is not one)."""
    return _validated(_UUID, request.path_params.get(name), ("path", name), errors)


def query_date(request: Request, name: str, errors: Errors) -> Any:
    """An optional query parameter as a date."""
    return _validated(_DATE, request.query_params.get(name), ("query", name), errors)


def query_position(request: Request, name: str, errors: Errors) -> Any:
    """An optional query parameter as a log position (0 … 2**62)."""
    return _validated(_POSITION, request.query_params.get(name), ("query", name), errors)


def raise_if_invalid(errors: Errors, body: Any = None) -> None:
    """Refuse the request with every invalid value at once, as FastAPI does."""
    if errors:
        raise RequestValidationError(errors, body=None if body is MISSING else body)


def _validated(adapter: TypeAdapter[Any], value: Any, loc: tuple[str, ...], errors: Errors) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as e:
        errors.extend(_located(e, loc))
        return None


def _located(error: ValidationError, prefix: tuple[Any, ...]) -> Errors:
    located: Errors = []
    for found in error.errors(include_url=False):
        loc = tuple(found.get("loc", ()))
        # A scalar's own location is the parameter; a model's fields go below the body.
        located.append({**found, "loc": prefix + loc if prefix == ("body",) else prefix})
    return located
