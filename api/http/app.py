"""The HTTP application: routers, error handling, limits, and the projection follower."""

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request, Response

from api.http import problems, schemas
from api.http.deps import check_token
from api.http.metrics import METRICS
from api.http.routes import commands, ops, reads
from audit.config import AuditConfig
from audit.sealer import BackgroundSealer, Sealer
from domain.errors import HarborError
from domain.registry import Registry
from projections.queries import ReadModels
from projections.runner import Projector
from store.sql import Db
from store.tokens import TokenStore

MAX_BODY = 64 * 1024
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
    registry: Registry, *, follow: bool = True, threads: int | None = None, seal: bool = False
) -> FastAPI:
    """The FastAPI app over ``registry``; with ``follow`` it keeps projections current.

    ``threads`` sizes the pool that runs the (synchronous) routes, so concurrent
    commands and queries do not queue behind each other. With ``seal`` (and a
    signing key, see docs/audit.md) a tree head is signed every
    HARBOR_SEAL_EVERY_EVENTS events or HARBOR_SEAL_EVERY_MINUTES minutes.
    """
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if threads:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        follower = None
        if follow:
            projector = Projector(registry)
            follower = threading.Thread(
                target=projector.follow,
                args=(stop,),
                kwargs={"poll_seconds": 0.05},
                daemon=True,
                name="harbor-projections",
            )
            follower.start()
        sealer = _start_sealer(registry) if seal else None
        try:
            yield
        finally:
            stop.set()
            if sealer is not None:
                sealer.stop(final_seal=True)
            if follower is not None:
                follower.join(timeout=10)

    app = FastAPI(
        title="Harbor",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=schemas.problem_responses(),
    )
    app.state.registry = registry
    app.state.models = ReadModels(registry)
    app.state.tokens = TokenStore(Db(registry.recorder.datastore))  # type: ignore[attr-defined]
    problems.install(app)

    @app.middleware("http")
    async def limits_auth_latency(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        too_large = problems.problem(
            413,
            "BODY_TOO_LARGE",
            f"request bodies are limited to {MAX_BODY} bytes",
            None,
            request.url.path,
        )
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return too_large
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""
            async for chunk in request.stream():  # chunked: count as it arrives
                body += chunk
                if len(body) > MAX_BODY:
                    return too_large
            request._body = body  # the route reads the body already received
        if not _public(request.url.path):
            # The credential is checked before the body is parsed: no token is 401 first.
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            try:
                request.state.credential = await anyio.to_thread.run_sync(
                    check_token,
                    registry,
                    app.state.tokens,
                    token.strip() if scheme.lower() == "bearer" else None,
                )
            except HarborError as e:
                METRICS.refusal(e.code)
                return problems.problem(
                    problems.status_of(e), e.code, e.message, e.field, request.url.path
                )
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        METRICS.observe(getattr(route, "path", "unmatched"), time.perf_counter() - started)
        return response

    app.include_router(commands.router)
    app.include_router(reads.router)
    app.include_router(ops.router)
    return app


PUBLIC = ("/healthz", "/metrics", "/openapi.json", "/docs", "/redoc")


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
