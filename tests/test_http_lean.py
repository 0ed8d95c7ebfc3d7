"""The lean routes (api/http/lean.py) refuse exactly as FastAPI's own handler does.

Each busy route runs a handler of its own instead of FastAPI's. Here every one of
them and FastAPI's handler for the same route are given the same bad requests,
and must fail the same way: the same exception, and for a validation failure the
same errors (type and location) in the same order. Successful commands through
the lean routes are covered by tests/test_http_api.py like every other route.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any
from uuid import uuid4

import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match

from api.http.app import create_app
from api.http.lean import LeanRoute
from domain.errors import HarborError
from domain.registry import Actor, Registry
from projections.runner import Projector
from store.tokens import Credential
from tests.conftest import TODAY
from tests.support import register_article_units

MEMBER = str(uuid4())
CASE = str(uuid4())
UNIT = Credential("t1", "sh-center", "unit", "clerk", None)
AUDITOR = Credential("t2", "sh-center", "auditor", "auditor", None)
JSON = "application/json"


@dataclass(frozen=True)
class Call:
    """One request as a route handler receives it."""

    body: bytes
    content_type: str | None = JSON
    credential: Credential = UNIT
    member_id: str = MEMBER
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "POST"
    query: str = ""


@pytest.fixture
def app(registry: Registry) -> Iterator[FastAPI]:
    yield create_app(registry, follow=False)


def _lean_routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, LeanRoute)]


def _outcome(route: APIRoute, handler: Any, app: FastAPI, call: Call) -> tuple[Any, ...]:
    """What the handler did: its exception, or its response's status (nothing stored)."""
    headers = [(b"authorization", b"Bearer x")]
    if call.content_type is not None:
        headers.append((b"content-type", call.content_type.encode()))
    headers += [(k.encode(), v.encode()) for k, v in call.headers]
    params = {name: (MEMBER if name == "member_id" else CASE) for name in route.param_convertors}
    if "member_id" in params:
        params["member_id"] = call.member_id

    async def run() -> tuple[Any, ...]:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": call.body, "more_body": False}

        async with AsyncExitStack() as outer, AsyncExitStack() as inner:
            scope = {
                "type": "http",
                "method": call.method,
                "path": route.path,
                "headers": headers,
                "query_string": call.query.encode(),
                "app": app,
                "route": route,  # as the router puts it in scope
                "path_params": params,
                "state": {"credential": call.credential},
                "fastapi_middleware_astack": outer,
                "fastapi_inner_astack": inner,
                "fastapi_function_astack": inner,
            }
            try:
                response = await handler(Request(scope, receive))
            except RequestValidationError as e:
                return ("invalid", [(x["type"], tuple(x["loc"])) for x in e.errors()])
            except HarborError as e:
                return ("refused", e.code, e.field)
            except HTTPException as e:
                return ("http", e.status_code)
            return ("answered", response.status_code, json.loads(bytes(response.body)))

    return asyncio.run(run())


BAD_CALLS = {
    "undecodable JSON": Call(b'{"channel": '),
    "not UTF-8": Call(b'{"a": "\xff\xfe"}'),
    "a text body": Call(b"hello", content_type="text/plain"),
    "no content type": Call(b"{}", content_type=None),
    "an empty body": Call(b""),
    "JSON null": Call(b"null"),
    "a list": Call(b"[1, 2]"),
    "an unknown field": Call(b'{"colour": "red"}'),
    "a field of the wrong type": Call(b'{"occurred_on": "not a date"}'),
    "a bad member id and a bad body": Call(b'{"occurred_on": 5}', member_id="no-uuid"),
    "the wrong role with a bad body": Call(b'{"x": 1}', credential=AUDITOR),
    "the wrong role with undecodable JSON": Call(b"{", credential=AUDITOR),
    "a bad If-Match": Call(b"{}", headers=(("if-match", "v1"),)),
    "a long Idempotency-Key": Call(b"{}", headers=(("idempotency-key", "k" * 201),)),
    "JSON with a charset": Call(b'{"colour": 1}', content_type="application/json; charset=utf-8"),
    "JSON by suffix": Call(b'{"colour": 1}', content_type="application/merge-patch+json"),
}


