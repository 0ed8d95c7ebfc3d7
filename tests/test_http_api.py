"""The HTTP API, endpoint by endpoint, on both backends.

Every command route records its event (201; 200 for an idempotent replay),
every query answers, and every refusal is application/problem+json with the
right status, a stable code and the offending field — with nothing stored.
The `Api` helper checks the last two for every request it makes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.demo import DemoMembers, load_article_cases
from api.http.app import MAX_BODY, create_app
from api.http.routes.commands import CASE_ACTIONS, MEMBER_ACTIONS
from domain.registry import SHANGHAI, Actor, Registry
from store import open_registry
from tests.conftest import TODAY, empty_for_a_server
from tests.support import event_count, register_article_units

PROBLEM = "application/problem+json"
ADMIN_UNIT = "sh-org-dept"


class Api:
    """A test client that checks every answer it gets.

    - never a 5xx (unless the test says it expects one);
    - every 4xx is problem+json (status, code, detail, field) and stored nothing.
    """

    def __init__(self, client: TestClient, app: FastAPI, registry: Registry):
        self.client = client
        self.app = app
        self.registry = registry

    def token(
        self,
        unit: str,
        role: str = "unit",
        holder: str | None = None,
        expires_on: date | None = None,
    ) -> str:
        """A fresh token for ``unit``."""
        issued: str = self.app.state.tokens.issue(
            unit, role, holder or f"{role}-clerk-{unit}", expires_on=expires_on
        )
        return issued

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        json_body: Any = None,
        content: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        server_error_ok: bool = False,
    ) -> httpx.Response:
        """One request, checked."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        before = event_count(self.registry)
        response = self.client.request(
            method, path, json=json_body, content=content, params=params, headers=sent
        )
        if not server_error_ok:
            assert response.status_code < 500, (method, path, response.status_code, response.text)
        if 400 <= response.status_code < 500:
            check_problem(response)
            assert event_count(self.registry) == before, (
                f"{method} {path} answered {response.status_code} but stored events"
            )
        return response

    def post(self, path: str, token: str | None, body: Any, **kw: Any) -> httpx.Response:
        """POST a JSON body."""
        return self.call("POST", path, token, json_body=body, **kw)

    def get(self, path: str, token: str | None, **kw: Any) -> httpx.Response:
        """GET."""
        return self.call("GET", path, token, **kw)


def check_problem(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document carrying Harbor's code and field."""
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert "field" in body, body
    assert body["type"].endswith(body["code"])
    return body


def refused(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """The response is this refusal (and, via Api.call, stored nothing)."""
    body = check_problem(response, status)
    assert body["code"] == code, body
    if field is not None:
        assert body["field"] == field, body
    return body


@pytest.fixture(params=["off", "on"], ids=["commit alone", "group commit"])
def registry(store_url: str, request: pytest.FixtureRequest) -> Iterator[Registry]:
    """conftest's ``registry``, plus a fresh projection tracking table on PostgreSQL
    (conftest.empty_for_a_server says why); with group commit off, and on as harbor
    serve runs it (commands on the event loop then wait for the committer's call back,
    api/http/on_loop.py)."""
    if store_url.startswith("postgres"):
        empty_for_a_server(store_url)
    opened = open_registry(
        store_url, clock=lambda: TODAY, extra_env={"HARBOR_GROUP_COMMIT": request.param}
    )
    try:
        yield opened
    finally:
        opened.close()


def make_api(registry: Registry) -> Iterator[Api]:
    """An app on ``registry`` with its projection follower running."""
    app = create_app(registry)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, app, registry)


@pytest.fixture
def api(registry: Registry) -> Iterator[Api]:
    """The article's eight units, no members yet."""
    register_article_units(registry)
    yield from make_api(registry)


@dataclass
class Article:
    """The article's two cases loaded, with the ids the tests need."""

    api: Api
    members: DemoMembers
    auditor: str
    admin: str

    def case_of(self, member: UUID) -> str:
        """The (only) case id of a demo member."""
        (case_id,) = self.api.registry.member(member).state.cases
        return str(case_id)


@pytest.fixture
def article(registry: Registry) -> Iterator[Article]:
    """Units and both cases of cases.md, projected."""
    members = load_article_cases(registry)
    for api in make_api(registry):
        auditor = api.token(ADMIN_UNIT, "auditor")
        wait(api, auditor, registry.position())
        yield Article(api, members, auditor=auditor, admin=api.token(ADMIN_UNIT, "admin"))


def stored_since(registry: Registry, after: int) -> list[Any]:
    """The domain events stored after log position ``after``."""
    notes = registry.recorder.select_notifications(after + 1, 1000)
    return [registry.mapper.to_domain_event(n) for n in notes]


def wait(api: Api, token: str, position: int) -> None:
    """Read-your-writes: block until the projections folded ``position``."""
    response = api.get("/scorecards", token, params={"min_position": position})
    assert response.status_code == 200, response.text


# --- every command route --------------------------------------------------------------

M = "/members/{m}"
C1 = "/members/{m}/cases/{c1}"
C2 = "/members/{m}/cases/{c2}"

# (acting unit, path, body, event it stores) — one member's life, touching every route.
# sh-univ enrols and holds a probationary member; daning-center answers first; letters
# are declined, voided, expired and finally used by sh-residence-center; a second case
# is withdrawn.
FLOW: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "sh-univ",
        "/members",
        {
            "name": "王小明",
            "id_number": "110101199505050017",
            "standing": "probationary",
            "household_region": "外省某县",
            "probation_started_on": "2024-01-10",
            "developing_unit_id": "sh-univ",
            "occurred_on": "2024-01-10",
        },
        "MemberEnrolled",
    ),
    ("sh-univ", f"{M}/probation-extensions", {"months": 2, "occurred_on": "2024-02-01"},
     "ProbationExtended"),
    (
        "daning-center",
        f"{M}/inquiries",
        {
            "channel": "walk_in",
            "summary": "毕业后申请将组织关系转入居住地",
            "prior_contacts": [{"who": "单位人事", "answer": "单位没有党组织"}],
            "occurred_on": "2024-03-01",
        },
        "InquiryReceived",
    ),
    ("daning-center", f"{C1}/requirements",
     {"documents": ["租赁合同", "介绍信"], "occurred_on": "2024-03-01"}, "RequirementsNotified"),
    ("daning-center", f"{C1}/evidence",
     {"kind": "lease", "reference": "租赁合同 2024-17", "valid_until": "2030-01-01",
      "occurred_on": "2024-03-02"}, "EvidenceRecorded"),
    ("daning-center", f"{C1}/archive-reviews",
     {"finding": "档案齐全", "occurred_on": "2024-03-03"}, "ArchiveReviewed"),
    ("daning-center", f"{C1}/origin-contacts",
     {"contacted_unit_id": "sh-univ", "outcome": "reached", "occurred_on": "2024-03-04"},
     "OriginContacted"),
    ("daning-center", f"{C1}/consultations",
     {"consulted_unit_id": "hongkou-center", "note": "通报情况", "occurred_on": "2024-03-05"},
     "UnitConsulted"),
    ("daning-center", f"{C1}/introductions",
     {"to_name": "档案管理部门", "purpose": "查阅个人档案", "occurred_on": "2024-03-05"},
     "IntroductionIssued"),
    ("daning-center", f"{C1}/referrals",
     {"to_unit_id": "hongkou-center", "handover": "warm", "reason": "居住在虹口",
      "occurred_on": "2024-03-06"}, "Referred"),
    ("hongkou-center", f"{C1}/referral-declines",
     {"reason_code": "not_our_area", "note": "已搬离", "occurred_on": "2024-03-07"},
     "ReferralDeclined"),
    ("daning-center", f"{C1}/referrals",
     {"to_unit_id": "sh-residence-center", "handover": "warm", "reason": "现居住地",
      "occurred_on": "2024-03-08"}, "Referred"),
    ("sh-residence-center", f"{C1}/referral-acceptances", {"occurred_on": "2024-03-09"},
     "ReferralAccepted"),
    ("sh-univ", f"{C1}/holds",
     {"rule": "R3", "note": "等待材料", "until": "2024-04-01", "occurred_on": "2024-03-20"},
     "TransferHeld"),
    ("sh-univ", f"{C1}/performance-reports",
     {"to_unit_id": "sh-residence-center", "covering_from": "2024-01-10",
      "covering_to": "2024-03-20", "occurred_on": "2024-03-20"}, "PerformanceReportSent"),
    ("sh-univ", f"{C1}/letters",
     {"letter_no": "2024-001", "to_unit_id": "hongkou-center", "dues_paid_through": "2024-02",
      "occurred_on": "2024-03-25"}, "LetterIssued"),
    ("hongkou-center", f"{C1}/letter-declines",
     {"letter_no": "2024-001", "reason_code": "no_residence_evidence",
      "occurred_on": "2024-03-26"}, "LetterDeclined"),
    ("sh-univ", f"{C1}/letters",
     {"letter_no": "2024-002", "to_unit_id": "sh-residence-center",
      "dues_paid_through": "2024-02", "occurred_on": "2024-03-26"}, "LetterIssued"),
    ("sh-univ", f"{C1}/letter-voids",
     {"letter_no": "2024-002", "reason": "lost", "occurred_on": "2024-03-27"}, "LetterVoided"),
    ("sh-univ", f"{C1}/letters",
     {"letter_no": "2024-003", "to_unit_id": "sh-residence-center",
      "dues_paid_through": "2024-02", "valid_until": "2024-04-30", "occurred_on": "2024-03-28"},
     "LetterIssued"),
    ("sh-univ", f"{C1}/letter-expiries", {"letter_no": "2024-003", "occurred_on": "2024-05-02"},
     "LetterExpired"),
    ("sh-univ", f"{C1}/letters",
     {"letter_no": "2024-004", "to_unit_id": "sh-residence-center",
      "dues_paid_through": "2024-04", "occurred_on": "2024-05-03"}, "LetterIssued"),
    ("sh-residence-center", f"{C1}/attachments",
     {"basis": "residence", "letter_no": "2024-004", "occurred_on": "2024-05-05"}, "Attached"),
    ("sh-residence-center", f"{M}/dues",
     {"months_from": "2024-05", "months_to": "2024-05", "amount": "1.50",
      "occurred_on": "2024-05-06"}, "DuesReceived"),
    ("sh-residence-center", f"{M}/contacts",
     {"channel": "phone", "note": "通知参加组织生活", "occurred_on": "2024-05-07"}, "ContactMade"),
    ("sh-residence-center", f"{M}/confirmation", {"occurred_on": "2024-05-08"},
     "MembershipConfirmed"),
    ("sh-univ", f"{C1}/receipts", {"letter_no": "2024-004", "occurred_on": "2024-05-10"},
     "ReceiptReturned"),
    ("sh-residence-center", f"{M}/activities", {"kind": "组织生活会", "occurred_on": "2024-06-10"},
     "ActivityAttended"),
    ("sh-residence-center", f"{M}/voids",
     {"voided": "{contact}", "reason": "记错了日期", "occurred_on": "2024-06-11"}, "EntryVoided"),
    ("hongkou-center", f"{M}/inquiries",
     {"channel": "phone", "summary": "咨询", "occurred_on": "2024-07-01"}, "InquiryReceived"),
    ("hongkou-center", f"{C2}/withdrawals", {"reason": "本人撤回", "occurred_on": "2024-07-02"},
     "CaseWithdrawn"),
]


