"""Helpers shared by tests: the article's units, small counting helpers, a free port."""

from __future__ import annotations

import socket
import time

import httpx

from api.demo import load_units
from domain.registry import Actor, Registry

ADMIN = Actor("sh-org-dept", "test-admin")

def as_unit(code: str, who: str = "clerk") -> Actor:
    """An actor recording for ``code``."""
    return Actor(code, who)


def register_article_units(registry: Registry) -> None:
    """Register the eight units of cases.md (the org department registers the rest)."""
    load_units(registry, "test-admin")


def event_count(registry: Registry) -> int:
    """How many events the log holds (not just the highest position)."""
    total, start = 0, 1
    while True:
        page = registry.recorder.select_notifications(start, 1000)
        total += len(page)
        if len(page) < 1000:
            return total
        start = page[-1].id + 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(base: str, deadline: float, why: str = "") -> None:
    """Wait until ``base``/healthz answers 200, failing (with ``why``) at ``deadline``."""
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server never answered" + why
        time.sleep(0.1)
