"""Operations: health, metrics, audit status."""

import importlib.util
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.http.deps import AuditCaller, RegistryDep
from api.http.metrics import METRICS
from projections.runner import Projector

router = APIRouter()


def _projected(registry: Any) -> int:
    return Projector(registry).position()


@router.get("/healthz", tags=["operations"])
def healthz(registry: RegistryDep) -> dict[str, Any]:
    """Store reachable, and how far the projections lag behind the log."""
    head = registry.position()
    projected = _projected(registry)
    return {
        "status": "ok",
        "log_position": head,
        "projected_position": projected,
        "projection_lag": max(head - projected, 0),
    }


@router.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
def metrics(registry: RegistryDep) -> str:
    """Prometheus text: commands, refusals by code, latency, projection lag."""
    return METRICS.render(registry.position(), _projected(registry))


@router.get("/audit/status", tags=["audit"])
def audit_status(caller: AuditCaller, registry: RegistryDep) -> dict[str, Any]:
    """Log size, last sealed tree head, last verification."""
    status: dict[str, Any] = {
        "log_size": registry.position(),
        "last_tree_head": None,
        "last_verification": None,
    }
    if importlib.util.find_spec("audit.status") is not None:
        from audit.status import audit_status as sealed  # type: ignore[import-not-found]

        status.update(sealed(registry))
    return status
