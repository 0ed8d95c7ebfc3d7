"""The HTTP application: routers, error handling, limits, and the projection follower."""

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Response
from fastapi.telemetry import TelemetryConfig
from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http import docs, pages, problems, schemas
from api.http.deps import check_token, check_token_now
from api.http.lean import LeanDispatch, LeanRoute
from api.http.metrics import METRICS
from api.http.on_loop import offload
from api.http.read_members import ReadMembers
from api.http.routes import commands, ops, reads
from audit.config import AuditConfig
from audit.sealer import BackgroundSealer, Sealer
from domain.errors import HarborError
from domain.registry import Registry
from projections.queries import ReadModels
from projections.runner import Projector
from store.async_reads import AsyncReads
from store.collection import freeze_long_lived
from store.lease import lease_for
from store.recorders import PostgresRecorder
from store.sql import Db
from store.tokens import TokenStore

MAX_BODY = 64 * 1024
DEFAULT_THREADS = 40  # anyio's default; harbor serve passes --threads
log = logging.getLogger(__name__)

DESCRIPTION = """
Harbor records every action on a party member's organisational relationship
(党员组织关系) as an immutable event, and answers from projections of that log:
who holds a member now, what waits for each unit, which unit answered first and
whether it saw the case through.

Every command is made **as the calling unit** (from the bearer token); the body
carries only the event's own fields. Refusals are `application/problem+json`
with a stable `code` and the offending `field`. Send `Idempotency-Key` to make a
command repeat-safe and `If-Match: <version>` to refuse it if the member moved.
Every query takes `min_position` to read your own writes.
"""


def create_app(
    registry: Registry,
    *,
    follow: bool = True,
    threads: int | None = None,
    seal: bool = False,
    warm: bool = False,
) -> FastAPI:
    """The FastAPI app over ``registry``; with ``follow`` it keeps projections current.

    With ``warm`` the recently active members are loaded into the registry's cache in
    the background at start (``GET /healthz`` says when that is done), so the first
    command on each of them needs no read.

    Commands are decided on the event loop (api/http/on_loop.py). ``threads`` sizes the
    two thread pools behind it, each to the same size: the loop's executor, where a
    command's reads (and, without group commit, its commit) wait, and anyio's worker
    threads, which run the other blocking work: the queries (all but a member's status
    on PostgreSQL, awaited on the loop), the ``min_position`` waits and the token checks
    not answered from memory. With ``seal`` (and a signing key at start, see
    docs/audit.md) a tree head is signed every HARBOR_SEAL_EVERY_EVENTS events or
    HARBOR_SEAL_EVERY_MINUTES minutes, and once more when the app stops.
    """
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Commands' reads run in the loop's executor (api/http/on_loop.py), the other
        # blocking routes in anyio's threads: both get the same size.
        size = threads or DEFAULT_THREADS
        anyio.to_thread.current_default_thread_limiter().total_tokens = size
        executor = ThreadPoolExecutor(size, thread_name_prefix="harbor-request")
        asyncio.get_running_loop().set_default_executor(executor)
        follower = None
        if follow:
            projector = Projector(registry)
            follower = threading.Thread(
                target=projector.follow,
                args=(stop,),
                kwargs={"poll_seconds": 0.05, "lease": lease_for(registry)},
                daemon=True,
                name="harbor-projections",
            )
            follower.start()
        if warm:
            threading.Thread(
                target=_warm, args=(app, registry), daemon=True, name="harbor-warm-cache"
            ).start()
        sealer = _start_sealer(registry) if seal else None
        reads = _async_reads(registry)
        if reads is not None:
            await reads.open()
            app.state.async_reads = reads
        try:
            yield
        finally:
            # A follower process (harbor serve's) whose child exits now is not restarted.
            winding_down = getattr(app.state.follower, "winding_down", None)
            if winding_down is not None:
                winding_down()
            if reads is not None:
                app.state.async_reads = None
                await reads.close()
            stop.set()
            if sealer is not None:
                sealer.stop(final_seal=True)
            if follower is not None:
                follower.join(timeout=10)
            executor.shutdown(wait=True)

    app = FastAPI(
        title="Harbor",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=schemas.problem_responses(),
        telemetry=None if _otel_wanted() else NO_TELEMETRY,
        # FastAPI's own pages load their assets from CDNs, out of reach on networks with
        # no internet: docs.install serves the same pages with Harbor's own copies.
        docs_url=None,
        redoc_url=None,
    )
    app.state.registry = registry
    registry.blocking = offload  # commands run on the loop (api/http/on_loop.py)
    app.state.cache_warming = "running" if warm else "off"
    # Where projections are kept current: "thread" (here), or a FollowerProcess that
    # harbor serve puts here, or "elsewhere" (another process: see /healthz).
    app.state.follower = "thread" if follow else "elsewhere"
    app.state.async_reads = None  # opened with the app on PostgreSQL (lifespan)
    app.state.models = ReadModels(registry)
    app.state.read_members = ReadMembers(registry)
    app.state.tokens = TokenStore(Db(registry.recorder.datastore))  # type: ignore[attr-defined]
    problems.install(app)
    docs.install(app)
    pages.install(app)

    app.add_middleware(Guard, registry=registry, tokens=app.state.tokens)
    # The routes join the app's own router rather than being included: FastAPI 0.16x
    # wraps an included router, and matching through the wrapper cost about 100 µs of
    # CPU per request (bench/README.md, "HTTP"). Router-level dependencies (the reads'
    # min_position) are already part of each route.
    for module in (commands, reads, ops):
        app.router.routes.extend(module.router.routes)
    # The router tries routes in order, a few microseconds each: the busiest first. No two
    # routes take the same method and path, so the order changes nothing else
    # (tests/test_http_lean.py checks every route is still the one its path reaches).
    app.router.routes.sort(key=_traffic_rank)
    _document_bearer(app)
    return app