def test_every_busy_command_route_is_lean(app: FastAPI) -> None:
    lean = {(r.path, *sorted(r.methods)) for r in _lean_routes(app)}

    assert ("/members", "POST") in lean
    assert ("/members/{member_id}/inquiries", "POST") in lean
    assert ("/members/{member_id}/cases/{case_id}/letters", "POST") in lean
    assert ("/members/{member_id}/dues", "POST") in lean
    assert ("/members/{member_id}", "GET") in lean
    assert len(lean) == 1 + 2 + 18 + 6


STATUS_CALLS = {
    "nothing wrong": Call(b""),
    "a bad member id": Call(b"", member_id="x"),
    "a bad date": Call(b"", query="on=yesterday"),
    "a bad position": Call(b"", query="min_position=-1"),
    "a position beyond the log": Call(b"", query="min_position=99999"),
    "everything wrong": Call(b"", member_id="x", query="on=1&min_position=a"),
    "an auditor with a bad id": Call(b"", member_id="x", credential=AUDITOR),
    "unknown parameters": Call(b"", query="colour=red"),
}


@pytest.mark.parametrize("name", sorted(STATUS_CALLS))
def test_the_lean_status_route_answers_as_fastapi_does(
    app: FastAPI, registry: Registry, name: str
) -> None:
    register_article_units(registry)
    enrolled = registry.enrol_member(
        Actor("sh-residence-center", "clerk"),
        name="刘洋",
        id_number="110101199001010011",
        standing="full",
        household_region="上海",
        occurred_on=TODAY,
    )
    Projector(registry).catch_up()
    (route,) = [r for r in _lean_routes(app) if "GET" in r.methods]
    call = STATUS_CALLS[name]
    if call.member_id == MEMBER:
        call = replace(call, member_id=str(enrolled.member_id))
    call = replace(
        call, method="GET", credential=replace(call.credential, unit_id="sh-residence-center")
    )

    lean = _outcome(route, route.endpoint.lean, app, call)  # type: ignore[attr-defined]
    fastapi = _outcome(route, APIRoute.get_route_handler(route), app, call)

    assert lean == fastapi
    if name == "nothing wrong":
        assert lean[:2] == ("answered", 200) and lean[2]["holder_unit_id"] == "sh-residence-center"


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_a_lean_route_refuses_as_fastapi_does(app: FastAPI, name: str) -> None:
    call = BAD_CALLS[name]
    for route in _lean_routes(app):
        lean = _outcome(route, route.endpoint.lean, app, call)  # type: ignore[attr-defined]
        fastapi = _outcome(route, APIRoute.get_route_handler(route), app, call)

        assert lean == fastapi, (route.path, lean, fastapi)
        assert lean[0] != "answered", (route.path, lean)


def test_a_bad_path_id_is_named_before_any_field_of_the_body(app: FastAPI) -> None:
    for route in _lean_routes(app):
        if "member_id" not in route.param_convertors:
            continue
        call = Call(b'{"occurred_on": "2026-11-01"}', member_id="42")
        lean = _outcome(route, route.endpoint.lean, app, call)  # type: ignore[attr-defined]
        fastapi = _outcome(route, APIRoute.get_route_handler(route), app, call)

        assert lean == fastapi, (route.path, lean, fastapi)
        assert lean[0] == "invalid" and lean[1][0] == ("uuid_parsing", ("path", "member_id"))


def test_every_route_is_still_the_one_its_path_reaches(app: FastAPI) -> None:
    """The app orders its routes by traffic; no route may shadow another."""
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        path = re.sub(r"{[^}]+}", "0b7f3c1e-5d2a-4e8b-9c6f-1a2b3c4d5e6f", route.path)
        for method in route.methods:
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            first = next(r for r in app.routes if r.matches(scope)[0] is Match.FULL)

            assert first is route, (method, route.path, getattr(first, "path", first))


