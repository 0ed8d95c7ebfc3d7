"""Dependencies shared by the routes: the registry, read models, the caller's credential."""

from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from domain.errors import HarborError, NotFound
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
_bearer = HTTPBearer(auto_error=False, description="a token from `harbor tokens issue`")


def check_token(registry: Registry, tokens: TokenStore, token: str | None) -> Credential:
    """The credential a bearer token stands for, or 401 (also for a dissolved unit)."""
    if not token:
        raise Unauthorized("send Authorization: Bearer <token> (harbor tokens issue)")
    return _admit(registry, tokens.check(token, registry.clock()))


def check_token_now(registry: Registry, tokens: TokenStore, token: str | None) -> Credential | None:
    """``check_token`` when all it needs is already in memory (no I/O), else None."""
    if not token or not tokens.is_cached(token):
        return None
    credential = tokens.check(token, registry.clock())
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


async def get_credential(
    request: Request,
    registry: RegistryDep,
    tokens: TokensDep,
    auth: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Credential:
    """The caller's credential (checked once per request, before the body), or 401."""
    checked: Credential | None = getattr(request.state, "credential", None)
    if checked is not None:
        return checked
    return await anyio.to_thread.run_sync(
        check_token, registry, tokens, auth.credentials if auth else None
    )


CredentialDep = Annotated[Credential, Depends(get_credential)]


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


def _role(*roles: str):  # type: ignore[no-untyped-def]
    async def check(credential: CredentialDep) -> Caller:
        if credential.role not in roles:
            raise Forbidden(
                f"this needs the role {' or '.join(roles)}; your token is"
                f" {credential.role} for {credential.unit_id}"
            )
        return Caller(credential)

    return check


UnitCaller = Annotated[Caller, Depends(_role("unit"))]
AdminCaller = Annotated[Caller, Depends(_role("admin"))]
ReaderCaller = Annotated[Caller, Depends(_role("unit", "auditor", "admin"))]
AuditCaller = Annotated[Caller, Depends(_role("auditor", "admin"))]


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="repeat-safe key: the same key and body never record twice",
        ),
    ] = None,
) -> str | None:
    """The caller's idempotency key."""
    return key


async def if_match(
    value: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=40,
            description="the member's stream version you decided on; 409 STALE_VERSION if it moved",
        ),
    ] = None,
) -> int | None:
    """The expected stream version from If-Match (a number, quotes allowed)."""
    if value is None:
        return None
    text = value.strip().strip("W/").strip('"')
    if not text.isdigit():
        from domain.errors import InvalidInput

        raise InvalidInput("If-Match must be the member's version number", field="If-Match")
    return int(text)


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
IfMatch = Annotated[int | None, Depends(if_match)]


async def caught_up(
    registry: RegistryDep,
    min_position: Annotated[
        int | None,
        Query(
            ge=0, le=2**62, description="wait (up to 5 s) until projections reached this position"
        ),
    ] = None,
) -> None:
    """Read-your-writes: wait until the projections have folded ``min_position``."""
    if min_position is not None:
        await anyio.to_thread.run_sync(_wait_until_projected, registry, min_position)


def _wait_until_projected(registry: Registry, min_position: int) -> None:
    if min_position > registry.position():
        from domain.errors import InvalidInput

        raise InvalidInput(
            f"min_position {min_position} is beyond the log (it ends at"
            f" {registry.position()}); pass a position a command returned",
            field="min_position",
        )
    if not wait_for(registry, min_position, timeout=5.0):
        raise NotCaughtUp(
            f"projections have not reached position {min_position} yet; retry in a moment",
            field="min_position",
        )


CaughtUp = Depends(caught_up)
