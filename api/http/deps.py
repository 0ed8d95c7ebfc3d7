"""Dependencies shared by the routes: the registry, read models, the caller's credential."""

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Query, Request

from domain.errors import HarborError, InvalidInput, NotFound
from domain.registry import Actor, Registry
from projections.queries import ReadModels
from projections.runner import wait_for
from store.tokens import Credential, TokenStore


class Unauthorized(HarborError):
    """No valid credential (401)."""

    default_code = "UNAUTHORIZED"


class Forbidden(HarborError):
    """A valid credential without the right (403)."""

    default_code = "FORBIDDEN"


class NotCaughtUp(HarborError):
    """The projections did not reach the asked position in time (503, retry)."""

    default_code = "NOT_CAUGHT_UP"


async def get_registry(request: Request) -> Registry:
    """The application service."""
    registry: Registry = request.app.state.registry
    return registry


async def get_models(request: Request) -> ReadModels:
    """The read models."""
    models: ReadModels = request.app.state.models
    return models


async def get_tokens(request: Request) -> TokenStore:
    """The credential store."""
    tokens: TokenStore = request.app.state.tokens
    return tokens


RegistryDep = Annotated[Registry, Depends(get_registry)]
ModelsDep = Annotated[ReadModels, Depends(get_models)]
TokensDep = Annotated[TokenStore, Depends(get_tokens)]
T = TypeVar("T")


def check_token(registry: Registry, tokens: TokenStore, token: str | None) -> Credential:
    """The credential a bearer token stands for, or 401 (also for a dissolved unit)."""
    if not token:
        raise Unauthorized("send Authorization: Bearer <token> (harbor tokens issue)")
    return _admit(registry, tokens.check(token, registry.clock()))


def check_token_now(registry: Registry, tokens: TokenStore, token: str | None) -> Credential | None:
    """``check_token`` when all it needs is already in memory (no I/O), else None."""
    if not token:
        return None
    known, credential = tokens.check_cached(token, registry.clock())
    if not known:
        return None
    if credential is not None and not registry.unit_is_cached(credential.unit_id):
        return None
    return _admit(registry, credential)


def _admit(registry: Registry, credential: Credential | None) -> Credential:
    if credential is None:
        raise Unauthorized("the token is unknown, expired or revoked; ask for a new one")
    try:
        dissolved = registry.unit(credential.unit_id).dissolved
    except NotFound:
        dissolved = False  # an admin's own unit may not be registered yet (bootstrap)
    if dissolved:
        raise Unauthorized(f"unit {credential.unit_id} is dissolved; its tokens no longer act")
    return credential


def credential_of(request: Request) -> Credential:
    """The caller's credential, which the Guard middleware checked before the route ran."""
    checked: Credential | None = request.scope.get("state", {}).get("credential")
    if checked is None:  # only a route outside the Guard could get here
        raise Unauthorized("send Authorization: Bearer <token> (harbor tokens issue)")
    return checked


@dataclass(frozen=True)
class Caller:
    """The credential plus what a command needs from it."""

    credential: Credential

    @property
    def actor(self) -> Actor:
        """The acting unit and the person recording (from the credential only)."""
        return Actor(self.credential.unit_id, self.credential.holder)

    @property
    def role(self) -> str:
        """unit, auditor or admin."""
        return self.credential.role


def _admitted(request: Request, roles: tuple[str, ...]) -> Caller:
    credential = credential_of(request)
    if credential.role not in roles:
        raise Forbidden(
            f"this needs the role {' or '.join(roles)}; your token is"
            f" {credential.role} for {credential.unit_id}"
        )
    return Caller(credential)


# One dependency per route where one will do: FastAPI 0.16x spends 15-30 µs of CPU on
# every dependency and header parameter of every request (bench/README.md, "HTTP").
def _role(*roles: str):  # type: ignore[no-untyped-def]
    async def check(request: Request) -> Caller:
        return _admitted(request, roles)

    return check


UnitCaller = Annotated[Caller, Depends(_role("unit"))]
AdminCaller = Annotated[Caller, Depends(_role("admin"))]
# DESIGN.md "Security": units read what they hold, receive or took part in, auditors read
# everything; the admin manages units and credentials and reads no member's records.
reader = _role("unit", "auditor")  # the check itself, for the lean status route
ReaderCaller = Annotated[Caller, Depends(reader)]
AuditCaller = Annotated[Caller, Depends(_role("auditor"))]
# The log's size and seals (no member's records): for the admin who runs the server too.
OpsCaller = Annotated[Caller, Depends(_role("auditor", "admin"))]
AnyCaller = Annotated[Caller, Depends(_role("unit", "auditor", "admin"))]


@dataclass(frozen=True)
class CommandContext:
    """What every command route needs: who acts, the registry, and the command headers."""

    caller: Caller
    registry: Registry
    idempotency_key: str | None
    expected_version: int | None


