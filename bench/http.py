"""Benchmark: the HTTP API against the application service it wraps.

    python bench/http.py --json bench/results/http.json [--rounds 3] [--duration 10] [--threads 8]

On a fresh PostgreSQL database (created here, dropped at the end), in alternating rounds
(HTTP, in process, HTTP, in process, …), so that both sides of each round's ratio ran
minutes apart at most on a shared machine whose speed drifts; medians are reported:

1. `harbor serve` runs as a subprocess (its projection follower included), started afresh
   each round and measured once its member cache is warm (`GET /healthz`). 8 client threads,
   each with its own keep-alive connections over loopback (`--client raw`, the default: a
   plain socket reading responses by their Content-Length, since the load generator
   shares the two cores with the server; `--client stdlib` uses http.client), tell member
   stories: enrol at a holding unit, an inquiry at a service centre, requirements,
   evidence, a letter from the holder, the attachment, the receipt, an activity (8
   commands), with a status query (GET /members/{id}) after the inquiry, the letter, the
   attachment and the activity.
   Status latency is measured there, while the commands run. The query asks for the
   member of the thread's story eight back (long folded by the follower on both sides, so
   the answer is a found row, not a cheaper 404); a thread's first stories ask for the
   oldest member it has.
2. The server is stopped; in the same process as this script (a projection follower
   process beside it, as harbor serve runs one), the same 8-thread mix calls the Registry methods
   (and the read model's member status) directly, on a Registry configured as harbor serve
   configures its own (group commit on unless HARBOR_GROUP_COMMIT=off).

Writes {"command_per_s", "inprocess_command_per_s", "ratio", "status_p50_ms",
"status_p99_ms"} (plus "details"): the rates are the medians of the rounds', the ratio the
median of the rounds' ratios, the status latencies those of every round's queries together.
Targets (issue 4): status p99 ≤ 10 ms, ratio ≥ 0.5.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file's name would
# then hide the standard library's `http` package from everything imported below.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import deque  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import date  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import psycopg  # noqa: E402

ADMIN_URL = os.environ.get(
    "HARBOR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CENTERS = 16  # service centres; thread i holds at centre i and sends members to centre i+1
COMMANDS_PER_STORY = 8


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children still running."""
    total = 0.0
    for task in [pid, *_children(pid)]:
        try:
            fields = _stat(task)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return total


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = _stat(entry)
            except OSError:
                continue
            if int(stat[1]) == pid:
                found += [int(entry), *_children(int(entry))]
    return found


def _postgres_cpu() -> float:
    """CPU seconds of every postgres process on this machine (the bench's server is local)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if "(postgres)" in stat:
                fields = stat.rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


class CpuMeter:
    """Where a phase's CPU went: the server, this client, PostgreSQL, and the machine's idle."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid
        self.start = self._read()

    def _read(self) -> tuple[float, float, float, float, float]:
        server = _tree_cpu(self.server_pid) if self.server_pid else 0.0
        usage = os.times()
        busy, total = _machine_busy()
        return server, usage.user + usage.system, _postgres_cpu(), busy, total

    def per(self, commands: int) -> dict[str, Any]:
        """CPU milliseconds per command by process, and the machine's idle share."""
        end = self._read()
        spent = (b - a for a, b in zip(self.start, end, strict=True))
        server, client, postgres, busy, total = spent
        n = max(commands, 1)
        return {
            "server_cpu_ms_per_command": _round(server * 1000 / n),
            "client_cpu_ms_per_command": _round(client * 1000 / n),
            "postgres_cpu_ms_per_command": _round(postgres * 1000 / n),
            "machine_idle_share": _round(1 - busy / total) if total else None,
        }


@dataclass
class Tally:
    """What the threads of one phase did."""

    commands: int = 0
    statuses: int = 0
    not_found: int = 0  # status queries answered 404 (not projected yet)
    errors: list[str] = field(default_factory=list)
    status_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        commands: int,
        statuses: int,
        status_ms: list[float],
        errors: list[str],
        not_found: int = 0,
    ) -> None:
        with self.lock:
            self.commands += commands
            self.statuses += statuses
            self.not_found += not_found
            self.status_ms.extend(status_ms)
            self.errors.extend(errors)


