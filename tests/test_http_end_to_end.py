"""End to end over a real socket: `make run` on a fresh database (an SQLite file, and an
emptied PostgreSQL database, where harbor serve runs its projection follower as a
process), the two cases of seed/cases.md driven command by command over HTTP, the
results read back, a clean stop.

The server is started exactly as a user would (`make -s run`, with HARBOR_DEMO=no so it
loads nothing), the admin token is read from its output, the units are registered over
HTTP (the admin registers its own unit first), unit tokens are issued with
`harbor tokens issue`, and every command is made as its acting unit on the date cases.md
gives.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.demo import ARTICLE_UNITS, LIU_YANG_ID_NUMBER, OLD_COMRADE_ID_NUMBER
from tests.conftest import empty_for_a_server
from tests.support import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
# "admin token (sh-org-dept, valid through 2026-12-26): TOKEN", and the auditor's likewise
TOKEN_LINE = re.compile(r"^(admin|auditor) token \(sh-org-dept, valid through [\d-]+\): (\S+)$")
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


@dataclass
class Server:
    """`make run` as a process, and what it printed."""

    process: subprocess.Popen[str]
    base: str
    env: dict[str, str]
    admin_token: str
    auditor_token: str
    output: list[str]
    lines: queue.Queue[str | None]

    def drain(self) -> str:
        """Everything it printed so far."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return "".join(self.output)
            if line is not None:
                self.output.append(line)

    def issue(self, unit: str, role: str = "unit", holder: str | None = None) -> str:
        """`harbor tokens issue` on the same database: the token alone on stdout."""
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "harbor"), "tokens", "issue", "--unit", unit,
             "--role", role, "--holder", holder or f"clerk of {unit}"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("hbr_"), done.stdout
        return lines[0]