def test_the_busiest_routes_are_tried_first(app: FastAPI) -> None:
    ranked = [r for r in app.routes if isinstance(r, APIRoute)]

    assert (ranked[0].path, ranked[0].methods) == ("/members/{member_id}", {"GET"})
    assert all(isinstance(r, LeanRoute) for r in ranked[:27])


def test_a_lean_route_turns_away_only_paths_it_could_not_match(app: FastAPI) -> None:
    samples = [
        re.sub(r"{[^}]+}", "0b7f3c1e-5d2a-4e8b-9c6f-1a2b3c4d5e6f", r.path)
        for r in app.routes
        if isinstance(r, APIRoute)
    ]
    samples += ["/", "/members/", "/members/x/", "/members/x/cases/y/", "/nowhere", "//members/x"]
    for route in _lean_routes(app):
        for path in samples:
            for method in ("GET", "POST"):
                for root in ("", "/harbor"):
                    scope = {
                        "type": "http",
                        "method": method,
                        "root_path": root,
                        "path": root + path,
                    }

                    assert route.matches(scope)[0] == APIRoute.matches(route, scope)[0], (
                        route.path,
                        method,
                        root + path,
                    )


def test_a_client_gone_mid_body_is_refused_alike(app: FastAPI) -> None:
    from starlette.requests import ClientDisconnect

    async def gone() -> dict[str, Any]:
        raise ClientDisconnect()

    route = next(r for r in _lean_routes(app) if "POST" in r.methods)
    outcomes = []
    for handler in (route.endpoint.lean, APIRoute.get_route_handler(route)):  # type: ignore[attr-defined]
        scope = {
            "type": "http",
            "method": "POST",
            "path": route.path,
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "app": app,
            "path_params": {n: MEMBER for n in route.param_convertors},
            "state": {"credential": UNIT},
        }

        async def run(handler: Any = handler, scope: dict[str, Any] = scope) -> tuple[Any, ...]:
            async with AsyncExitStack() as stack:
                scope.update(
                    fastapi_middleware_astack=stack,
                    fastapi_inner_astack=stack,
                    fastapi_function_astack=stack,
                )
                try:
                    await handler(Request(scope, gone))
                except HTTPException as e:
                    return ("http", e.status_code)
            return ("answered",)

        outcomes.append(asyncio.run(run()))

    assert outcomes == [("http", 400), ("http", 400)]


def test_the_guard_hands_lean_requests_to_their_route_and_the_rest_to_the_router(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the app, when a lean route's request comes (answered or refused), then the
    router never sees it; another route's request, or a lean path with the wrong method,
    goes down the usual way (and a 405 stays a 405)."""
    from fastapi.testclient import TestClient
    from starlette.routing import Router

    register_article_units(registry)
    app = create_app(registry, follow=False)
    routed: list[str] = []
    original = Router.__call__

    async def counting(self: Router, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            routed.append(f"{scope['method']} {scope['path']}")
        await original(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counting)
    token = app.state.tokens.issue("sh-residence-center", "unit", "clerk")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        enrolled = client.post("/members", headers=auth, json={
            "name": "党员甲", "id_number": "310109195001010011", "standing": "full",
            "household_region": "上海", "occurred_on": "2020-01-01"})
        assert enrolled.status_code == 201, enrolled.text
        member = enrolled.json()["member_id"]
        refused = client.post(f"/members/{member}/inquiries", headers=auth, json={"x": 1})
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/problem+json")
        unknown = client.get(f"/members/{uuid4()}", headers=auth)
        assert unknown.status_code == 404 and unknown.json()["code"]
        assert routed == []
        assert client.get("/units/sh-residence-center/queue", headers=auth).status_code == 200
        assert client.put("/members", headers=auth, json={}).status_code == 405
    assert routed == ["GET /units/sh-residence-center/queue", "PUT /members"]
