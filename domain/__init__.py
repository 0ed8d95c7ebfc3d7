"""Harbor's domain: units, member relationships, their events and rules (no HTTP, no SQL)."""
