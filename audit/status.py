"""What `GET /audit/status` reports: log size, the last signed tree head, the last check."""

from __future__ import annotations

from typing import Any

from audit.log import AuditLog


def audit_status(registry: Any) -> dict[str, Any]:
    """Log size, leaves in the tree, events not yet sealed, last head, last verification."""
    audit = AuditLog(registry.recorder)
    head = audit.store.latest_head()
    return {
        "tree_leaves": audit.size(),
        "unsealed_events": audit.unsealed(),
        "last_tree_head": None
        if head is None
        else {
            "tree_size": head.tree_size,
            "root_hash": head.root_hash.hex(),
            "signed_at": head.signed_at,
            "key_id": head.key_id,
        },
        "last_verification": audit.store.last_verification(),
    }