def test_the_flow_covers_every_command_route() -> None:
    paths = {path.rsplit("/", 1)[-1] for _, path, _, _ in FLOW}
    assert set(CASE_ACTIONS) <= paths
    assert set(MEMBER_ACTIONS) <= paths
    assert {"members", "inquiries"} <= paths


def test_every_command_route_records_its_event_and_replays_without_storing(api: Api) -> None:
    registry = api.registry
    tokens = {unit: api.token(unit, holder=f"clerk of {unit}") for unit, *_ in FLOW}
    ids: dict[str, Any] = {}
    for step, (unit, template, body, event_name) in enumerate(FLOW):
        path = template.format(**ids)
        sent = {k: (ids["contact"] if v == "{contact}" else v) for k, v in body.items()}
        head, count = registry.position(), event_count(registry)
        key = f"flow-{step}"
        response = api.post(path, tokens[unit], sent, headers={"Idempotency-Key": key})
        assert response.status_code == 201, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
        result = response.json()
        assert result["replayed"] is False
        assert result["position"] == registry.position() > head
        new = stored_since(registry, head)
        assert event_count(registry) == count + len(new)
        (event,) = [e for e in new if type(e).__name__ == event_name]
        assert event.unit_id == unit  # the acting unit comes from the token
        assert event.recorded_by == f"clerk of {unit}"
        assert event.occurred_on == date.fromisoformat(body["occurred_on"])
        assert result["member_id"] == str(event.originator_id)
        assert result["version"] == event.originator_version
        if "/cases/" in template:
            assert str(event.case_id) == path.split("/")[4]
            assert result["case_id"] == path.split("/")[4]
        if event_name == "MemberEnrolled":
            ids["m"] = result["member_id"]
        if event_name == "InquiryReceived":
            ids["c2" if "c1" in ids else "c1"] = result["case_id"]
            assert result["first_responder"] == ("daning-center" if "c2" not in ids else unit)
        if event_name == "ContactMade":
            ids["contact"] = result["position"]

        # The same key and body again: the first outcome, nothing stored.
        again = api.post(path, tokens[unit], sent, headers={"Idempotency-Key": key})
        assert again.status_code == 200, again.text
        assert again.json() == {**result, "replayed": True}
        assert registry.position() == result["position"]
        assert event_count(registry) == count + len(new)

    member = registry.member(ids["m"]).state
    assert member.holder_unit_id == "sh-residence-center"
    assert member.standing.value == "full"
    assert [c.is_open for c in member.cases.values()] == [False, False]


def test_unit_routes_register_rename_and_dissolve(api: Api) -> None:
    registry = api.registry
    admin = api.token(ADMIN_UNIT, "admin", holder="组织部管理员")
    steps: list[tuple[str, dict[str, Any], str]] = [
        (
            "/units",
            {"code": "new-center", "name": "新社区党员服务中心", "kind": "service_center",
             "region": "上海·静安", "parent_unit_id": "sh-org-dept", "occurred_on": "2020-01-01"},
            "UnitRegistered",
        ),
        ("/units/new-center/rename", {"name": "静安社区党员服务中心", "occurred_on": "2021-01-01"},
         "UnitRenamed"),
        ("/units/new-center/dissolution",
         {"successor_unit_id": "daning-center", "occurred_on": "2022-01-01"}, "UnitDissolved"),
    ]
    for step, (path, body, event_name) in enumerate(steps):
        head = registry.position()
        response = api.post(path, admin, body, headers={"Idempotency-Key": f"unit-{step}"})
        assert response.status_code == 201, response.text
        assert response.json()["unit_id"] == "new-center"
        assert response.json()["position"] == registry.position()
        (event,) = stored_since(registry, head)
        assert type(event).__name__ == event_name
        assert event.unit_id == ADMIN_UNIT and event.recorded_by == "组织部管理员"
        replay = api.post(path, admin, body, headers={"Idempotency-Key": f"unit-{step}"})
        assert replay.status_code == 200 and replay.json()["replayed"] is True
        assert registry.position() == response.json()["position"]
    unit = registry.unit("new-center")
    assert unit.name == "静安社区党员服务中心"
    assert unit.dissolved_on == date(2022, 1, 1) and unit.successor_unit_id == "daning-center"


def test_the_admin_registers_its_own_unit_on_an_empty_log(registry: Registry) -> None:
    for api in make_api(registry):
        admin = api.token(ADMIN_UNIT, "admin")
        body = {"code": ADMIN_UNIT, "name": "上海市委组织部", "kind": "org_department",
                "region": "上海", "occurred_on": "1990-01-01"}
        response = api.post("/units", admin, body)
        assert response.status_code == 201, response.text
        assert registry.unit(ADMIN_UNIT).kind.value == "org_department"
        refused(api.post("/units", admin, body), 409, "DUPLICATE_UNIT", "code")


# --- queries --------------------------------------------------------------------------


def test_member_lookup_by_id_number_or_name_masks_the_name(article: Article) -> None:
    api, liu = article.api, str(article.members.liu_yang)
    stranger = api.token("hongkou-center")
    for q in ("110101199001010011", " 110101199001010011 ", "刘洋"):
        response = api.get("/members", stranger, params={"q": q})
        assert response.status_code == 200
        assert response.json() == [{"member_id": liu, "name": "刘*"}]
    assert api.get("/members", stranger, params={"q": "310109195001010022"}).json() == [
        {"member_id": str(article.members.old_comrade), "name": "老**"}
    ]
    assert api.get("/members", stranger, params={"q": "110101199001019999"}).json() == []
    assert api.get("/members", stranger, params={"q": "刘"}).json() == []
    refused(api.get("/members", stranger, params={"q": ""}), 422, "INVALID_INPUT", "q")
    refused(api.get("/members", stranger), 422, "INVALID_INPUT", "q")


