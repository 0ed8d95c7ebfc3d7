"""Operations and audit: health, metrics, audit status, proof bundles."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from api.http.deps import AuditCaller, CaughtUp, KnownQuery, OpsCaller, RegistryDep
from api.http.metrics import METRICS
from api.http.schemas import problem_responses
from audit.bundle import BundleError, make_bundle
from audit.log import AuditLog
from audit.status import audit_status as sealed_status
from domain.errors import RuleRefused
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