def story(thread: int, number: int, phase: int, run: int) -> list[tuple[str, str, dict[str, Any]]]:
    """One member's transfer: (acting unit, action, body) — the same for both phases."""
    holder, center = f"bench-{thread % CENTERS}", f"bench-{(thread + 1) % CENTERS}"
    id_number = f"{run:04d}{phase}{thread:02d}{number:010d}X"
    letter_no = f"{run}-{phase}-{thread}-{number}"
    return [
        (holder, "enrol", {"name": f"党员{number}", "id_number": id_number, "standing": "full",
                           "household_region": "上海", "occurred_on": "2020-01-01"}),
        (center, "inquiries", {"channel": "walk_in", "summary": "申请转入居住地",
                               "occurred_on": "2020-02-01"}),
        (center, "requirements", {"documents": ["租赁合同", "介绍信"],
                                  "occurred_on": "2020-02-01"}),
        (center, "evidence", {"kind": "lease", "reference": f"租赁合同 {number}",
                              "valid_until": "2030-01-01", "occurred_on": "2020-02-02"}),
        (holder, "letters", {"letter_no": letter_no, "to_unit_id": center,
                             "dues_paid_through": "2020-01", "occurred_on": "2020-02-10"}),
        (center, "attachments", {"basis": "residence", "letter_no": letter_no,
                                 "occurred_on": "2020-02-15"}),
        (holder, "receipts", {"letter_no": letter_no, "occurred_on": "2020-02-20"}),
        (center, "activities", {"kind": "组织生活会", "occurred_on": "2020-02-25"}),
    ]


STATUS_AFTER = {"inquiries", "letters", "attachments", "activities"}
# A status query asks for the member of the story this many back: older than the follower's
# lag on both sides (in process a story takes about 16 ms, over HTTP about 50), so both find
# a projected row rather than a cheaper 404.
STATUS_STORIES_BACK = 8
MEMBER_ACTIONS = {"activities"}


def _stop_condition(duration: float, count: int | None, tally: Tally) -> Callable[[], bool]:
    deadline = time.monotonic() + duration

    def done() -> bool:
        if count is not None:
            return tally.commands >= count
        return time.monotonic() >= deadline

    return done


def _run_threads(threads: int, work: Callable[[int], None]) -> float:
    failures: list[BaseException] = []

    def guarded(thread: int) -> None:
        try:
            work(thread)
        except BaseException as e:  # a crashed thread would only look like a slow one
            failures.append(e)

    workers = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failures:
        raise RuntimeError(f"{len(failures)} of {threads} threads failed") from failures[0]
    return time.perf_counter() - started


# --- phase 1: over HTTP -----------------------------------------------------------------


class Client:
    """One keep-alive connection acting with one token.

    The standard library's client spends about a third of httpx's CPU per request, and
    the load generator shares the machine's cores with the server it measures.
    """

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.post_headers = {**self.headers, "Content-Type": "application/json"}

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.conn.request("POST", path, body=data, headers=self.post_headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


class RawClient:
    """One keep-alive HTTP/1.1 connection on a plain socket, acting with one token.

    A load generator's CPU is taken from the server it measures on this two-core
    machine, so the client does no more than a load generator must: it writes the
    request in one system call and reads the response by its Content-Length (every
    Harbor response carries one). Per command it costs about 0.1 ms of CPU against
    0.25 ms for the standard library's client (bench/README.md, "HTTP").
    """

    def __init__(self, port: int, token: str):
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\n".encode()
        self.sock: socket.socket | None = None
        self.pending = b""  # bytes received beyond the last response (none, in practice)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        data = json.dumps(body, ensure_ascii=False).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
        ).encode()
        return self._exchange(head + self.auth + b"\r\n" + data)

    def get(self, path: str) -> tuple[int, bytes]:
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        return self._exchange(head + self.auth + b"\r\n")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pending = b""
        self.sock.sendall(request)
        received = self.pending
        end = received.find(b"\r\n\r\n")
        while end < 0:
            received += self._recv()
            end = received.find(b"\r\n\r\n")
        status_line, *header_lines = received[:end].decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(":", 1) for line in header_lines)
        if "content-length" not in headers:
            raise http.client.HTTPException(f"no Content-Length in {status_line!r}")
        stop = end + 4 + int(headers["content-length"])
        while len(received) < stop:
            received += self._recv()
        self.pending = received[stop:]
        if headers.get("connection", "").strip() == "close":
            self.close()
        return int(status_line.split(" ", 2)[1]), received[end + 4 : stop]

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise http.client.RemoteDisconnected("the server closed the connection")
        return chunk