def test_me_says_whom_a_token_speaks_for(article: Article) -> None:
    api = article.api
    clerk = api.token("daning-center", holder="王老师", expires_on=TODAY + timedelta(days=9))
    assert api.get("/me", clerk).json() == {
        "unit_id": "daning-center",
        "unit_name": "闸北区大宁社区（街道）党员服务中心",
        "role": "unit",
        "holder": "王老师",
        "expires_on": (TODAY + timedelta(days=9)).isoformat(),
    }
    assert api.get("/me", article.auditor).json()["role"] == "auditor"
    assert api.get("/me", article.admin).json()["role"] == "admin"
    refused(api.get("/me", None), 401, "UNAUTHORIZED")


def test_member_status_holder_and_open_case(article: Article) -> None:
    api = article.api
    liu = api.get(f"/members/{article.members.liu_yang}", article.auditor,
                  params={"on": "2011-09-19"}).json()
    assert liu["holder_unit_id"] == "sh-univ" and liu["status"] == "attached"
    assert liu["in_transit_to"] is None
    assert liu["open_case_id"] == article.case_of(article.members.liu_yang)
    assert liu["name"] == "刘洋" and liu["standing"] == "probationary"
    assert liu["version"] == 5 and liu["on"] == "2011-09-19"
    comrade = api.get(f"/members/{article.members.old_comrade}", article.auditor).json()
    assert comrade["holder_unit_id"] == "daning-center" and comrade["since"] == "2006-06-05"
    assert comrade["open_case_id"] is None and comrade["on"] == TODAY.isoformat()
    refused(api.get(f"/members/{uuid4()}", article.auditor), 404, "UNKNOWN_MEMBER", "member_id")
    refused(api.get("/members/not-a-uuid", article.auditor), 422, "INVALID_INPUT", "member_id")


def test_member_status_is_answered_on_the_event_loop_on_postgresql(article: Article) -> None:
    """The same answers and refusals as from a request thread (the SQLite path)."""
    api = article.api
    on_postgres = api.registry.recorder.__class__.__name__.startswith("Postgres")
    assert (api.app.state.async_reads is not None) == on_postgres
    liu = article.members.liu_yang
    univ, stranger = api.token("sh-univ"), api.token("hongkou-center")

    answer = api.get(f"/members/{liu}", univ, params={"on": "2011-09-19"}).json()

    assert answer == api.app.state.models.member_status(liu, date(2011, 9, 19))
    refused(api.get(f"/members/{liu}", stranger), 403, "FORBIDDEN")
    refused(api.get(f"/members/{uuid4()}", univ), 404, "UNKNOWN_MEMBER", "member_id")
    refused(api.get(f"/members/{liu}", univ, params={"on": "1900-13-01"}), 422, "INVALID_INPUT")


def test_a_unit_may_read_a_member_from_its_first_inquiry_on(article: Article) -> None:
    """Who may read is decided on the member as it is now, not as a first read left it."""
    api = article.api
    liu = article.members.liu_yang
    stranger = api.token("hongkou-center")
    refused(api.get(f"/members/{liu}", stranger), 403, "FORBIDDEN")

    inquiry = api.post(f"/members/{liu}/inquiries", stranger,
                       {"channel": "walk_in", "summary": "came to ask"})
    assert inquiry.status_code == 201, inquiry.text
    position = inquiry.json()["position"]
    answer = api.get(f"/members/{liu}", stranger, params={"min_position": position})

    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == inquiry.json()["version"]


def test_history_now_as_of_as_recorded_and_at_a_position(article: Article) -> None:
    api, comrade = article.api, article.members.old_comrade
    path = f"/members/{comrade}/history"
    now = api.get(path, article.auditor).json()
    assert now["known"] is True and now["holder_unit_id"] == "daning-center"
    assert [t["event_type"] for t in now["trail"]] == [
        "MemberEnrolled", "DuesReceived", "InquiryReceived", "IntroductionIssued",
        "ArchiveReviewed", "UnitConsulted", "OriginContacted", "LetterIssued", "Attached",
        "ReceiptReturned", "ActivityAttended",
    ]
    (case,) = now["cases"]
    assert case["first_responder"] == "daning-center" and case["outcome"] == "seen_through"

    # as_of: what had happened by then (before the letter: still with the dissolved factory).
    before = api.get(path, article.auditor, params={"as_of": "2006-05-31"}).json()
    assert before["holder_unit_id"] == "zb-factory" and before["as_of"] == "2006-05-31"
    assert all(t["occurred_on"] <= "2006-05-31" for t in before["trail"])
    assert len(before["trail"]) == 7
    after = api.get(path, article.auditor, params={"as_of": "2006-06-05"}).json()
    assert after["holder_unit_id"] == "daning-center" and len(after["trail"]) == 9

    # position: what the registry knew at that log position.
    positions = [t["position"] for t in now["trail"]]
    at = api.get(path, article.auditor, params={"position": positions[3]}).json()
    assert [t["position"] for t in at["trail"]] == positions[:4]
    assert at["position"] == positions[3]

    # as_recorded: everything was recorded today; nothing was known in 2000.
    today = datetime.now(SHANGHAI).date()
    recorded = api.get(path, article.auditor, params={"as_recorded": today.isoformat()}).json()
    assert [t["position"] for t in recorded["trail"]] == positions
    then = api.get(path, article.auditor, params={"as_recorded": "2000-01-01"}).json()
    assert then["known"] is False and then["trail"] == []

    refused(api.get(path, article.auditor, params={"as_of": "2006-05-31", "position": 3}),
            422, "INVALID_INPUT")
    refused(api.get(path, article.auditor, params={"as_of": "yesterday"}), 422, "INVALID_INPUT",
            "as_of")
    refused(api.get(path, article.auditor, params={"position": -1}), 422, "INVALID_INPUT",
            "position")
    refused(api.get(f"/members/{uuid4()}/history", article.auditor), 404, "UNKNOWN_MEMBER")