def _reader(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """`make -s run` on a fresh store: an SQLite file (its projection follower a thread,
    as a user's first `make run`), or an emptied PostgreSQL database (the follower a
    process of its own, as harbor serve runs it there)."""
    port = free_port()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'e2e.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        empty_for_a_server(url)
    env = {
        **os.environ,
        "HARBOR_DATABASE_URL": url,
        "HARBOR_PORT": str(port),
        "HARBOR_DEMO": "no",
        # No signing key (so nothing is sealed in the background, and no key in the
        # working copy is used or any witness file written there).
        "HARBOR_SIGNING_KEY": str(tmp_path / "no-signing-key.pem"),
    }
    process = subprocess.Popen(
        ["make", "-s", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        tokens: dict[str, str] = {}
        while len(tokens) < 2:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert line is not None, "make run ended early:\n" + "".join(output)
            output.append(line)
            printed = TOKEN_LINE.match(line.strip())
            if printed:
                tokens[printed.group(1)] = printed.group(2)
        text = "".join(output)
        assert f"Harbor is serving at http://127.0.0.1:{port}" in text
        assert "loaded the article's two cases" not in text  # HARBOR_DEMO=no
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, deadline, ":\n" + text)
        yield Server(process, base, env, tokens["admin"], tokens["auditor"], output, lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


class Client:
    """HTTP calls as one token, checked."""

    def __init__(self, base: str, token: str):
        self.http = httpx.Client(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})

    def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == expect, (path, body, response.text)
        result: dict[str, Any] = response.json()
        return result

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, (path, params, response.text)
        return response.json()


def test_make_run_serves_the_article_cases_driven_over_http(server: Server) -> None:
    admin = Client(server.base, server.admin_token)

    # --- units: the admin registers its own unit first, then the rest -----------------
    for code, name, kind, parent, region in ARTICLE_UNITS:
        body = {"code": code, "name": name, "kind": kind, "region": region,
                "occurred_on": "1990-01-01"}
        if parent:
            body["parent_unit_id"] = parent
        registered = admin.post("/units", body)
        assert registered["unit_id"] == code
    auditor = Client(server.base, server.auditor_token)  # make run prints both
    unit_codes = [u["unit_id"] for u in auditor.get("/scorecards",
                                                    min_position=registered["position"])]
    assert sorted(unit_codes) == sorted(code for code, *_ in ARTICLE_UNITS)

    acting = ["sh-univ", "sh-residence-center", "sh-org-dept", "zb-factory", "daning-center",
              "factory-superior"]
    clerk = {unit: Client(server.base, server.issue(unit)) for unit in acting}

    # --- case 1: 刘洋 -------------------------------------------------------------------
    liu = clerk["sh-univ"].post("/members", {
        "name": "刘洋", "id_number": LIU_YANG_ID_NUMBER, "standing": "probationary",
        "household_region": "外省某县", "probation_started_on": "2011-03-01",
        "developing_unit_id": "sh-univ", "occurred_on": "2011-03-01",
    })["member_id"]
    inquiry = clerk["sh-residence-center"].post(f"/members/{liu}/inquiries", {
        "channel": "walk_in", "summary": "毕业后无固定工作，申请将组织关系转入居住地",
        "prior_contacts": [{
            "who": "工作单位负责人",
            "answer": "单位未建立党组织，且未签订劳动合同，请到居住地党员服务中心办理",
        }],
        "occurred_on": "2011-07-20",
    })
    case1 = inquiry["case_id"]
    assert inquiry["first_responder"] == "sh-residence-center"
    clerk["sh-residence-center"].post(f"/members/{liu}/cases/{case1}/referrals", {
        "to_unit_id": "home-county", "handover": "cold",
        "reason": "无房产证或租赁合同，建议挂靠户籍所在地", "occurred_on": "2011-07-20",
    })
    joined = clerk["sh-org-dept"].post(f"/members/{liu}/inquiries", {
        "channel": "letter", "summary": "致信市委书记，倾诉对党组织的向往和困惑",
        "occurred_on": "2011-09-01",
    })
    assert joined["case_id"] == case1 and joined["first_responder"] == "sh-residence-center"
    clerk["sh-org-dept"].post(f"/members/{liu}/dues", {
        "months_from": "2011-07", "months_to": "2011-09", "amount": "0.60",
        "occurred_on": "2011-09-01",
    })

    # --- case 2: the old comrade --------------------------------------------------------
    comrade = clerk["zb-factory"].post("/members", {
        "name": "老同志", "id_number": OLD_COMRADE_ID_NUMBER, "standing": "full",
        "household_region": "上海·虹口", "occurred_on": "1990-06-01",
    })["member_id"]
    clerk["zb-factory"].post(f"/members/{comrade}/dues", {
        "months_from": "2003-04", "months_to": "2004-03", "amount": "24.00",
        "occurred_on": "2004-03-15",
    })
    admin.post("/units/zb-factory/dissolution", {"occurred_on": "2004-03-31"})
    daning = clerk["daning-center"]
    case2 = daning.post(f"/members/{comrade}/inquiries", {
        "channel": "walk_in",
        "summary": "称自己是党员，居住在虹口区，企业关闭回家两年多，无人通知参加组织活动",
        "occurred_on": "2006-05-08",
    })["case_id"]
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("daning-center", "introductions",
         {"to_name": "档案管理部门", "purpose": "查阅个人档案", "occurred_on": "2006-05-08"}),
        ("daning-center", "archive-reviews",
         {"finding": "确认在原单位入党，未见组织关系转移证明", "occurred_on": "2006-05-10"}),
        ("daning-center", "consultations",
         {"consulted_unit_id": "hongkou-center", "note": "通报情况，希望引起重视和配合",
          "occurred_on": "2006-05-11"}),
        ("daning-center", "origin-contacts",
         {"contacted_unit_id": "factory-superior", "outcome": "found_superior",
          "occurred_on": "2006-05-20"}),
        ("factory-superior", "letters",
         {"letter_no": "2006-001", "to_unit_id": "daning-center", "valid_until": "2006-08-30",
          "dues_paid_through": "2004-03", "occurred_on": "2006-06-01"}),
        ("daning-center", "attachments",
         {"basis": "other", "letter_no": "2006-001",
          "override_reason": "本人主动要求转入大宁社区党员服务中心", "occurred_on": "2006-06-05"}),
        ("factory-superior", "receipts", {"letter_no": "2006-001", "occurred_on": "2006-06-15"}),
    ]
    for unit, action, body in steps:
        clerk[unit].post(f"/members/{comrade}/cases/{case2}/{action}", body)
    last = daning.post(f"/members/{comrade}/activities",
                       {"kind": "组织生活会", "occurred_on": "2006-06-20"})

    # The dissolved factory's token went with it.
    gone = clerk["zb-factory"].http.get("/units/zb-factory/queue")
    assert gone.status_code == 401

    # --- read back ------------------------------------------------------------------------
    caught_up = last["position"]
    found = clerk["daning-center"].get("/members", q=LIU_YANG_ID_NUMBER, min_position=caught_up)
    assert found == [{"member_id": liu, "name": "刘*"}]

    status = auditor.get(f"/members/{liu}", on="2011-09-19", min_position=caught_up)
    assert (status["holder_unit_id"], status["status"]) == ("sh-univ", "attached")
    assert status["open_case_id"] == case1 and status["in_transit_to"] is None
    case = auditor.get(f"/cases/{case1}", on="2011-09-19")
    assert case["first_responder"] == "sh-residence-center"
    assert case["outcome"] == "dropped"
    assert case["path"] == ["sh-residence-center", "home-county"]
    assert case["closed_on"] is None
    findings = auditor.get("/compliance/findings", on="2011-09-19", rule="R5")
    assert [(f["severity"], f["member_id"], f["unit_id"], f["detail"]) for f in findings] == [
        ("breach", liu, "sh-residence-center", "dropped")
    ]
    cards = {c["unit_id"]: c for c in auditor.get("/scorecards", on="2011-09-19")}
    residence = cards["sh-residence-center"]
    assert (residence["answered_first"], residence["seen_through"], residence["dropped"]) == (
        1, 0, 1
    )
    assert cards["sh-org-dept"]["answered_first"] == 0

    old = auditor.get(f"/members/{comrade}")
    assert (old["holder_unit_id"], old["since"], old["open_case_id"]) == (
        "daning-center", "2006-06-05", None
    )
    settled = auditor.get(f"/cases/{case2}")
    assert settled["first_responder"] == "daning-center"
    assert settled["outcome"] == "seen_through" and settled["closed_on"] == "2006-06-20"
    card = auditor.get("/units/daning-center/scorecard", on="2006-06-20")
    assert (card["answered_first"], card["seen_through"], card["dropped"]) == (1, 1, 0)
    assert card["median_days_to_attachment"] == 28
    judged = {
        (f["rule"], f["severity"], f["since"], f["resolved"])
        for f in auditor.get("/compliance/findings", on="2006-06-20")
        if f["member_id"] == comrade
    }
    assert judged == {
        ("R1", "override", "2006-06-05", None),
        ("R8", "breach", "2004-03-31", "2006-06-05"),
        ("R7", "breach", "2004-10-01", "2006-05-08"),
    }
    audit = auditor.get("/audit/status")
    assert audit["log_size"] == caught_up and audit["last_tree_head"] is None
    history = auditor.get(f"/members/{comrade}/history")
    assert len(history["trail"]) == 11
    assert [t["unit_id"] for t in history["trail"]][-4:] == [
        "factory-superior", "daning-center", "factory-superior", "daning-center"
    ]

    # The projection follower: a thread beside SQLite, a process of its own on PostgreSQL.
    follower = httpx.get(f"{server.base}/healthz", timeout=10).json()["follower"]
    if server.env["HARBOR_DATABASE_URL"].startswith("sqlite"):
        assert follower == {"runs_in": "thread"}
    else:
        assert follower["runs_in"] == "process" and follower["restarts"] == 0, follower

    # harbor serve counts its collector's pauses (store/collection.py, serving_collections).
    metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
    assert 'harbor_gc_collections_total{generation="0"}' in metrics

    # --- a clean stop ------------------------------------------------------------------
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make run did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM")
    time.sleep(0.5)  # let the reader thread take the last lines
    text = server.drain()
    assert "Traceback" not in text, text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base}/healthz", timeout=2)
