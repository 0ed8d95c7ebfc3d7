"""Operations and audit: health, metrics, audit status, proof bundles."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from api.http.deps import AnyCaller, AuditCaller, CaughtUp, KnownQuery, OpsCaller, RegistryDep
from api.http.metrics import METRICS
from api.http.schemas import Me, problem_responses
from audit.bundle import BundleError, make_bundle
from audit.log import AuditLog
from audit.proofs import (
    ProofDoesNotHold,
    ProofUnavailable,
    make_consistency_proof,
    make_inclusion_proof,
)
from audit.status import audit_status as sealed_status
from domain.errors import Conflict, NotFound, RuleRefused
from projections.follower_process import FollowerProcess
from projections.runner import live_position

router = APIRouter(responses=problem_responses())


def _projected(registry: Any) -> int:
    return live_position(registry)


@router.get("/healthz", tags=["operations"])
def healthz(request: Request, registry: RegistryDep) -> dict[str, Any]:
    """Store reachable, how far the projections lag behind the log, the member cache."""
    head = registry.position()
    projected = _projected(registry)
    return {
        "status": "ok",
        "log_position": head,
        "projected_position": projected,
        "projection_lag": max(head - projected, 0),
        # warming: "running", "done", "failed" (commands then read first), or "off"
        "member_cache": {
            "members": len(registry.members),
            "warming": getattr(request.app.state, "cache_warming", "off"),
        },
        "follower": _follower(getattr(request.app.state, "follower", "elsewhere")),
    }


def _follower(follower: object) -> dict[str, Any]:
    """Where the projection follower runs; for a process, its pid and how often it died."""
    if isinstance(follower, FollowerProcess):
        return {"runs_in": "process", "pid": follower.pid, "restarts": max(follower.starts - 1, 0)}
    return {"runs_in": str(follower)}


@router.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
def metrics(registry: RegistryDep) -> str:
    """Prometheus text: commands, refusals by code, latency, projection lag, group commit."""
    return METRICS.render(registry.position(), _projected(registry), registry.committer)


QUERY = [KnownQuery, CaughtUp]  # as every query (routes/reads.py)


@router.get("/me", tags=["operations"], response_model=Me, dependencies=QUERY)
def me(caller: AnyCaller, registry: RegistryDep) -> dict[str, Any]:
    """Who the token speaks for: its unit (and the unit's name), role, holder, last day."""
    credential = caller.credential
    try:
        name: str | None = registry.unit(credential.unit_id).name
    except NotFound:
        name = None  # a token outliving its unit's record acts for nothing, but may still say so
    return {
        "unit_id": credential.unit_id,
        "unit_name": name,
        "role": credential.role,
        "holder": credential.holder,
        "expires_on": credential.expires_on,
    }


@router.get("/audit/status", tags=["audit"], dependencies=QUERY)
def audit_status(caller: OpsCaller, registry: RegistryDep) -> dict[str, Any]:
    """Log size, leaves in the Merkle tree, unsealed events, last signed head, last check."""
    return {"log_size": registry.position(), **sealed_status(registry)}


@router.get("/audit/members/{member_id}/bundle", tags=["audit"], dependencies=QUERY)
def bundle(member_id: UUID, caller: AuditCaller, registry: RegistryDep) -> dict[str, Any]:
    """A proof bundle: the member's sealed events, an inclusion proof for each and the signed
    tree head — check it offline with `harbor verify-bundle FILE --key public.pem`."""
    registry.member(member_id)  # 404 for an unknown member
    try:
        return make_bundle(AuditLog(registry.recorder), member_id)
    except BundleError as e:
        raise RuleRefused(str(e), code="NOT_SEALED") from None


Size = Annotated[int, Query(ge=0, le=2**62, description="a stored tree head's size")]


@router.get("/audit/proofs/consistency", tags=["audit"], dependencies=QUERY)
def consistency_proof(
    caller: AuditCaller, registry: RegistryDep, old_size: Size, new_size: Size | None = None
) -> dict[str, Any]:
    """That the log only grew: the signed heads of two sizes and the RFC 9162 consistency
    proof between them (``new_size`` defaults to the latest head). Check it offline with
    `harbor verify-proof FILE --key public.pem [--witness FILE]`."""
    return _proof(lambda audit: make_consistency_proof(audit, old_size, new_size), registry)


@router.get("/audit/proofs/inclusion", tags=["audit"], dependencies=QUERY)
def inclusion_proof(
    caller: AuditCaller,
    registry: RegistryDep,
    position: Annotated[int, Query(ge=1, le=2**62, description="the event's log position")],
    size: Size | None = None,
) -> dict[str, Any]:
    """That one event (any stream's) is in the log as stored: the event, its inclusion proof
    and the signed head of ``size`` (default the latest). Check it offline with
    `harbor verify-proof FILE --key public.pem`."""
    return _proof(lambda audit: make_inclusion_proof(audit, position, size), registry)


def _proof(make: Any, registry: Any) -> dict[str, Any]:
    try:
        proof: dict[str, Any] = make(AuditLog(registry.recorder))
    except ProofDoesNotHold as e:  # before ProofUnavailable: it is one
        raise Conflict(str(e), code="PROOF_DOES_NOT_HOLD") from None
    except ProofUnavailable as e:
        raise NotFound(str(e), code="NO_PROOF") from None
    return proof