def test_case_trail_first_responder_path_and_outcome(article: Article) -> None:
    api = article.api
    case = api.get(f"/cases/{article.case_of(article.members.liu_yang)}", article.auditor,
                   params={"on": "2011-09-19"}).json()
    assert case["first_responder"] == "sh-residence-center"
    assert case["path"] == ["sh-residence-center", "home-county"]
    assert case["outcome"] == "dropped" and case["closed_on"] is None
    assert [(r["to"], r["handover"]) for r in case["referrals"]] == [("home-county", "cold")]
    assert [t["unit_id"] for t in case["trail"]] == [
        "sh-residence-center", "sh-residence-center", "sh-org-dept", "sh-org-dept"
    ]
    seen = api.get(f"/cases/{article.case_of(article.members.old_comrade)}",
                   article.auditor).json()
    assert seen["outcome"] == "seen_through" and seen["closed_on"] == "2006-06-20"
    assert seen["attached_unit_id"] == "daning-center" and seen["attached_on"] == "2006-06-05"
    refused(api.get(f"/cases/{uuid4()}", article.auditor), 404, "UNKNOWN_CASE", "case_id")
    refused(api.get("/cases/42", article.auditor), 422, "INVALID_INPUT", "case_id")


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    """The rows of a text/csv answer."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.startswith("\ufeff")  # the byte order mark Excel needs
    return list(csv.DictReader(io.StringIO(response.text[1:])))


def as_text(value: Any) -> str:
    """A JSON value as the CSV answers write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def test_unit_queue_as_json_and_csv(article: Article) -> None:
    api = article.api
    center = api.token("sh-residence-center")
    queue = api.get("/units/sh-residence-center/queue", center, params={"on": "2011-09-19"})
    data = queue.json()
    assert data["unit_id"] == "sh-residence-center" and data["on"] == "2011-09-19"
    (first,) = data["first_responder_cases"]
    assert first["member_id"] == str(article.members.liu_yang)
    assert first["outcome"] == "dropped"
    assert data["todo"] == []
    # 未办结: the cold referral home-county never answered.
    (referral,) = data["waiting_on_others"]
    assert (referral["kind"], referral["to"], referral["handover"]) == (
        "referral", "home-county", "cold"
    )
    # 预警: nobody has acted in the case since 1 September; it stalls on 2 October.
    (due,) = data["due_soon"]
    assert (due["rule"], due["detail"], due["due_on"], due["days_left"]) == (
        "R5", "stalled", "2011-10-02", 13
    )
    assert due["member_name"] == "刘洋" and data["due_within_days"] == 14

    rows = csv_rows(api.get("/units/sh-residence-center/queue", center,
                            params={"on": "2011-09-19"}, headers={"Accept": "text/csv"}))
    assert [(r["queue"], r["case_id"], r["member_id"]) for r in rows] == [
        ("waiting_on_others", referral["case_id"], referral["member_id"]),
        ("first_responder_cases", first["case_id"], first["member_id"]),
        ("due_soon", due["case_id"], due["member_id"]),
    ]
    assert rows[0]["to"] == "home-county"
    assert (rows[2]["rule"], rows[2]["due_on"], rows[2]["action"]) == (
        "R5", "2011-10-02", due["action"]
    )
    quiet = api.get("/units/sh-residence-center/queue", center,
                    params={"on": "2011-09-19", "within": 12}).json()
    assert quiet["due_soon"] == [] and quiet["due_within_days"] == 12
    for within in ("-1", "91", "two"):
        refused(api.get("/units/sh-residence-center/queue", center, params={"within": within}),
                422, "INVALID_INPUT", "within")

    # A letter in flight shows in the addressee's 待办 and the issuer's 未办结.
    univ = api.token("sh-univ")
    liu = article.members.liu_yang
    letter = api.post(f"/members/{liu}/cases/{article.case_of(liu)}/letters", univ,
                      {"letter_no": "2011-009", "to_unit_id": "hongkou-center",
                       "dues_paid_through": "2011-08", "occurred_on": "2011-09-01",
                       "valid_until": "2011-10-01"})
    assert letter.status_code == 201, letter.text
    hongkou = api.token("hongkou-center")
    todo = api.get("/units/hongkou-center/queue", hongkou,
                   params={"min_position": letter.json()["position"]}).json()["todo"]
    status = api.get(f"/members/{liu}", hongkou).json()  # in transit to it: it may read
    assert (status["status"], status["holder_unit_id"], status["in_transit_to"]) == (
        "in_transit", "sh-univ", "hongkou-center"
    )
    assert status["letter_no"] == "2011-009"
    assert [(i["kind"], i["letter_no"], i["from"]) for i in todo] == [
        ("letter", "2011-009", "sh-univ")
    ]
    for on, left in (("2011-09-21", 10), ("2011-10-01", 0), ("2011-10-04", -3)):
        item = api.get("/units/hongkou-center/queue", hongkou, params={"on": on}).json()["todo"]
        assert [i["days_left"] for i in item] == [left], on
    waiting = api.get("/units/sh-univ/queue", univ, headers={"Accept": "text/csv"})
    assert [(r["queue"], r["letter_no"]) for r in csv_rows(waiting)] == [
        ("waiting_on_others", "2011-009")
    ]
    assert "days_left" in csv_rows(waiting)[0]
    refused(api.get("/units/nowhere/queue", article.auditor), 404, "UNKNOWN_UNIT", "unit_id")
    # A code with a space around it is the unit's code, as the store keeps it (not an
    # empty queue, a zero scorecard or a refusal of the unit's own reads).
    padded = "/units/%20sh-residence-center"
    same = api.get(f"{padded}/queue", center, params={"on": "2011-09-19"})
    assert same.status_code == 200 and same.json() == data
    card = api.get(f"{padded}/scorecard", center, params={"on": "2011-09-19"}).json()
    assert (card["unit_id"], card["answered_first"]) == ("sh-residence-center", 1)
    assert api.get(f"{padded}/members", center).status_code == 200


def test_queue_csv_keeps_every_field_of_every_row(article: Article) -> None:
    api = article.api
    center = api.token("sh-residence-center")
    params = {"on": "2011-09-19"}
    data = api.get("/units/sh-residence-center/queue", center, params=params).json()
    rows = csv_rows(api.get("/units/sh-residence-center/queue", center, params=params,
                            headers={"Accept": "text/csv"}))
    items = [
        {"queue": name, **item}
        for name in ("todo", "waiting_on_others", "first_responder_cases", "due_soon")
        for item in data[name]
    ]
    assert len(rows) == len(items) == 3
    for row, item in zip(rows, items, strict=True):
        assert {k: row.get(k) for k in item} == {k: as_text(v) for k, v in item.items()}


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        ("2011-09-19", {"sh-residence-center": (1, 0, 1), "sh-org-dept": (0, 0, 0),
                        "daning-center": (1, 1, 0)}),
        ("2006-06-20", {"sh-residence-center": (0, 0, 0), "daning-center": (1, 1, 0)}),
    ],
)
def test_scorecards_judged_on_a_date_as_json_and_csv(
    article: Article, on: str, expected: dict[str, tuple[int, int, int]]
) -> None:
    api = article.api
    for unit, (first, through, dropped) in expected.items():
        card = api.get(f"/units/{unit}/scorecard", article.auditor, params={"on": on}).json()
        assert (card["unit_id"], card["answered_first"], card["seen_through"],
                card["dropped"]) == (unit, first, through, dropped)
        rows = csv_rows(api.get(f"/units/{unit}/scorecard", article.auditor,
                                params={"on": on}, headers={"Accept": "text/csv"}))
        assert rows == [{k: as_text(v) for k, v in card.items()}]
    daning = api.get("/units/daning-center/scorecard", article.auditor, params={"on": on}).json()
    assert daning["median_days_to_attachment"] == 28

    cards = api.get("/scorecards", article.auditor, params={"on": on}).json()
    assert {c["unit_id"] for c in cards} >= set(expected)
    rows = csv_rows(api.get("/scorecards", article.auditor, params={"on": on},
                            headers={"Accept": "text/csv"}))
    assert rows == [{k: as_text(v) for k, v in card.items()} for card in cards]
    refused(api.get("/units/nowhere/scorecard", article.auditor), 404, "UNKNOWN_UNIT")


def test_compliance_findings_with_filters_as_json_and_csv(article: Article) -> None:
    api, token = article.api, article.auditor
    liu, comrade = str(article.members.liu_yang), str(article.members.old_comrade)

    def findings(**params: Any) -> list[dict[str, Any]]:
        response = api.get("/compliance/findings", token, params=params)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()
        return rows

    on_article_day = findings(on="2011-09-19")
    assert {"rule": "R5", "severity": "breach", "member_id": liu, "unit_id": "sh-residence-center",
            "since": "2011-07-20", "resolved": None} in [
        {k: f[k] for k in ("rule", "severity", "member_id", "unit_id", "since", "resolved")}
        for f in on_article_day
    ]
    # Each names its member: the auditor reads every member.
    assert {(f["member_id"], f["member_name"]) for f in on_article_day} >= {(liu, "刘洋")}
    settled = {(f["rule"], f["severity"], f["since"], f["resolved"])
               for f in findings(on="2006-06-20") if f["member_id"] == comrade}
    assert settled == {
        ("R1", "override", "2006-06-05", None),
        ("R8", "breach", "2004-03-31", "2006-06-05"),
        ("R7", "breach", "2004-10-01", "2006-05-08"),
    }
    everything = findings()
    assert everything, "the article has findings today"
    for params, keep in [
        ({"rule": "R5"}, lambda f: f["rule"] == "R5"),
        ({"unit": "daning-center"}, lambda f: f["unit_id"] == "daning-center"),
        ({"severity": "override"}, lambda f: f["severity"] == "override"),
        ({"severity": "breach"}, lambda f: f["severity"] == "breach"),
        ({"open": "true"}, lambda f: f["resolved"] is None),
        ({"rule": "R1", "severity": "override", "unit": "daning-center"},
         lambda f: f["rule"] == "R1"),
    ]:
        assert findings(**params) == [f for f in everything if keep(f)], params
    assert findings(rule="R1") and findings(rule="R5")
    assert findings(rule="R6") == []

    rows = csv_rows(api.get("/compliance/findings", token, params={"on": "2011-09-19"},
                            headers={"Accept": "text/csv"}))
    assert rows == [{k: as_text(v) for k, v in f.items()} for f in on_article_day]
    for bad in ({"rule": "R10"}, {"severity": "minor"}, {"open": "maybe"}, {"on": "2011-13-01"},
                {"unit": "x" * 65}):
        refused(api.get("/compliance/findings", token, params=bad), 422, "INVALID_INPUT",
                next(iter(bad)))