CLIENTS: dict[str, type[Client] | type[RawClient]] = {"raw": RawClient, "stdlib": Client}


def http_phase(port: int, tokens: dict[str, str], threads: int, duration: float,
               count: int | None, run: int, client_kind: str = "raw") -> tuple[Tally, float]:
    tally = Tally()
    done = _stop_condition(duration, count, tally)

    def work(thread: int) -> None:
        clients = {unit: CLIENTS[client_kind](port, token) for unit, token in tokens.items()}
        number = 0
        recent: deque[Any] = deque(maxlen=STATUS_STORIES_BACK)
        while not done():
            number += 1
            commands, statuses, latencies, errors, not_found = 0, 0, [], [], 0
            member = case = None
            for unit, action, body in story(thread, number, 1, run):
                if action == "enrol":
                    path = "/members"
                elif action in ("inquiries", *MEMBER_ACTIONS):
                    path = f"/members/{member}/{action}"
                else:
                    path = f"/members/{member}/cases/{case}/{action}"
                try:
                    code, data = clients[unit].post(path, body)
                except (OSError, http.client.HTTPException) as e:
                    errors.append(f"{action}: {type(e).__name__} {e}")
                    clients[unit].close()  # reconnects on the next request
                    break
                if code != 201:
                    errors.append(f"{action}: {code} {data[:200].decode(errors='replace')}")
                    break
                commands += 1
                result = json.loads(data)
                member, case = result["member_id"], result["case_id"] or case
                if action in STATUS_AFTER:
                    started = time.perf_counter()
                    try:
                        asked = recent[0] if recent else member
                        code, data = clients[unit].get(f"/members/{asked}")
                    except (OSError, http.client.HTTPException) as e:
                        errors.append(f"status: {type(e).__name__} {e}")
                        clients[unit].close()
                        continue
                    if code == 200:
                        json.loads(data)  # as a real client would
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses += 1
                    not_found += code == 404  # not projected yet
                    if code not in (200, 404):
                        errors.append(f"status: {code} {data[:200].decode(errors='replace')}")
            recent.append(member)
            tally.add(commands, statuses, latencies, errors, not_found)
        for client in clients.values():
            client.close()

    return tally, _run_threads(threads, work)


# --- phase 2: in process ----------------------------------------------------------------


def inprocess_phase(url: str, threads: int, duration: float, count: int | None,
                    run: int, cpu: dict[str, Any]) -> tuple[Tally, float]:
    from domain.errors import HarborError, NotFound
    from domain.registry import Actor
    from projections.follower_process import FollowerProcess
    from projections.queries import ReadModels
    from store import open_registry

    meter = CpuMeter(None)  # the server is this process: its CPU is the "client" figure
    # Group commit as harbor serve has it (on unless HARBOR_GROUP_COMMIT says otherwise):
    # the same application service on both sides.
    registry = open_registry(
        url, extra_env={"HARBOR_GROUP_COMMIT": os.environ.get("HARBOR_GROUP_COMMIT", "on")}
    )
    models = ReadModels(registry)
    follower = FollowerProcess.of(registry).start()  # as harbor serve runs it on PostgreSQL
    tally = Tally()
    done = _stop_condition(duration, count, tally)
    methods = {
        "inquiries": "receive_inquiry", "requirements": "notify_requirements",
        "evidence": "record_evidence", "letters": "issue_letter",
        "attachments": "attach_member", "receipts": "return_receipt",
        "activities": "attend_activity",
    }

    def work(thread: int) -> None:
        number = 0
        recent: deque[Any] = deque(maxlen=STATUS_STORIES_BACK)
        while not done():
            number += 1
            commands, statuses, latencies, errors, not_found = 0, 0, [], [], 0
            member = case = None
            for unit, action, body in story(thread, number, 2, run):
                actor = Actor(unit, "bench")
                fields = dict(body)
                on = date.fromisoformat(fields.pop("occurred_on"))
                for name in ("valid_until",):
                    if name in fields:
                        fields[name] = date.fromisoformat(fields[name])
                try:
                    if action == "enrol":
                        outcome = registry.enrol_member(actor, occurred_on=on, **fields)
                    else:
                        extra = {} if action in ("inquiries", *MEMBER_ACTIONS) else {
                            "case_id": case}
                        call = getattr(registry, methods[action])
                        outcome = call(actor, member, occurred_on=on, **fields, **extra)
                except HarborError as e:
                    errors.append(f"{action}: {e}")
                    break
                commands += 1
                member, case = outcome.member_id, outcome.case_id or case
                if action in STATUS_AFTER:
                    started = time.perf_counter()
                    try:
                        models.member_status(recent[0] if recent else member)
                    except NotFound:
                        not_found += 1
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses += 1
            recent.append(member)
            tally.add(commands, statuses, latencies, errors, not_found)

    try:
        seconds = _run_threads(threads, work)
        cpu.update(meter.per(tally.commands))  # before the store's sessions end with it
        return tally, seconds
    finally:
        follower.stop()
        registry.close()