def _command(*roles: str, versioned: bool = True):  # type: ignore[no-untyped-def]
    async def context(request: Request) -> CommandContext:
        caller = _admitted(request, roles)
        headers = request.headers
        return CommandContext(
            caller,
            request.app.state.registry,
            idempotency_key(headers.get("idempotency-key")),
            if_match(headers.get("if-match")) if versioned else None,
        )

    return context


# The context functions themselves, for the lean routes (api/http/lean.py).
unit_command = _command("unit")
unit_enrolment = _command("unit", versioned=False)
UnitCommand = Annotated[CommandContext, Depends(unit_command)]
UnitEnrolment = Annotated[CommandContext, Depends(unit_enrolment)]
AdminCommand = Annotated[CommandContext, Depends(_command("admin", versioned=False))]



def _header(name: str, max_length: int, description: str) -> dict[str, Any]:
    """An optional header parameter as OpenAPI describes it."""
    schema = {"type": "string", "maxLength": max_length}
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": schema}


KEY_HEADER = _header(
    "Idempotency-Key", 200, "repeat-safe key: the same key and body never record twice"
)
IF_MATCH_HEADER = _header(
    "If-Match", 40, "the member's stream version you decided on; 409 STALE_VERSION if it moved"
)
# The headers are read by the command context, not by FastAPI: documented here.
VERSIONED_HEADERS: dict[str, Any] = {"parameters": [KEY_HEADER, IF_MATCH_HEADER]}
KEYED_HEADERS: dict[str, Any] = {"parameters": [KEY_HEADER]}


def idempotency_key(value: str | None) -> str | None:
    """The caller's idempotency key (at most 200 characters)."""
    if value is not None and len(value) > 200:
        raise InvalidInput(
            "Idempotency-Key is limited to 200 characters", field="Idempotency-Key"
        )
    return value


# ASCII digits only: str.isdigit() also takes '²' or '٣', which int() then refuses.
_VERSION = re.compile(r'\s*(?:W/)?(?:"([0-9]+)"|([0-9]+))\s*', re.ASCII)


def if_match(value: str | None) -> int | None:
    """The expected stream version from If-Match (a number, quotes allowed)."""
    if value is None:
        return None
    found = _VERSION.fullmatch(value) if len(value) <= 40 else None
    if found is None:
        raise InvalidInput(
            "If-Match must be the member's version number (digits 0-9)", field="If-Match"
        )
    return int(found.group(1) or found.group(2))


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking call (a command's read, a token's revocation) in a request thread and
    await its result.

    The loop's own executor (sized by ``harbor serve --threads``), not anyio's worker
    threads: measured per command, anyio's hand-over cost the event loop about twice
    the CPU of ``run_in_executor`` (bench/README.md, "HTTP").
    """
    return await asyncio.get_running_loop().run_in_executor(None, call)


async def caught_up(
    request: Request,
    min_position: Annotated[
        int | None,
        Query(
            ge=0, le=2**62, description="wait (up to 5 s) until projections reached this position"
        ),
    ] = None,
) -> None:
    """Read-your-writes: wait until the projections have folded ``min_position``."""
    if min_position is not None:
        registry = request.app.state.registry
        await anyio.to_thread.run_sync(_wait_until_projected, registry, min_position)


def _wait_until_projected(registry: Registry, min_position: int) -> None:
    if min_position > registry.position():
        raise InvalidInput(
            f"min_position {min_position} is beyond the log (it ends at"
            f" {registry.position()}); pass a position a command returned",
            field="min_position",
        )
    if not wait_for(registry, min_position, timeout=5.0):
        raise NotCaughtUp(
            f"projections have not reached position {min_position} yet; retry in a moment"
            " (if they never do, no follower is folding the log: GET /healthz shows where it"
            " runs — with `harbor serve --follower none`, start `harbor project`)",
            field="min_position",
        )


CaughtUp = Depends(caught_up)


def refuse_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not take: a misspelt filter (as_off,
    severty) would otherwise answer as if it had not been sent."""
    if not request.scope.get("query_string"):
        return
    known = _query_names(request.scope.get("route"))
    if known is None:
        return
    for name in request.query_params:
        if name not in known:
            takes = ", ".join(sorted(known))
            raise InvalidInput(
                f"unknown query parameter {name!r}; this query takes: {takes}", field=name
            )


def _query_names(route: Any) -> frozenset[str] | None:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    names: frozenset[str] | None = getattr(route, "harbor_query_names", None)
    if names is None:  # once per route: its own query parameters and its dependencies'
        names = frozenset(_query_aliases(dependant))
        route.harbor_query_names = names
    return names


def _query_aliases(dependant: Any) -> Iterator[str]:
    yield from (param.alias for param in dependant.query_params)
    for below in dependant.dependencies:
        yield from _query_aliases(below)


async def known_query(request: Request) -> None:
    """``refuse_unknown_query`` as a dependency."""
    refuse_unknown_query(request)


KnownQuery = Depends(known_query)