def test_lost_contact_reports_the_latest_stretch_judged_on_the_date(article: Article) -> None:
    # docs/projections.md: R7 is the latest stretch without word of the member by the date
    # judged — what cases.md expects for the old comrade on 2006-06-20 (see the closing note
    # of the projections issue for why earlier stretches are not repeated).
    comrade = str(article.members.old_comrade)

    def periods(on: str) -> set[tuple[str, str | None]]:
        found = article.api.get("/compliance/findings", article.auditor,
                                params={"on": on, "rule": "R7"}).json()
        return {(f["since"], f["resolved"]) for f in found if f["member_id"] == comrade}

    assert periods("2006-06-20") == {("2004-10-01", "2006-05-08")}
    assert periods("2011-09-19") == {("2006-12-21", None)}


def test_audit_status_healthz_and_metrics(article: Article) -> None:
    api, registry = article.api, article.api.registry
    status = api.get("/audit/status", article.auditor).json()
    assert status["log_size"] == registry.position()
    assert {"last_tree_head", "last_verification"} <= set(status)
    assert api.get("/audit/status", article.admin).status_code == 200

    wait(api, article.auditor, registry.position())
    health = api.get("/healthz", None).json()
    assert health["status"] == "ok"
    assert health["log_position"] == registry.position()
    assert health["projected_position"] == registry.position()
    assert health["projection_lag"] == 0

    def metrics() -> str:
        response = api.get("/metrics", None)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    def sample(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = metrics()
    clerk = api.token("hongkou-center")
    liu = article.members.liu_yang
    inquiry = {"channel": "phone", "summary": "咨询转接", "occurred_on": "2011-10-01"}
    assert api.post(f"/members/{liu}/inquiries", clerk, inquiry).status_code == 201
    enrol = {"name": "刘洋", "id_number": "110101199001010011", "standing": "full",
             "household_region": "上海"}
    refused(api.post("/members", clerk, enrol), 409, "DUPLICATE_MEMBER", "id_number")
    after = metrics()
    commands = 'harbor_commands_total{command="receive_inquiry"}'
    refusals = 'harbor_refusals_total{code="DUPLICATE_MEMBER"}'
    assert sample(after, commands) == sample(before, commands) + 1
    assert sample(after, refusals) == sample(before, refusals) + 1
    assert sample(after, "harbor_log_position") == registry.position()
    assert "harbor_projection_lag " in after
    assert 'harbor_request_seconds_count{route="/members/{member_id}/inquiries"}' in after
    shared = ("harbor_group_commit_transactions_total", "harbor_group_commit_commands_total")
    if registry.committer is None:
        assert not any(name in after for name in shared)
    else:  # the inquiry went through the committer (the refused enrolment stored nothing)
        for name in shared:
            assert sample(after, name) == sample(before, name) + 1, name
    for kind in ("counter", "gauge", "summary"):
        assert any(line.startswith("# TYPE harbor_") and line.endswith(kind)
                   for line in after.splitlines()), kind


def test_audit_bundle_of_a_member_once_sealed(
    article: Article, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.cli import main

    api, comrade = article.api, article.members.old_comrade
    path = f"/audit/members/{comrade}/bundle"
    refused(api.get(path, article.auditor), 409, "NOT_SEALED")
    refused(api.get(f"/audit/members/{uuid4()}/bundle", article.auditor), 404, "UNKNOWN_MEMBER")
    refused(api.get("/audit/members/42/bundle", article.auditor), 422, "INVALID_INPUT",
            "member_id")
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    monkeypatch.setenv("HARBOR_SIGNING_KEY", str(tmp_path / "signing.pem"))
    assert main(["keys", "init"]) == 0
    assert main(["seal"]) == 0
    refused(api.get(path, article.admin), 403, "FORBIDDEN")  # the admin reads no records
    for token in (article.auditor,):
        bundle = api.get(path, token)
        assert bundle.status_code == 200, bundle.text
        data = bundle.json()
        assert data["member_id"] == str(comrade)
        assert len(data["events"]) == 11
        assert data["tree_head"]["tree_size"] == api.registry.position()
    status = api.get("/audit/status", article.auditor).json()
    assert status["last_tree_head"]["tree_size"] == api.registry.position()
    assert status["unsealed_events"] == 0


def test_audit_proofs_over_http_verify_offline(
    article: Article, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.cli import main
    from audit.keys import load_public_keys
    from audit.proofs import verify_proof

    api, registry = article.api, article.api.registry
    refused(api.get("/audit/proofs/consistency", article.auditor, params={"old_size": 1}), 404,
            "NO_PROOF")
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    monkeypatch.setenv("HARBOR_SIGNING_KEY", str(tmp_path / "signing.pem"))
    assert main(["keys", "init"]) == 0
    assert main(["seal"]) == 0
    old_size = registry.position()
    registry.make_contact(Actor("daning-center", "王"), article.members.old_comrade,
                          occurred_on=date(2026, 1, 5), channel="phone", note="回访")
    assert main(["seal"]) == 0
    keys = load_public_keys(tmp_path / "harbor-public-keys")

    proof = api.get("/audit/proofs/consistency", article.auditor, params={"old_size": old_size})
    assert proof.status_code == 200, proof.text
    result = verify_proof(proof.json(), keys)
    assert result.proved and not result.problems
    inclusion = api.get("/audit/proofs/inclusion", article.auditor,
                        params={"position": 1, "size": old_size})
    assert inclusion.status_code == 200, inclusion.text
    assert verify_proof(inclusion.json(), keys).proved
    tampered = inclusion.json()
    tampered["event"]["state"] = tampered["event"]["state"][:-2] + "00"
    assert verify_proof(tampered, keys).problems

    refused(api.get("/audit/proofs/consistency", article.auditor,
                    params={"old_size": old_size + 1000}), 404, "NO_PROOF")
    refused(api.get("/audit/proofs/inclusion", article.auditor, params={"position": 0}), 422,
            "INVALID_INPUT", "position")
    refused(api.get("/audit/proofs/inclusion", article.admin, params={"position": 1}), 403,
            "FORBIDDEN")


# --- behaviour: problems, idempotency, versions, read-your-writes ------------------------


def test_malformed_and_invalid_input_is_422_problem_with_the_field(article: Article) -> None:
    api = article.api
    clerk = api.token("sh-org-dept")
    liu = article.members.liu_yang
    case = article.case_of(liu)
    good = {"channel": "phone", "summary": "咨询", "occurred_on": "2011-10-01"}
    cases: list[tuple[str, Any, str | None, str]] = [
        (f"/members/{liu}/inquiries", {**good, "colour": "red"}, "colour", "INVALID_INPUT"),
        (f"/members/{liu}/inquiries", {**good, "channel": "fax"}, "channel", "INVALID_INPUT"),
        (f"/members/{liu}/inquiries", {**good, "summary": ""}, "summary", "INVALID_INPUT"),
        (f"/members/{liu}/inquiries", {**good, "summary": "长" * 2001}, "summary",
         "INVALID_INPUT"),
        (f"/members/{liu}/inquiries", {**good, "occurred_on": "2011-02-30"}, "occurred_on",
         "INVALID_INPUT"),
        (f"/members/{liu}/inquiries", {**good, "occurred_on": "2027-01-01"}, "occurred_on",
         "INVALID_DATE"),
        (f"/members/{liu}/inquiries", {**good, "occurred_on": "2010-01-01"}, "occurred_on",
         "INVALID_DATE"),
        (f"/members/{liu}/inquiries", {**good, "prior_contacts": [{"who": "x"}]},
         "prior_contacts.0.answer", "INVALID_INPUT"),
        (f"/members/{liu}/inquiries", [good], None, "INVALID_INPUT"),
        (f"/members/{liu}/inquiries", {k: v for k, v in good.items() if k != "summary"},
         "summary", "INVALID_INPUT"),
        (f"/members/{liu}/probation-extensions", {"months": "twelve"}, "months",
         "INVALID_INPUT"),
        (f"/members/{liu}/probation-extensions", {"months": 13}, "months", "INVALID_INPUT"),
        (f"/members/{liu}/dues", {"months_from": "2011-13", "months_to": "2011-12",
                                  "amount": "1"}, "months_from", "INVALID_INPUT"),
        (f"/members/{liu}/dues", {"months_from": "2011-09", "months_to": "2011-08",
                                  "amount": "1", "occurred_on": "2011-10-01"}, "months_to",
         "INVALID_INPUT"),
        (f"/members/{liu}/dues", {"months_from": "2011-09", "months_to": "2011-09",
                                  "amount": "-1"}, "amount", "INVALID_INPUT"),
        (f"/members/{liu}/dues", {"months_from": "2011-09", "months_to": "2011-09",
                                  "amount": "NaN"}, "amount", "INVALID_INPUT"),
        (f"/members/{liu}/voids", {"voided": 0, "reason": "x"}, "voided", "INVALID_INPUT"),
        (f"/members/{liu}/voids", {"voided": 1, "reason": "x", "occurred_on": "2011-10-01"},
         "voided", "UNKNOWN_ENTRY"),
        (f"/members/{liu}/cases/{case}/referrals",
         {"to_unit_id": "nowhere", "handover": "warm", "reason": "r",
          "occurred_on": "2011-10-01"}, "to_unit_id", "UNKNOWN_UNIT"),
        (f"/members/{liu}/cases/{case}/letter-voids",
         {"letter_no": "1999-999", "reason": "r", "occurred_on": "2011-10-01"}, "letter_no",
         "UNKNOWN_LETTER"),
        (f"/members/{liu}/cases/{case}/origin-contacts",
         {"outcome": "reached", "occurred_on": "2011-10-01"}, "contacted_unit_id",
         "INVALID_INPUT"),
        (f"/members/{liu}/cases/{case}/letter-declines",
         {"letter_no": "x", "reason_code": "because"}, "reason_code", "INVALID_INPUT"),
        ("/members/not-a-uuid/inquiries", good, "member_id", "INVALID_INPUT"),
        (f"/members/{liu}/cases/not-a-uuid/evidence",
         {"kind": "lease", "reference": "r"}, "case_id", "INVALID_INPUT"),
        ("/members", {"name": "某", "id_number": "12345678901234567X", "standing": "full",
                      "household_region": "r", "probation_started_on": "2020-01-01"},
         "probation_started_on", "INVALID_INPUT"),
        ("/members", {"name": "某", "id_number": "1234567890123456", "standing": "full",
                      "household_region": "r"}, "id_number", "INVALID_INPUT"),
        ("/members", {"name": "某", "id_number": "12345678901234567Z", "standing": "full",
                      "household_region": "r"}, "id_number", "INVALID_INPUT"),
    ]
    for path, body, field, code in cases:
        response = api.post(path, clerk, body)
        problem = refused(response, 422, code)
        assert problem["field"] == field, (path, body, problem)
        assert problem["instance"] == path

    malformed = api.call("POST", f"/members/{liu}/inquiries", clerk, content=b'{"channel": ',
                         headers={"Content-Type": "application/json"})
    refused(malformed, 422, "INVALID_INPUT")
    for bad_match in ("abc", "-1", "1.5"):
        refused(api.post(f"/members/{liu}/inquiries", clerk, good,
                         headers={"If-Match": bad_match}), 422, "INVALID_INPUT", "If-Match")


def test_malformed_json_names_no_field(api: Api) -> None:
    clerk = api.token("daning-center")
    response = api.call("POST", "/members", clerk, content=b"{",
                        headers={"Content-Type": "application/json"})
    assert refused(response, 422, "INVALID_INPUT")["field"] is None


@pytest.mark.parametrize(
    "body", [b'{"channel": "phone", "summary": "\xff\xfe"}', b"[" * 5000 + b"]" * 5000],
    ids=["not-utf8", "too-deep"],
)
def test_undecodable_bodies_are_422(api: Api, body: bytes) -> None:
    clerk = api.token("daning-center")
    response = api.call("POST", "/members", clerk, content=body,
                        headers={"Content-Type": "application/json"})
    refused(response, 422, "INVALID_INPUT")


def test_rule_refusals_are_409_problems_and_store_nothing(article: Article) -> None:
    api, liu, comrade = article.api, article.members.liu_yang, article.members.old_comrade
    case1, case2 = article.case_of(liu), article.case_of(comrade)
    tokens = {u: api.token(u) for u in ("sh-univ", "daning-center", "hongkou-center",
                                         "sh-residence-center")}
    cases: list[tuple[str, str, dict[str, Any], str, str | None]] = [
        ("hongkou-center", f"/members/{liu}/cases/{case1}/letters",
         {"letter_no": "1", "to_unit_id": "daning-center", "dues_paid_through": "2011-09",
          "occurred_on": "2011-10-01"}, "R2_NOT_HOLDER", None),
        ("sh-univ", f"/members/{liu}/cases/{case1}/letters",
         {"letter_no": "1", "to_unit_id": "daning-center", "dues_paid_through": "2011-09",
          "occurred_on": "2011-10-01"}, "R4_REPORT_MISSING", "to_unit_id"),
        ("sh-univ", f"/members/{liu}/cases/{case1}/letters",
         {"letter_no": "1", "to_unit_id": "daning-center", "dues_paid_through": "2011-09",
          "occurred_on": "2012-01-15"}, "R3_NEAR_CONFIRMATION", "occurred_on"),
        ("sh-univ", f"/members/{liu}/cases/{case1}/letters",
         {"letter_no": "1", "to_unit_id": "zb-factory", "dues_paid_through": "2011-09",
          "occurred_on": "2011-10-01"}, "UNIT_DISSOLVED", "to_unit_id"),
        ("hongkou-center", f"/members/{liu}/cases/{case1}/attachments",
         {"basis": "workplace", "override_reason": "lost letter", "occurred_on": "2011-10-01"},
         "R1_BASIS_WITHOUT_EVIDENCE", "basis"),
        ("hongkou-center", f"/members/{liu}/cases/{case1}/attachments",
         {"basis": "other", "occurred_on": "2011-10-01"}, "R2_NOT_ADDRESSED", "letter_no"),
        ("hongkou-center", f"/members/{liu}/cases/{case1}/referral-acceptances",
         {"occurred_on": "2011-10-01"}, "NOT_ADDRESSEE", None),
        ("hongkou-center", f"/members/{liu}/confirmation", {"occurred_on": "2011-10-01"},
         "NOT_HOLDER", None),
        ("daning-center", f"/members/{comrade}/probation-extensions",
         {"months": 1, "occurred_on": "2011-10-01"}, "NOT_PROBATIONARY", None),
        ("daning-center", f"/members/{comrade}/cases/{case2}/evidence",
         {"kind": "lease", "reference": "r", "occurred_on": "2011-10-01"}, "R9_CASE_CLOSED",
         "case_id"),
        ("daning-center", f"/members/{comrade}/cases/{case2}/receipts",
         {"letter_no": "2006-001", "occurred_on": "2011-10-01"}, "NOT_ISSUER", None),
        ("sh-univ", "/members",
         {"name": "刘洋", "id_number": "110101199001010011", "standing": "full",
          "household_region": "上海"}, "DUPLICATE_MEMBER", "id_number"),
    ]
    for unit, path, body, code, field in cases:
        refused(api.post(path, tokens[unit], body), 409, code, field)

    # Rule refusals of the admin's unit routes are problems too.
    refused(api.post("/units", article.admin, {"code": "daning-center", "name": "n",
                                               "kind": "workplace", "region": "r"}),
            409, "DUPLICATE_UNIT", "code")
    refused(api.post("/units/zb-factory/dissolution", article.admin, {}), 409, "UNIT_DISSOLVED")


def test_unknown_member_case_and_unit_are_404(article: Article) -> None:
    api, liu = article.api, article.members.liu_yang
    clerk = api.token("sh-org-dept")
    nobody, no_case = uuid4(), uuid4()
    body = {"kind": "组织生活会"}
    refused(api.post(f"/members/{nobody}/activities", clerk, body), 404, "UNKNOWN_MEMBER",
            "member_id")
    refused(api.post(f"/members/{nobody}/inquiries", clerk,
                     {"channel": "phone", "summary": "s"}), 404, "UNKNOWN_MEMBER")
    refused(api.post(f"/members/{nobody}/cases/{no_case}/evidence", clerk,
                     {"kind": "lease", "reference": "r"}), 404, "UNKNOWN_MEMBER")
    refused(api.post(f"/members/{liu}/cases/{no_case}/evidence", clerk,
                     {"kind": "lease", "reference": "r", "occurred_on": "2011-10-01"}),
            404, "UNKNOWN_CASE", "case_id")
    refused(api.get(f"/members/{nobody}", clerk), 404, "UNKNOWN_MEMBER")
    refused(api.get(f"/members/{nobody}/history", clerk), 404, "UNKNOWN_MEMBER")
    refused(api.get(f"/cases/{no_case}", clerk), 404, "UNKNOWN_CASE")
    refused(api.get("/units/nowhere/queue", clerk), 404, "UNKNOWN_UNIT", "unit_id")
    refused(api.get("/units/nowhere/scorecard", clerk), 404, "UNKNOWN_UNIT", "unit_id")
    refused(api.post("/units/nowhere/rename", article.admin, {"name": "n"}), 404, "UNKNOWN_UNIT")
    refused(api.post("/units/nowhere/dissolution", article.admin, {}), 404, "UNKNOWN_UNIT")
    refused(api.get("/no/such/route", clerk), 404, "NOT_FOUND")
    refused(api.call("DELETE", "/members", clerk), 405, "METHOD_NOT_ALLOWED")


def test_idempotency_key_replays_and_refuses_reuse_for_another_command(article: Article) -> None:
    api, registry, liu = article.api, article.api.registry, article.members.liu_yang
    clerk = api.token("hongkou-center")
    body = {"channel": "phone", "summary": "问询", "occurred_on": "2011-10-02"}
    headers = {"Idempotency-Key": "call-2011-10-02-17"}
    first = api.post(f"/members/{liu}/inquiries", clerk, body, headers=headers)
    assert first.status_code == 201
    count = event_count(registry)
    for _ in range(3):
        again = api.post(f"/members/{liu}/inquiries", clerk, body, headers=headers)
        assert again.status_code == 200
        assert again.json() == {**first.json(), "replayed": True}
    assert event_count(registry) == count
    refused(api.post(f"/members/{liu}/inquiries", clerk, {**body, "summary": "别的"},
                     headers=headers), 409, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key")
    refused(api.post(f"/members/{liu}/contacts", clerk, {"channel": "phone", "note": "n"},
                     headers=headers), 409, "IDEMPOTENCY_KEY_REUSED")
    # A key is the calling unit's own: another unit may use the same one.
    other = api.post(f"/members/{liu}/inquiries", api.token("daning-center"), body,
                     headers=headers)
    assert other.status_code == 201 and other.json()["position"] > first.json()["position"]
    refused(api.post(f"/members/{liu}/inquiries", clerk, body,
                     headers={"Idempotency-Key": "del\x7f"}), 422, "INVALID_INPUT")
    refused(api.post(f"/members/{liu}/inquiries", clerk, body,
                     headers={"Idempotency-Key": "k" * 201}), 422, "INVALID_INPUT")


def test_if_match_refuses_a_stale_version(article: Article) -> None:
    api, liu = article.api, article.members.liu_yang
    clerk = api.token("sh-org-dept")
    status = api.get(f"/members/{liu}", clerk).json()
    version = status["version"]
    body = {"kind": "组织生活会", "occurred_on": "2011-10-01"}
    stale = api.post(f"/members/{liu}/activities", clerk, body,
                     headers={"If-Match": str(version - 1)})
    assert refused(stale, 409, "STALE_VERSION")["current_version"] == version
    fresh = api.post(f"/members/{liu}/activities", clerk, body,
                     headers={"If-Match": f'"{version}"'})
    assert fresh.status_code == 201 and fresh.json()["version"] == version + 1
    weak = api.post(f"/members/{liu}/activities", clerk, body,
                    headers={"If-Match": f'W/"{version + 1}"'})
    assert weak.status_code == 201 and weak.json()["version"] == version + 2
    moved = refused(api.post(f"/members/{liu}/activities", clerk, body,
                             headers={"If-Match": str(version)}), 409, "STALE_VERSION")
    assert moved["current_version"] == version + 2  # decide again on this one
    # The version a query shows is the one If-Match wants.
    seen = api.get(f"/members/{liu}", clerk,
                   params={"min_position": weak.json()["position"]}).json()["version"]
    ok = api.post(f"/members/{liu}/activities", clerk, body, headers={"If-Match": str(seen)})
    assert ok.status_code == 201


def test_min_position_reads_your_own_writes(article: Article) -> None:
    api, liu = article.api, article.members.liu_yang
    clerk = api.token("sh-org-dept")
    for day in range(2, 22):
        written = api.post(f"/members/{liu}/contacts", clerk,
                           {"channel": "phone", "note": f"第{day}次", "occurred_on":
                            f"2011-10-{day:02d}"}).json()
        status = api.get(f"/members/{liu}", clerk,
                         params={"min_position": written["position"]}).json()
        assert status["version"] == written["version"]
        case = api.get(f"/cases/{written['case_id']}", clerk,
                       params={"min_position": written["position"]}).json()
        assert case["trail"][-1]["position"] == written["position"]
    enrolled = api.post("/members", clerk, {"name": "新党员", "id_number": "31010919800101003X",
                                            "standing": "full", "household_region": "上海",
                                            "occurred_on": "2020-01-01"}).json()
    found = api.get(f"/members/{enrolled['member_id']}", clerk,
                    params={"min_position": enrolled["position"]})
    assert found.status_code == 200 and found.json()["holder_unit_id"] == "sh-org-dept"
    by_name = api.get("/members", clerk,
                      params={"q": "新党员", "min_position": enrolled["position"]}).json()
    assert by_name == [{"member_id": enrolled["member_id"], "name": "新**"}]


def test_min_position_beyond_the_log_is_refused_promptly(article: Article) -> None:
    api = article.api
    head = api.registry.position()
    beyond = head + 1000
    response = api.get("/scorecards", article.auditor, params={"min_position": beyond})
    # Refused up front as beyond the log, not after the 5 s wait for projections
    # (which would answer "have not reached position ... yet").
    body = refused(response, 422, "INVALID_INPUT", "min_position")
    assert body["detail"] == (
        f"min_position {beyond} is beyond the log (it ends at {head});"
        " pass a position a command returned"
    ), body


def test_dissolving_a_unit_revokes_its_tokens(article: Article) -> None:
    api = article.api
    hongkou = api.token("hongkou-center")
    hongkou_auditor = api.token("hongkou-center", "auditor")
    daning = api.token("daning-center")
    assert api.get("/units/hongkou-center/queue", hongkou).status_code == 200
    gone = api.post("/units/hongkou-center/dissolution", article.admin,
                    {"successor_unit_id": "daning-center", "occurred_on": "2020-01-01"})
    assert gone.status_code == 201
    for token in (hongkou, hongkou_auditor):
        refused(api.get("/units/hongkou-center/queue", token), 401, "UNAUTHORIZED")
        refused(api.post(f"/members/{article.members.liu_yang}/inquiries", token,
                         {"channel": "phone", "summary": "s"}), 401, "UNAUTHORIZED")
    assert api.get("/units/daning-center/queue", daning).status_code == 200
    assert api.get("/units/hongkou-center/queue", article.auditor).status_code == 200


def test_a_unit_dissolved_from_the_command_line_loses_its_tokens(
    article: Article, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.cli import main

    api = article.api
    hongkou = api.token("hongkou-center")
    head = api.registry.position()
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    assert main(["units", "dissolve", "hongkou-center", "--unit", ADMIN_UNIT,
                 "--on", "2020-01-01"]) == 0
    (dissolved,) = stored_since(api.registry, head)
    assert type(dissolved).__name__ == "UnitDissolved"
    refused(api.get("/units/hongkou-center/queue", hongkou), 401, "UNAUTHORIZED")


def test_expired_unknown_and_revoked_tokens_are_401(article: Article) -> None:
    api = article.api
    path = "/units/daning-center/queue"
    yesterday = api.token("daning-center", expires_on=TODAY - timedelta(days=1))
    last_day = api.token("daning-center", expires_on=TODAY)
    refused(api.get(path, yesterday), 401, "UNAUTHORIZED")
    assert api.get(path, yesterday).headers["WWW-Authenticate"] == "Bearer"
    assert api.get(path, last_day).status_code == 200
    refused(api.get(path, "hbr_not-a-real-token"), 401, "UNAUTHORIZED")
    refused(api.get(path, None), 401, "UNAUTHORIZED")
    refused(api.get(path, None, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401,
            "UNAUTHORIZED")
    revoked = api.token("daning-center", holder="leaving clerk")
    (info,) = [t for t in api.app.state.tokens.list() if t.holder == "leaving clerk"]
    assert api.app.state.tokens.revoke(info.token_id)
    refused(api.get(path, revoked), 401, "UNAUTHORIZED")
    refused(api.post(f"/members/{article.members.old_comrade}/activities", yesterday,
                     {"kind": "k"}), 401, "UNAUTHORIZED")


def test_a_body_over_64_kib_is_413_and_stores_nothing(article: Article) -> None:
    api, liu = article.api, article.members.liu_yang
    clerk = api.token("sh-org-dept")
    path = f"/members/{liu}/inquiries"
    body = {"channel": "phone", "summary": "长" * 2000, "occurred_on": "2011-10-01"}
    text = json.dumps(body)
    big = text[:-1] + " " * (MAX_BODY + 1 - len(text.encode())) + "}"
    assert len(big.encode()) == MAX_BODY + 1
    response = api.call("POST", path, clerk, content=big.encode(),
                        headers={"Content-Type": "application/json"})
    refused(response, 413, "BODY_TOO_LARGE")
    fits = text[:-1] + " " * (MAX_BODY - len(text.encode())) + "}"
    assert len(fits.encode()) == MAX_BODY
    response = api.call("POST", path, clerk, content=fits.encode(),
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    huge = api.call("POST", path, clerk, content=b'{"summary": "' + b"x" * 1_000_000 + b'"}',
                    headers={"Content-Type": "application/json"})
    refused(huge, 413, "BODY_TOO_LARGE")


def test_a_chunked_body_over_64_kib_is_413(api: Api) -> None:
    clerk = api.token("daning-center")

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 10_000
        yield b'"}'

    response = api.call("POST", "/members", clerk, content=chunks(),
                        headers={"Content-Type": "application/json"})
    refused(response, 413, "BODY_TOO_LARGE")


def test_history_as_recorded_on_the_last_representable_day_is_not_a_500(
    article: Article,
) -> None:
    api = article.api
    response = api.get(f"/members/{article.members.liu_yang}/history", article.auditor,
                       params={"as_recorded": "9999-12-31"})
    body = refused(response, 422, "INVALID_DATE", "as_recorded")
    assert body["detail"] == "as_recorded 9999-12-31 lies outside 1900–2999", body
    last = api.get(f"/members/{article.members.liu_yang}/history", article.auditor,
                   params={"as_recorded": "2999-12-31"})
    assert last.status_code == 200, last.text
    assert last.json()["known"] is True


def test_dues_for_months_of_year_zero_are_422(article: Article) -> None:
    api = article.api
    clerk = api.token("sh-org-dept")
    response = api.post(f"/members/{article.members.liu_yang}/dues", clerk,
                        {"months_from": "0000-01", "months_to": "0000-01", "amount": "1",
                         "occurred_on": "2011-10-01"}, server_error_ok=True)
    refused(response, 422, "INVALID_INPUT")


def test_findings_at_the_end_of_the_calendar_after_dues_paid_far_ahead(article: Article) -> None:
    api = article.api
    clerk = api.token("sh-org-dept")
    liu, old_comrade = str(article.members.liu_yang), str(article.members.old_comrade)
    beyond = api.post(f"/members/{liu}/dues", clerk,
                      {"months_from": "2011-10", "months_to": "9999-12", "amount": "1",
                       "occurred_on": "2011-10-01"})
    body = refused(beyond, 422, "INVALID_INPUT", "months_to")
    assert body["detail"] == "months_to must lie between 1900 and 2999 (got '9999-12')", body

    def lost_contact(on: str) -> dict[str, str | None]:
        response = api.get("/compliance/findings", article.auditor, params={"on": on})
        assert response.status_code == 200, response.text
        return {f["member_id"]: f["resolved"] for f in response.json() if f["rule"] == "R7"}

    # Without dues paid ahead, both members have long lost contact by the calendar's end.
    assert lost_contact("2999-12-31") == {liu: None, old_comrade: None}
    dues = api.post(f"/members/{liu}/dues", clerk,
                    {"months_from": "2011-10", "months_to": "2999-12", "amount": "1",
                     "occurred_on": "2011-10-01"})
    assert dues.status_code == 201, dues.text
    wait(api, article.auditor, dues.json()["position"])
    # Paid through December 2999, Liu Yang is in good standing to the very last day.
    assert lost_contact("2999-12-31") == {old_comrade: None}


def test_extreme_dates_and_numbers_are_answered_not_crashed(article: Article) -> None:
    api, token, liu = article.api, article.auditor, article.members.liu_yang
    # Dates outside the registry's calendar (1900–2999) are refused, never a 500.
    for on, status in (("0001-01-01", 422), ("9999-12-31", 422), ("1900-01-01", 200),
                       ("2999-12-31", 200)):
        for path in (f"/members/{liu}", "/units/sh-univ/queue", "/units/sh-univ/scorecard",
                     "/scorecards", "/compliance/findings",
                     f"/cases/{article.case_of(liu)}"):
            response = api.get(path, token, params={"on": on})
            if (path, on) == (f"/members/{liu}", "1900-01-01"):  # not enrolled yet that day
                refused(response, 404, "UNKNOWN_MEMBER", "member_id")
                continue
            assert response.status_code == status, (path, on)
            if status == 422:
                assert response.json()["code"] == "INVALID_DATE"
        assert api.get(f"/members/{liu}/history", token,
                       params={"as_of": on}).status_code == status
    assert api.get(f"/members/{liu}/history", token,
                   params={"as_recorded": "1900-01-01"}).json()["known"] is False
    assert api.get(f"/members/{liu}/history", token,
                   params={"position": 2**62}).json()["known"] is True
    refused(api.get(f"/members/{liu}", token, params={"min_position": 2**62 + 1}), 422,
            "INVALID_INPUT", "min_position")
    clerk = api.token("sh-org-dept")
    for body in ({"months": 10**30}, {"months": 1.5}, {"months": None}):
        refused(api.post(f"/members/{liu}/probation-extensions", clerk, body), 422,
                "INVALID_INPUT", "months")
    refused(api.post(f"/members/{liu}/voids", clerk, {"voided": 2**62, "reason": "r"}), 422,
            "UNKNOWN_ENTRY", "voided")


def test_a_nul_character_in_a_lookup_is_not_a_500(
    article: Article, request: pytest.FixtureRequest
) -> None:
    response = article.api.get("/members", article.auditor, params={"q": "a\x00b"})
    body = refused(response, 422, "INVALID_INPUT", "q")
    assert body["detail"] == "q contains control characters", body


def test_a_nul_character_in_a_command_never_stalls_the_projections(
    article: Article, request: pytest.FixtureRequest
) -> None:
    api, liu = article.api, article.members.liu_yang
    clerk = api.token("sh-org-dept")
    response = api.post(f"/members/{liu}/activities", clerk,
                        {"kind": "a\x00b", "occurred_on": "2011-10-01"})
    body = refused(response, 422, "INVALID_INPUT", "kind")
    assert body["detail"] == "kind contains control characters", body
    after = api.post(f"/members/{liu}/activities", clerk,
                     {"kind": "组织生活会", "occurred_on": "2011-10-02"}).json()
    status = api.get(f"/members/{liu}", clerk, params={"min_position": after["position"]},
                     server_error_ok=True)
    assert status.status_code == 200, status.text


def test_a_members_status_on_a_past_day_is_as_he_stood_then(article: Article) -> None:
    """On 2006-06-02 letter 2006-001 was out and his holder long dissolved (cases.md)."""
    api, token, old = article.api, article.auditor, article.members.old_comrade
    clerk = api.token("daning-center")

    then = api.get(f"/members/{old}", token, params={"on": "2006-06-02"}).json()
    queue = api.get("/units/daning-center/queue", clerk, params={"on": "2006-06-02"}).json()
    roster = api.get("/units/daning-center/members", clerk, params={"on": "2006-06-02"}).json()

    assert (then["holder_unit_id"], then["status"], then["in_transit_to"]) == (
        "zb-factory", "orphaned", "daning-center"
    )
    assert [i.get("letter_no") for i in queue["todo"]] == ["2006-001"]
    assert [(m["member_id"], m["relation"]) for m in roster["members"]] == [
        (str(old), "arriving")
    ]


def test_findings_filter_open_or_resolved_and_read_a_padded_unit_code(article: Article) -> None:
    api, token = article.api, article.auditor
    every = api.get("/compliance/findings", token).json()

    still = api.get("/compliance/findings", token, params={"open": "true"}).json()
    settled = api.get("/compliance/findings", token, params={"resolved": "true"}).json()

    assert still and settled and len(still) + len(settled) == len(every)
    assert all(f["resolved"] is None for f in still)
    assert all(f["resolved"] is not None for f in settled)
    refused(api.get("/compliance/findings", token, params={"open": "true", "resolved": "true"}),
            422, "INVALID_INPUT", "resolved")  # fmt: skip
    padded = api.get("/compliance/findings", token, params={"unit": " daning-center"}).json()
    assert padded == [f for f in every if f["unit_id"] == "daning-center"] != []
    refused(api.get("/compliance/findings", token, params={"unit": "nowhere"}),
            422, "UNKNOWN_UNIT", "unit")  # fmt: skip