# --- setup and the server -----------------------------------------------------------------


def setup(url: str) -> dict[str, str]:
    """Units (the org department and the service centres) and a unit token for each centre."""
    from domain.registry import Actor
    from store import open_registry
    from store.sql import Db
    from store.tokens import TokenStore

    registry = open_registry(url)
    try:
        admin = Actor("sh-org-dept", "bench")
        registry.register_unit(admin, code="sh-org-dept", name="组织部", kind="org_department",
                               region="上海", occurred_on=date(2000, 1, 1))
        tokens = TokenStore(Db(registry.recorder.datastore))  # type: ignore[attr-defined]
        issued = {}
        for i in range(CENTERS):
            code = f"bench-{i}"
            registry.register_unit(admin, code=code, name=f"第{i}党员服务中心",
                                   kind="service_center", region="上海",
                                   occurred_on=date(2000, 1, 1))
            issued[code] = tokens.issue(code, "unit", f"bench clerk {i}")
        return issued
    finally:
        registry.close()


def start_server(
    url: str, port: int, threads: int, log: Path, workers: int = 1
) -> subprocess.Popen[bytes]:
    """`harbor serve` on ``url``; its output goes to ``log`` (a pipe nobody reads could fill
    up and stall the server)."""
    env = {**os.environ, "HARBOR_DATABASE_URL": url, "HARBOR_PORT": str(port)}
    with log.open("ab") as out:  # every round's server writes to the same log
        server = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "harbor"), "serve", "--port", str(port),
             "--threads", str(threads), "--workers", str(workers)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while True:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if health.status_code == 200 and health.json()["member_cache"]["warming"] in (
                "done", "off", "failed"
            ):
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise SystemExit(f"harbor serve did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per phase in each round (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds, HTTP then in process (default 3)")
    parser.add_argument("--count", type=int,
                        help="stop each phase after about this many commands instead")
    parser.add_argument("--server-threads", type=int, default=8,
                        help="harbor serve --threads (default 8, as harbor serve's own)")
    parser.add_argument("--server-workers", type=int, default=1,
                        help="harbor serve --workers (default 1)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="raw",
                        help="the HTTP client: raw (default; a keep-alive socket that does no"
                        " more than a load generator must) or stdlib (http.client)")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds must be between 1 and 100")

    name = f"harbor_bench_http_{uuid.uuid4().hex[:8]}"
    server_log = Path(tempfile.mkdtemp(prefix="harbor-bench-http-")) / "serve.log"
    url = _db_url(name)
    first_run = random.randrange(10_000 - args.rounds)
    rounds: list[Round] = []
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        tokens = setup(url)
        for number in range(args.rounds):
            rounds.append(one_round(url, tokens, args, server_log, first_run + number))
            last = rounds[-1]
            print(f"round {number + 1}/{args.rounds}: {last.http_per_s:,.0f} commands/s over"
                  f" HTTP, {last.inprocess_per_s:,.0f} in process, ratio {last.ratio:.3f}",
                  file=sys.stderr, flush=True)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    result = summarise(rounds, args, server_log)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 1 if any(r.http.errors or r.in_process.errors for r in rounds) else 0


@dataclass
class Round:
    """One round: the HTTP phase, then the same mix in process."""

    http: Tally
    http_s: float
    http_cpu: dict[str, Any]
    in_process: Tally
    inproc_s: float
    inproc_cpu: dict[str, Any]
    gc: dict[str, float]

    @property
    def http_per_s(self) -> float:
        return self.http.commands / self.http_s

    @property
    def inprocess_per_s(self) -> float:
        return self.in_process.commands / self.inproc_s

    @property
    def ratio(self) -> float:
        return self.http_per_s / self.inprocess_per_s if self.inprocess_per_s else 0.0