# FastAPI's own OpenTelemetry hooks look for a configured provider on every request (a
# fortieth of the event loop's time under load, measured); Harbor's numbers are /metrics.
# HARBOR_OTEL=on keeps them, for a deployment that configures OpenTelemetry itself.
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def _otel_wanted() -> bool:
    return os.environ.get("HARBOR_OTEL", "off").lower() in ("on", "yes", "1", "true")


def _traffic_rank(route: BaseRoute) -> int:
    """0 for a member's status, 1 for the other lean routes (commands), 2 for the rest."""
    if not isinstance(route, LeanRoute):
        return 2
    return 0 if "GET" in (route.methods or ()) else 1


def _document_bearer(app: FastAPI) -> None:
    """Show the bearer token in the OpenAPI schema: the Guard checks it, not a dependency."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["HTTPBearer"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "a token from `harbor tokens issue`",
            }
            for path, item in schema["paths"].items():
                if not _public(path):
                    for operation in item.values():
                        operation["security"] = [{"HTTPBearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class Guard:
    """Body limits, the credential (checked before the body is read) and request latency.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs an extra
    task and a pair of streams per request.
    """

    def __init__(self, app: ASGIApp, registry: Registry, tokens: TokenStore):
        self.app = app
        self.registry = registry
        self.tokens = tokens
        # Starlette builds its middleware stack at the first request, innermost first, so
        # ``app`` (what lies below) and the routes are complete by now.
        self.lean = LeanDispatch(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or admit one request, then time it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"]
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await self._too_large(path)(scope, receive, send)
            return
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            body, more = b"", True
            while more:  # chunked: count as it arrives
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_BODY:
                    await self._too_large(path)(scope, receive, send)
                    return
            receive = _replay(body)  # the route reads the body already received
        if not _public(path):
            # The credential is checked before the body is parsed: no token is 401 first.
            scheme, _, token = headers.get("authorization", "").partition(" ")
            bearer = token.strip() if scheme.lower() == "bearer" else None
            try:
                # Most requests carry a token checked a moment ago: answer it here rather
                # than handing it to a thread, which costs more than the check.
                credential = check_token_now(
                    self.registry, self.tokens, bearer
                ) or await anyio.to_thread.run_sync(
                    check_token, self.registry, self.tokens, bearer
                )
            except HarborError as e:
                METRICS.refusal(e.code)
                response = problems.problem(problems.status_of(e), e.code, e.message, e.field, path)
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["credential"] = credential
        started = time.perf_counter()
        try:
            route = self.lean.match(scope)
            if route is not None:
                await self.lean.run(route, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            METRICS.observe(getattr(route, "path", "unmatched"), time.perf_counter() - started)

    @staticmethod
    def _too_large(path: str) -> Response:
        return problems.problem(
            413, "BODY_TOO_LARGE", f"request bodies are limited to {MAX_BODY} bytes", None, path
        )


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


# A prefix covers the paths below it too: the docs pages' assets are under /docs, the
# desk's under /ui (the pages hold no data; what they show, they ask for with a token).
PUBLIC = ("/healthz", "/metrics", "/openapi.json", docs.DOCS, docs.REDOC, pages.UI)


def _public(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PUBLIC)


def _start_sealer(registry: Registry) -> BackgroundSealer | None:
    config = AuditConfig.from_env()
    if not config.signing_key.exists():
        log.warning(
            "no signing key at %s: tree heads are not sealed while serving (harbor keys init)",
            config.signing_key,
        )
        return None
    return BackgroundSealer(Sealer.from_config(registry.recorder, config)).start()


def _async_reads(registry: Registry) -> AsyncReads | None:
    recorder = registry.recorder
    if not isinstance(recorder, PostgresRecorder):
        return None
    return AsyncReads(recorder.datastore, recorder.events_table_name)


def _warm(app: FastAPI, registry: Registry) -> None:
    try:
        started = time.monotonic()
        members = registry.warm_member_cache()
        freeze_long_lived()
        log.info("member cache warmed: %d members in %.1f s", members, time.monotonic() - started)
        app.state.cache_warming = "done"
    except Exception:  # a failed warm-up only costs the first commands a read each
        log.warning("warming the member cache failed", exc_info=True)
        app.state.cache_warming = "failed"
