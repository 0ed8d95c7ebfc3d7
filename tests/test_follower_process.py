"""The projection follower in a process of its own (PostgreSQL), as `harbor serve` runs it.

It keeps projections current, is started again if it dies, stops when asked, and
`harbor serve` on PostgreSQL leaves no follower behind when it stops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from api.demo import load_article_cases
from domain.registry import Registry
from projections import follower_process
from projections.follower_process import FollowerProcess
from projections.runner import live_position, wait_for
from store.lease import lease_for
from store.sql import Db
from store.tokens import TokenStore
from tests.support import as_unit

ROOT = Path(__file__).resolve().parent.parent


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A child not yet reaped still answers; /proc tells a zombie apart.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _wait(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_the_follower_process_keeps_projections_current_and_stops_when_asked(
    pg_registry: Registry,
) -> None:
    load_article_cases(pg_registry)
    follower = FollowerProcess.of(pg_registry).start(wait=True)  # back once it has the store
    pid = follower.pid
    try:
        assert pid is not None and pid != os.getpid()
        assert wait_for(pg_registry, pg_registry.position(), timeout=30)
    finally:
        follower.stop()
    assert _gone(pid)
    assert follower.pid is None
    assert follower.starts == 1


def test_a_follower_process_that_dies_is_started_again(
    pg_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_process, "RESTART_SECONDS", 0.1)
    load_article_cases(pg_registry)
    follower = FollowerProcess.of(pg_registry).start()
    try:
        assert wait_for(pg_registry, pg_registry.position(), timeout=30)
        first = follower.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert _wait(lambda: follower.pid not in (None, first)), "no new follower"
        assert follower.starts == 2
        # The new one folds what is written after the old one died.
        outcome = pg_registry.enrol_member(
            as_unit("daning-center"),
            name="王新",
            id_number="310109195001017779",
            standing="full",
            household_region="上海·闸北",
            occurred_on=date(2020, 1, 1),
        )
        assert outcome.position is not None
        assert wait_for(pg_registry, outcome.position, timeout=30)
    finally:
        follower.stop()


def test_harbor_serve_on_postgresql_follows_in_a_child_process_and_leaves_none_behind(
    pg_url: str, pg_registry: Registry, tmp_path: Path
) -> None:
    load_article_cases(pg_registry)
    head = pg_registry.position()
    token = TokenStore(Db(pg_registry.recorder.datastore)).issue(  # type: ignore[attr-defined]
        "sh-org-dept", "auditor", "test"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "HARBOR_DATABASE_URL": pg_url,
        "HARBOR_SIGNING_KEY": str(tmp_path / "no-signing-key.pem"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--no-warm-cache"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait(lambda: _answers(f"{base}/healthz"), timeout=60), "the server never answered"
        followers = [pid for pid in _children(server.pid) if _is_follower(pid)]
        assert len(followers) == 1, followers  # the follower, in a process of its own
        health = httpx.get(f"{base}/healthz", timeout=10).json()
        assert health["follower"] == {"runs_in": "process", "pid": followers[0], "restarts": 0}
        # Folded by that process: the server's own threads do not follow.
        response = httpx.get(
            f"{base}/scorecards",
            params={"min_position": head},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert live_position(pg_registry) >= head
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert server.returncode == 0
        assert all(_gone(pid) for pid in followers)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _is_follower(pid: int) -> bool:
    # multiprocessing also starts a resource tracker beside the spawned follower.
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    return b"spawn_main" in command


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                found.append(int(entry))
    return found


def test_a_follower_process_that_cannot_open_the_store_fails_to_start_clearly(
    pg_registry: Registry,
) -> None:
    env = {**pg_registry.env, "POSTGRES_DBNAME": "harbor_no_such_database"}
    follower = FollowerProcess(env)
    with pytest.raises(RuntimeError, match="failed to start"):
        follower.start(wait=True)
    follower.stop()
    assert follower.pid is None


def test_harbor_project_beside_a_follower_stands_by_says_so_and_takes_over(
    pg_url: str, pg_registry: Registry
) -> None:
    load_article_cases(pg_registry)
    holder = lease_for(pg_registry)
    assert holder is not None and holder.hold()  # as a running harbor serve's follower would
    project = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "project", "--poll", "0.05"],
        cwd=ROOT,
        env={**os.environ, "HARBOR_DATABASE_URL": pg_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert project.stderr is not None
        first = project.stderr.readline()
        assert "standing by" in first, first
        time.sleep(0.5)
        assert live_position(pg_registry) == 0  # the holder's work, not this one's
        holder.release()
        assert wait_for(pg_registry, pg_registry.position(), timeout=30)
    finally:
        holder.release()
        project.send_signal(signal.SIGTERM)
        project.wait(timeout=30)
    assert project.returncode == 0


def test_a_follower_process_sigtermed_on_its_own_is_started_again_until_stopped(
    pg_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_process, "RESTART_SECONDS", 0.1)
    follower = FollowerProcess.of(pg_registry).start(wait=True)  # its SIGTERM handler is set
    try:
        first = follower.pid
        assert first is not None
        os.kill(first, signal.SIGTERM)  # the child alone: it exits cleanly, with code 0
        assert _wait(lambda: follower.pid not in (None, first), timeout=5), "not started again"
        assert _gone(first)
        assert follower.starts == 2
        second = follower.pid
        assert second is not None
    finally:
        follower.stop()
    # Asked by the server itself: stopped for good.
    assert _gone(second)
    time.sleep(0.5)
    assert follower.pid is None
    assert follower.starts == 2


def test_a_follower_process_is_not_started_again_once_its_server_winds_down(
    pg_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_process, "RESTART_SECONDS", 0.1)
    follower = FollowerProcess.of(pg_registry).start(wait=True)
    try:
        first = follower.pid
        assert first is not None
        follower.winding_down()  # the server's shutdown began (SIGTERM to the group) ...
        os.kill(first, signal.SIGTERM)  # ... and reached the child first
        time.sleep(0.5)  # five restart intervals
        assert follower.starts == 1, "started again while the server was stopping"
    finally:
        follower.stop()
    assert _gone(first)


_PARENT = """
import json, sys, time
from projections.follower_process import FollowerProcess
follower = FollowerProcess(json.loads(sys.argv[1])).start(wait=True)
print(follower.pid, flush=True)
time.sleep(600)
"""


def test_a_follower_process_exits_when_its_server_is_killed_and_frees_the_lease(
    pg_registry: Registry,
) -> None:
    load_article_cases(pg_registry)
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, json.dumps(dict(pg_registry.env))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert wait_for(pg_registry, pg_registry.position(), timeout=30)  # it follows
        lease = lease_for(pg_registry)
        assert lease is not None and not lease.hold()  # the child holds the lease
        parent.kill()  # SIGKILL, as the OOM killer does: no stop(), no atexit
        parent.wait(timeout=10)
        assert _wait(lambda: _gone(child), timeout=5), "the follower outlived its server"
        assert lease.hold()  # released with it: a restarted server's follower takes over
        lease.release()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