def one_round(url: str, tokens: dict[str, str], args: argparse.Namespace, server_log: Path,
              run: int) -> Round:
    """Start harbor serve, drive it over HTTP, stop it; then the same mix in process."""
    port = _free_port()
    server = start_server(url, port, args.server_threads, server_log, args.server_workers)
    try:
        meter = CpuMeter(server.pid)
        gc_before, _ = _gc_figures(port)
        over_http, http_s = http_phase(port, tokens, args.threads, args.duration,
                                       args.count, run, args.client)
        http_cpu = meter.per(over_http.commands)
        gc_after, longest_full = _gc_figures(port)
    finally:
        stop_server(server)
    inproc_cpu: dict[str, Any] = {}
    in_process, inproc_s = inprocess_phase(url, args.threads, args.duration, args.count,
                                           run, inproc_cpu)
    gc = {k: round(v - gc_before.get(k, 0.0), 4) for k, v in gc_after.items()}
    gc["longest_full_pause_s"] = longest_full
    return Round(over_http, http_s, http_cpu, in_process, inproc_s, inproc_cpu, gc)


GC_COUNTERS = {"harbor_gc_seconds_total": "gc_seconds_gen",
               "harbor_gc_collections_total": "gc_collections_gen"}


def _gc_figures(port: int) -> tuple[dict[str, float], float]:
    """The server's collector counters so far, and its longest full collection, from its
    /metrics (one worker's, with several)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    counters: dict[str, float] = {}
    longest_full = 0.0
    for line in text.splitlines():
        name, _, labels = line.partition("{")
        if not labels:
            continue
        generation, value = labels.split('"')[1], float(line.rsplit(" ", 1)[1])
        if name in GC_COUNTERS:
            counters[f"{GC_COUNTERS[name]}{generation}"] = value
        elif name == "harbor_gc_longest_pause_seconds" and generation == "2":
            longest_full = value
    return counters, longest_full


def summarise(rounds: list[Round], args: argparse.Namespace, server_log: Path) -> dict[str, Any]:
    """Medians of the rounds, every round's figures, and the status latencies of all rounds."""
    status_ms = [ms for r in rounds for ms in r.http.status_ms]
    errors = [e for r in rounds for e in r.http.errors + r.in_process.errors]
    return {
        "command_per_s": round(statistics.median(r.http_per_s for r in rounds), 1),
        "inprocess_command_per_s": round(statistics.median(r.inprocess_per_s for r in rounds), 1),
        "ratio": round(statistics.median(r.ratio for r in rounds), 3),
        "status_p50_ms": _round(_percentile(status_ms, 50)),
        "status_p99_ms": _round(_percentile(status_ms, 99)),
        "details": {
            "threads": args.threads,
            "server_threads": args.server_threads,
            "server_workers": args.server_workers,
            "client": args.client,
            "rounds": [_round_details(r) for r in rounds],
            "first_errors": errors[:5],
            "server_log": str(server_log),
            "server_log_tracebacks": server_log.read_text(errors="replace").count("Traceback"),
        },
    }


def _round_details(r: Round) -> dict[str, Any]:
    return {
        "ratio": round(r.ratio, 3),
        "http": {"seconds": round(r.http_s, 2), "commands": r.http.commands,
                 "command_per_s": round(r.http_per_s, 1),
                 "status_queries": r.http.statuses, "errors": len(r.http.errors),
                 "status_not_found": r.http.not_found,
                 "status_p50_ms": _round(_percentile(r.http.status_ms, 50)),
                 "status_p99_ms": _round(_percentile(r.http.status_ms, 99)),
                 **r.http_cpu, "server_gc": r.gc},
        "in_process": {"seconds": round(r.inproc_s, 2), "commands": r.in_process.commands,
                       "command_per_s": round(r.inprocess_per_s, 1),
                       "status_queries": r.in_process.statuses,
                       "status_not_found": r.in_process.not_found,
                       "errors": len(r.in_process.errors),
                       "status_p50_ms": _round(_percentile(r.in_process.status_ms, 50)),
                       "status_p99_ms": _round(_percentile(r.in_process.status_ms, 99)),
                       **r.inproc_cpu},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    raise SystemExit(main())
