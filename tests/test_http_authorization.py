"""Who may do what over HTTP: every role × every endpoint × own / other / sub-unit.

The world: the org department (admin and auditor tokens) and five units —

    parent ─┬─ child ── grandchild
            └─ sibling
    other

The calling unit is `parent` unless a row says otherwise. "own" is the caller's own unit,
member or case; "sub" is its sub-unit `child` (and what `child` holds); "other" is `other`.
Expected per DESIGN.md "Security" and issue 4: no token 401; wrong role 403 (the auditor
writes nothing, the admin does units only, member commands need role unit); acting for
another unit 403 (also for one's own sub-unit); a unit reads members it holds, members in
transit to it, and cases it took part in (a referral's addressee included), and its own and
its sub-units' queues and scorecards — never a sub-unit's members. A unit that only took
part in cases reads the member's status, those cases, and a history cut down to them;
the holder and the unit receiving the member read every case and the whole history. Any
unit may look a member up and record an inquiry, after which it may read that member and
that case. The admin registers and dissolves units and reads no member's records: only the
audit status, which auditors read too; findings and bundles are for auditors. Nothing is
stored in any refused case (the Api helper checks the event count after every 4xx).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi.routing import APIRoute

from api.http.routes import commands, ops, reads
from domain.errors import CODES
from domain.registry import Actor, Registry
from tests.test_http_api import ADMIN_UNIT, Api, make_api, refused, stored_since
from tests.test_http_api import registry as registry  # the fixture (fresh tracking table)

OK = "ok"  # authorised: the rules may still refuse (409/422/404), but never 401 or 403

UNITS: list[tuple[str, str | None]] = [
    (ADMIN_UNIT, None),
    ("parent", None),
    ("child", "parent"),
    ("sibling", "parent"),
    ("grandchild", "child"),
    ("other", None),
    ("spare", None),  # dissolved by the admin's one successful dissolution
]
ID_NUMBERS = {
    "own": "110101198001010011",
    "sub": "110101198001010022",
    "other": "110101198001010033",
    "transit": "110101198001010044",
    "referred": "110101198001010055",
    "command": "110101198001010066",
}


@dataclass
class World:
    """The app, the tokens and the ids the matrix refers to."""

    api: Api
    tokens: dict[str, str | None]
    members: dict[str, str]
    cases: dict[str, str]

    def fill(self, template: str) -> str:
        """A path with {m}, {c}, {own}… replaced by this world's ids."""
        return template.format(
            m=self.members["command"],
            c=self.cases["command"],
            **{f"m_{k}": v for k, v in self.members.items()},
            **{f"c_{k}": v for k, v in self.cases.items()},
        )


def build_world(registry: Registry) -> None:
    """Units, and one member (with an open case) for each relation the matrix needs."""
    admin = Actor(ADMIN_UNIT, "test-admin")
    for code, parent in UNITS:
        registry.register_unit(
            Actor(code, "test-admin") if code == ADMIN_UNIT else admin,
            code=code,
            name=f"{code} 党组织",
            kind="org_department" if code == ADMIN_UNIT else "workplace",
            region="上海",
            parent_unit_id=parent,
            occurred_on=date(2000, 1, 1),
        )
    holders = {"own": "parent", "sub": "child", "other": "other", "transit": "other",
               "referred": "other", "command": "parent"}
    for key, holder in holders.items():
        by = Actor(holder, "clerk")
        member = registry.enrol_member(
            by, name=f"党员{key}", id_number=ID_NUMBERS[key], standing="full",
            household_region="上海", occurred_on=date(2020, 1, 1),
        ).member_id
        assert member is not None
        case = registry.receive_inquiry(
            by, member, occurred_on=date(2020, 2, 1), channel="walk_in", summary="来访"
        ).case_id
        if key == "transit":
            registry.issue_letter(by, member, occurred_on=date(2020, 3, 1), letter_no="2020-1",
                                  to_unit_id="sibling", dues_paid_through="2020-02")
        if key == "referred":
            registry.refer_case(by, member, occurred_on=date(2020, 3, 1), to_unit_id="child",
                                handover="warm", reason="住在那边")
        assert case is not None


@pytest.fixture
def world(registry: Registry) -> Iterator[World]:
    build_world(registry)
    for api in make_api(registry):
        tokens: dict[str, str | None] = {
            code: api.token(code) for code, _ in UNITS if code != ADMIN_UNIT
        }
        tokens |= {
            "none": None,
            "auditor": api.token(ADMIN_UNIT, "auditor"),
            "admin": api.token(ADMIN_UNIT, "admin"),
        }
        members, cases = {}, {}
        for key, number in ID_NUMBERS.items():
            member = registry.member(registry.member_id_for(number))
            members[key] = str(member.id)
            (cases[key],) = (str(c) for c in member.state.cases)
        response = api.get("/scorecards", tokens["auditor"],
                           params={"min_position": registry.position()})
        assert response.status_code == 200
        yield World(api, tokens, members, cases)


def check(world: World, caller: str, method: str, path: str, expected: int | str,
          body: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> Any:
    """One cell of the matrix."""
    api = world.api
    head = api.registry.position()
    response = api.call(method, world.fill(path), world.tokens[caller], json_body=body,
                        params=params)
    where = f"{caller} {method} {path} {body or params or ''}"
    if expected == OK:
        assert response.status_code not in (401, 403), (where, response.text)
    elif expected == 401:
        refused(response, 401, "UNAUTHORIZED")
    elif expected == 403:
        refused(response, 403, "FORBIDDEN")
    else:
        assert response.status_code == expected, (where, response.text)
    if response.status_code >= 300:
        assert api.registry.position() == head, where
    elif method == "POST":
        acting = ADMIN_UNIT if caller in ("admin", "auditor") else caller
        assert all(e.unit_id == acting for e in stored_since(api.registry, head)
                   if hasattr(e, "unit_id")), where
    return response


# --- reads ------------------------------------------------------------------------------

# The caller is `parent` (column "unit"); "own" / "sub" / "other" are parent's, child's and
# other's member, case or unit.
#   endpoint                                target   none  unit  auditor admin
# (OK for the bundles: authorised, then 409 NOT_SEALED here, since nothing is sealed)
READS: list[tuple[str, str, int, int, int | str, int | str]] = [
    ("GET /members?q={id_number}",           "own",   401,  200,  200,    403),
    ("GET /members?q={id_number}",           "sub",   401,  200,  200,    403),
    ("GET /members?q={id_number}",           "other", 401,  200,  200,    403),
    ("GET /members/{member}",                "own",   401,  200,  200,    403),
    ("GET /members/{member}",                "sub",   401,  403,  200,    403),
    ("GET /members/{member}",                "other", 401,  403,  200,    403),
    ("GET /members/{member}/history",        "own",   401,  200,  200,    403),
    ("GET /members/{member}/history",        "sub",   401,  403,  200,    403),
    ("GET /members/{member}/history",        "other", 401,  403,  200,    403),
    ("GET /cases/{case}",                    "own",   401,  200,  200,    403),
    ("GET /cases/{case}",                    "sub",   401,  403,  200,    403),
    ("GET /cases/{case}",                    "other", 401,  403,  200,    403),
    ("GET /units/{unit}/queue",              "own",   401,  200,  200,    403),
    ("GET /units/{unit}/queue",              "sub",   401,  200,  200,    403),
    ("GET /units/{unit}/queue",              "other", 401,  403,  200,    403),
    ("GET /units/{unit}/members",            "own",   401,  200,  200,    403),
    ("GET /units/{unit}/members",            "sub",   401,  403,  200,    403),
    ("GET /units/{unit}/members",            "other", 401,  403,  200,    403),
    ("GET /units/{unit}/scorecard",          "own",   401,  200,  200,    403),
    ("GET /units/{unit}/scorecard",          "sub",   401,  200,  200,    403),
    ("GET /units/{unit}/scorecard",          "other", 401,  403,  200,    403),
    ("GET /scorecards",                      "-",     401,  200,  200,    403),
    ("GET /compliance/findings",             "-",     401,  403,  200,    403),
    ("GET /audit/status",                    "-",     401,  403,  200,    200),
    ("GET /audit/members/{member}/bundle",   "own",   401,  403,  OK,     403),
    ("GET /audit/members/{member}/bundle",   "other", 401,  403,  OK,     403),
    ("GET /audit/proofs/consistency?old_size=1", "-", 401,  403,  OK,     403),
    ("GET /audit/proofs/inclusion?position=1",   "-", 401,  403,  OK,     403),
    ("GET /me",                              "-",     401,  200,  200,    200),
    ("GET /healthz",                         "-",     200,  200,  200,    200),
    ("GET /metrics",                         "-",     200,  200,  200,    200),
]
TARGET_UNIT = {"own": "parent", "sub": "child", "other": "other"}

# Relations beyond parent's view: (caller, endpoint, target, expected).
RELATIONS: list[tuple[str, str, str, int]] = [
    ("grandchild", "GET /units/{unit}/queue", "grandchild", 200),   # its own
    ("parent", "GET /units/{unit}/queue", "grandchild", 200),       # a sub-unit's sub-unit
    ("parent", "GET /units/{unit}/scorecard", "grandchild", 200),
    ("sibling", "GET /units/{unit}/queue", "child", 403),           # a sibling is not a parent
    ("sibling", "GET /units/{unit}/scorecard", "child", 403),
    ("child", "GET /units/{unit}/queue", "parent", 403),            # nor is a child
    ("child", "GET /units/{unit}/scorecard", "parent", 403),
    ("grandchild", "GET /units/{unit}/queue", "child", 403),
    ("sibling", "GET /members/{member}", "transit", 200),           # a letter is out to it
    ("sibling", "GET /members/{member}/history", "transit", 200),   # (all of it)
    ("sibling", "GET /cases/{case}", "transit", 200),
    ("parent", "GET /members/{member}", "transit", 403),            # not to its sub-unit's
    ("child", "GET /members/{member}", "referred", 200),            # referred to it
    ("child", "GET /cases/{case}", "referred", 200),
    ("child", "GET /members/{member}/history", "referred", 200),    # (that case only)
    ("parent", "GET /cases/{case}", "referred", 403),
    ("other", "GET /members/{member}", "own", 403),                 # until it records an inquiry
    ("child", "GET /members/{member}", "own", 403),                 # the parent's member
]


def _read(world: World, caller: str, endpoint: str, target: str, expected: int | str) -> None:
    method, path = endpoint.split(" ", 1)
    params = None
    if "{id_number}" in path:
        path, params = "/members", {"q": ID_NUMBERS[target]}
    path = (path.replace("{member}", "{m_" + target + "}")
            .replace("{case}", "{c_" + target + "}")
            .replace("{unit}", TARGET_UNIT.get(target, target)))
    response = check(world, caller, method, path, expected, params=params)
    if params is not None and expected == 200:
        assert [m["member_id"] for m in response.json()] == [world.members[target]]


def test_the_read_table_covers_every_query_endpoint() -> None:
    routes = {f"GET {r.path}" for r in (*reads.router.routes, *ops.router.routes)
              if isinstance(r, APIRoute)}
    table = {e.replace("{member}", "{member_id}").replace("{case}", "{case_id}")
             .replace("{unit}", "{unit_id}").split("?")[0]
             for e, *_ in READS}
    assert routes == table


def test_read_matrix_role_by_endpoint_by_target(world: World) -> None:
    for endpoint, target, *expected in READS:
        for caller, status in zip(("none", "parent", "auditor", "admin"), expected, strict=True):
            _read(world, caller, endpoint, target, status)


def test_read_relations_sub_units_letters_and_referrals(world: World) -> None:
    for caller, endpoint, target, expected in RELATIONS:
        _read(world, caller, endpoint, target, expected)


def test_a_unit_sees_the_scorecards_of_itself_and_its_sub_units_only(world: World) -> None:
    seen = {
        caller: {c["unit_id"] for c in check(world, caller, "GET", "/scorecards", 200).json()}
        for caller in ("parent", "child", "sibling", "grandchild", "other", "auditor")
    }
    assert seen["parent"] == {"parent", "child", "sibling", "grandchild"}
    assert seen["child"] == {"child", "grandchild"}
    assert seen["sibling"] == {"sibling"}
    assert seen["grandchild"] == {"grandchild"}
    assert seen["other"] == {"other"}
    assert seen["auditor"] == {code for code, _ in UNITS}
    check(world, "admin", "GET", "/scorecards", 403)  # the admin reads no records


def test_any_unit_may_look_up_and_inquire_then_read_that_member(world: World) -> None:
    own = world.members["own"]
    for path in ("/members/{m_own}", "/members/{m_own}/history", "/cases/{c_own}"):
        check(world, "other", "GET", path, 403)
    found = check(world, "other", "GET", "/members", 200, params={"q": ID_NUMBERS["own"]})
    assert found.json() == [{"member_id": own, "name": "党****"}]
    inquiry = check(world, "other", "POST", "/members/{m_own}/inquiries", 201,
                    body={"channel": "walk_in", "summary": "来本单位问询",
                          "occurred_on": "2021-01-01"})
    assert inquiry.json()["case_id"] == world.cases["own"]  # it joined the open case
    assert inquiry.json()["first_responder"] == "parent"
    for path in ("/members/{m_own}", "/members/{m_own}/history", "/cases/{c_own}"):
        check(world, "other", "GET", path, 200,
              params={"min_position": inquiry.json()["position"]})
    # Only that member: the others stay closed to it.
    check(world, "other", "GET", "/members/{m_sub}", 403)


def test_the_receiving_unit_reads_the_whole_history_a_referral_addressee_its_case(
    world: World,
) -> None:
    whole = check(world, "sibling", "GET", "/members/{m_transit}/history", 200).json()
    assert whole["limited_to_cases"] is None
    assert [t["event_type"] for t in whole["trail"]] == [
        "MemberEnrolled", "InquiryReceived", "LetterIssued"
    ]
    referred = check(world, "child", "GET", "/members/{m_referred}/history", 200).json()
    assert referred["limited_to_cases"] == [world.cases["referred"]]
    assert [t["event_type"] for t in referred["trail"]] == ["InquiryReceived", "Referred"]
    assert all(t["case_id"] == world.cases["referred"] for t in referred["trail"])


def test_a_unit_consulted_in_a_case_reads_that_case(world: World) -> None:
    """Asked to coordinate (UnitConsulted), a unit must see what it is asked about: the
    case, the member's status and a history cut to that case, nothing more."""
    registry = world.api.registry
    other = Actor("other", "clerk")
    member, case = world.members["other"], world.cases["other"]
    check(world, "sibling", "GET", f"/cases/{case}", 403)
    registry.consult_unit(other, member, occurred_on=date(2020, 2, 5),
                          consulted_unit_id="sibling", note="请协助核实住址")
    head = {"min_position": registry.position()}

    check(world, "sibling", "GET", f"/cases/{case}", 200, params=head)
    check(world, "sibling", "GET", f"/members/{member}", 200, params=head)
    seen = check(world, "sibling", "GET", f"/members/{member}/history", 200,
                 params=head).json()
    assert seen["limited_to_cases"] == [case]
    assert [t["event_type"] for t in seen["trail"]] == ["InquiryReceived", "UnitConsulted"]
    # Units not consulted still read nothing of it.
    check(world, "parent", "GET", f"/cases/{case}", 403, params=head)


def _two_cases(world: World) -> tuple[str, str, str, int]:
    """A member `other` holds: enrolled and paying dues outside any case; a first case
    `child` answered and withdrew, a second (open) case `sibling` answered."""
    registry = world.api.registry
    holder, first, second = Actor("other", "clerk"), Actor("child", "clerk"), Actor(
        "sibling", "clerk")
    member = registry.enrol_member(
        holder, name="党员两案", id_number="110101198001010077", standing="full",
        household_region="上海", occurred_on=date(2020, 1, 1),
    ).member_id
    assert member is not None
    registry.receive_dues(holder, member, occurred_on=date(2020, 1, 15), months_from="2020-01",
                          months_to="2020-01", amount="1.00")
    case_a = registry.receive_inquiry(first, member, occurred_on=date(2020, 2, 1),
                                      channel="walk_in", summary="来访").case_id
    registry.notify_requirements(first, member, occurred_on=date(2020, 2, 2),
                                 documents=["介绍信"])
    registry.withdraw_case(first, member, occurred_on=date(2020, 2, 10), reason="本人撤回")
    registry.make_contact(holder, member, occurred_on=date(2020, 2, 20), channel="phone",
                          note="电话联系")
    case_b = registry.receive_inquiry(second, member, occurred_on=date(2020, 3, 1),
                                      channel="phone", summary="电话问询").case_id
    assert case_a is not None and case_b is not None and case_a != case_b
    return str(member), str(case_a), str(case_b), registry.position()


def test_a_unit_that_only_took_part_reads_only_its_cases(world: World) -> None:
    member, case_a, case_b, head = _two_cases(world)
    caught_up = {"min_position": head}
    full = check(world, "auditor", "GET", f"/members/{member}/history", 200,
                 params=caught_up).json()
    assert full["limited_to_cases"] is None
    assert [c["case_id"] for c in full["cases"]] == [case_a, case_b]
    outside = [t for t in full["trail"] if t["case_id"] is None]
    assert {t["event_type"] for t in outside} >= {"MemberEnrolled", "DuesReceived"}

    # The holder reads all of it, as the auditor does.
    held = check(world, "other", "GET", f"/members/{member}/history", 200).json()
    assert held["limited_to_cases"] is None
    assert held["trail"] == full["trail"] and held["cases"] == full["cases"]
    for case in (case_a, case_b):
        check(world, "other", "GET", f"/cases/{case}", 200)

    # A unit that took part in one case: the status, that case, and only that case's trail.
    for unit, its, not_its in (("child", case_a, case_b), ("sibling", case_b, case_a)):
        status = check(world, unit, "GET", f"/members/{member}", 200).json()
        assert status["holder_unit_id"] == "other" and status["open_case_id"] == case_b
        seen = check(world, unit, "GET", f"/members/{member}/history", 200).json()
        assert seen["limited_to_cases"] == [its]
        assert [c["case_id"] for c in seen["cases"]] == [its]
        assert seen["trail"] == [t for t in full["trail"] if t["case_id"] == its]
        assert seen["trail"] and all(t["case_id"] == its for t in seen["trail"])
        assert all(f["case_id"] == its for f in seen["findings"])
        assert seen["holder_unit_id"] == "other"
        # Replayed date by date, the holder and letter of the day would tell the other
        # case's path: a limited replay leaves them out (the auditor's keeps them).
        then = {"as_of": "2999-12-31"}
        replayed = check(world, unit, "GET", f"/members/{member}/history", 200, params=then)
        hidden = ("standing", "holder_unit_id", "since", "in_transit_to")
        assert replayed.json()["limited_to_cases"] == [its]
        assert {k: replayed.json()[k] for k in hidden} == dict.fromkeys(hidden)
        whole = check(world, "auditor", "GET", f"/members/{member}/history", 200, params=then)
        assert whole.json()["holder_unit_id"] == "other"
        check(world, unit, "GET", f"/cases/{its}", 200)
        problem = check(world, unit, "GET", f"/cases/{not_its}", 403).json()
        assert "took no part in case" in problem["detail"]
        assert "reads only the cases it took part in" in problem["detail"]
        # As of a date and at a position: still only its case.
        for params in ({"as_of": "2020-02-25"}, {"position": head}):
            then = check(world, unit, "GET", f"/members/{member}/history", 200,
                         params=params).json()
            assert all(t["case_id"] == its for t in then["trail"]), params
            assert [c["case_id"] for c in then["cases"]] in ([its], []), params
    # Its parent took part in nothing: nothing of the member, not even its sub-unit's case.
    for path in (f"/members/{member}", f"/members/{member}/history", f"/cases/{case_a}"):
        check(world, "parent", "GET", path, 403)


def test_receiving_the_member_opens_every_case_to_the_addressee(world: World) -> None:
    member, case_a, case_b, head = _two_cases(world)
    check(world, "child", "GET", f"/cases/{case_b}", 403, params={"min_position": head})
    world.api.registry.issue_letter(Actor("other", "clerk"), member, occurred_on=date(2020, 3, 5),
                                    letter_no="2020-9", to_unit_id="child",
                                    dues_paid_through="2020-01")
    caught_up = {"min_position": world.api.registry.position()}
    check(world, "child", "GET", f"/cases/{case_b}", 200, params=caught_up)
    whole = check(world, "child", "GET", f"/members/{member}/history", 200).json()
    assert whole["limited_to_cases"] is None
    assert [c["case_id"] for c in whole["cases"]] == [case_a, case_b]
    assert any(t["event_type"] == "MemberEnrolled" for t in whole["trail"])


# --- commands -------------------------------------------------------------------------

# Columns: no token | auditor | admin | admin acting for another unit | unit (parent) |
# unit acting for another unit (other) | unit acting for its own sub-unit (child).
#   route                                                 none aud  adm  adm→ unit unit→ sub
COMMANDS: list[tuple[str, int, int, int | str, int, int | str, int, int]] = [
    ("POST /units",                                       401, 403, OK,  403, 403, 403, 403),
    ("POST /units/{u}/rename",                            401, 403, OK,  403, 403, 403, 403),
    ("POST /units/{u}/dissolution",                       401, 403, OK,  403, 403, 403, 403),
    ("POST /members",                                     401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/inquiries",                       401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/requirements",          401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/evidence",              401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/archive-reviews",       401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/origin-contacts",       401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/consultations",         401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/introductions",         401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/holds",                 401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/performance-reports",   401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/letters",               401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/letter-declines",       401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/letter-voids",          401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/letter-expiries",       401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/receipts",              401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/referrals",             401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/referral-acceptances",  401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/referral-declines",     401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/attachments",           401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/cases/{c}/withdrawals",           401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/dues",                            401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/activities",                      401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/contacts",                        401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/confirmation",                    401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/probation-extensions",            401, 403, 403, 403, OK,  403, 403),
    ("POST /members/{m}/voids",                           401, 403, 403, 403, OK,  403, 403),
]
COLUMNS = [
    ("none", None),
    ("auditor", None),
    ("admin", None),
    ("admin", "other"),
    ("parent", None),
    ("parent", "other"),
    ("parent", "child"),
]

# A body each route accepts (the rules may still refuse it; authorisation comes first).
BODIES: dict[str, dict[str, Any]] = {
    "/units": {"code": "new-unit", "name": "新单位", "kind": "workplace", "region": "上海"},
    "rename": {"name": "更名后的单位"},
    "dissolution": {},
    "/members": {"name": "新党员", "id_number": "110101199901010077", "standing": "full",
                 "household_region": "上海", "occurred_on": "2021-01-01"},
    "inquiries": {"channel": "phone", "summary": "问询", "occurred_on": "2021-01-01"},
    "requirements": {"documents": ["介绍信"], "occurred_on": "2021-01-01"},
    "evidence": {"kind": "lease", "reference": "租赁合同", "occurred_on": "2021-01-01"},
    "archive-reviews": {"finding": "档案齐全", "occurred_on": "2021-01-01"},
    "origin-contacts": {"contacted_name": "原单位", "outcome": "reached",
                        "occurred_on": "2021-01-01"},
    "consultations": {"consulted_unit_id": "sibling", "note": "协调", "occurred_on": "2021-01-01"},
    "introductions": {"to_name": "档案馆", "purpose": "查档", "occurred_on": "2021-01-01"},
    "holds": {"rule": "R3", "note": "暂缓", "occurred_on": "2021-01-01"},
    "performance-reports": {"to_unit_id": "sibling", "covering_from": "2020-01-01",
                            "covering_to": "2020-12-31", "occurred_on": "2021-01-01"},
    "letters": {"letter_no": "2021-1", "to_unit_id": "sibling", "dues_paid_through": "2020-12",
                "occurred_on": "2021-01-01"},
    "letter-declines": {"letter_no": "2021-1", "reason_code": "not_our_area",
                        "occurred_on": "2021-01-02"},
    "letter-voids": {"letter_no": "2021-1", "reason": "作废", "occurred_on": "2021-01-02"},
    "letter-expiries": {"letter_no": "2021-1", "occurred_on": "2021-06-01"},
    "receipts": {"letter_no": "2021-1", "occurred_on": "2021-01-03"},
    "referrals": {"to_unit_id": "sibling", "handover": "warm", "reason": "转介",
                  "occurred_on": "2021-01-01"},
    "referral-acceptances": {"occurred_on": "2021-01-02"},
    "referral-declines": {"reason_code": "not_our_area", "occurred_on": "2021-01-02"},
    "attachments": {"basis": "other", "override_reason": "本人要求", "occurred_on": "2021-01-04"},
    "withdrawals": {"reason": "本人撤回", "occurred_on": "2021-01-05"},
    "dues": {"months_from": "2021-01", "months_to": "2021-01", "amount": "1.00",
             "occurred_on": "2021-01-01"},
    "activities": {"kind": "组织生活会", "occurred_on": "2021-01-01"},
    "contacts": {"channel": "phone", "note": "电话联系", "occurred_on": "2021-01-01"},
    "confirmation": {"occurred_on": "2021-01-01"},
    "probation-extensions": {"months": 1, "occurred_on": "2021-01-01"},
    "voids": {"voided": 1, "reason": "更正", "occurred_on": "2021-01-01"},
}


def _body(route: str) -> dict[str, Any]:
    key = route if route in BODIES else route.rsplit("/", 1)[-1]
    return dict(BODIES[key])


def test_the_command_table_covers_every_command_route() -> None:
    routes = {f"POST {r.path}" for r in commands.router.routes if isinstance(r, APIRoute)}
    table = {r.replace("{u}", "{unit_id}").replace("{m}", "{member_id}")
             .replace("{c}", "{case_id}") for r, *_ in COMMANDS}
    assert routes == table


def test_command_matrix_role_by_route_by_acting_unit(world: World) -> None:
    registered = 0
    for route, *expected in COMMANDS:
        method, path = route.split(" ", 1)
        for (caller, acting_for), status in zip(COLUMNS, expected, strict=True):
            body = _body(path)
            if acting_for is not None:
                body["unit_id"] = acting_for
            if path == "/units":
                registered += 1
                body["code"] = f"new-unit-{registered}"
            target = "spare" if path.endswith("dissolution") else "other"
            response = check(world, caller, method, path.replace("{u}", target), status,
                             body=body)
            right_role = caller == ("admin" if path.startswith("/units") else "parent")
            if acting_for is not None and right_role:
                assert response.json()["field"] == "unit_id"  # refused for acting, not role
    # The admin's own unit-route commands went through.
    registry = world.api.registry
    assert registry.unit("new-unit-3").name == "新单位"
    assert registry.unit("other").name == "更名后的单位"
    assert registry.unit("spare").dissolved


def test_a_unit_acting_as_itself_by_name_is_not_refused(world: World) -> None:
    own = check(world, "parent", "POST", "/members/{m}/activities", 201,
                body={"kind": "组织生活会", "unit_id": "parent", "occurred_on": "2021-01-01"})
    assert own.json()["member_id"] == world.members["command"]
    admin = check(world, "admin", "POST", "/units", 201,
                  body={"code": "by-name", "name": "n", "kind": "school", "region": "上海",
                        "unit_id": ADMIN_UNIT})
    assert admin.json()["unit_id"] == "by-name"


# --- credentials ------------------------------------------------------------------------


def test_bad_credentials_are_401_on_every_kind_of_endpoint(world: World) -> None:
    api = world.api
    expired = api.token("parent", expires_on=date(2020, 1, 1))
    for token in (expired, "hbr_unknown", "", "x" * 5000):
        for method, path, body in (
            ("GET", "/units/parent/queue", None),
            ("GET", "/members/{m_own}", None),
            ("GET", "/compliance/findings", None),
            ("POST", "/members/{m}/activities", {"kind": "k"}),
            ("POST", "/units", {"code": "z", "name": "z", "kind": "school", "region": "r"}),
        ):
            response = api.call(method, world.fill(path), token or None, json_body=body)
            refused(response, 401, "UNAUTHORIZED")
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_an_unauthenticated_request_with_an_invalid_body_is_401(world: World) -> None:
    response = world.api.call("POST", world.fill("/members/{m}/activities"), None,
                              json_body={"kind": "", "colour": "red"})
    refused(response, 401, "UNAUTHORIZED")


def test_an_unauthenticated_request_with_a_malformed_body_is_401(world: World) -> None:
    response = world.api.call("POST", world.fill("/members/{m}/activities"), None,
                              content=b"{not json", headers={"Content-Type": "application/json"})
    refused(response, 401, "UNAUTHORIZED")


def test_a_dissolved_units_tokens_stop_at_once(world: World) -> None:
    check(world, "sibling", "GET", "/units/sibling/queue", 200)
    check(world, "admin", "POST", "/units/sibling/dissolution", 201,
          body={"successor_unit_id": "parent", "occurred_on": "2022-01-01"})
    check(world, "sibling", "GET", "/units/sibling/queue", 401)
    check(world, "sibling", "POST", "/members/{m_transit}/inquiries", 401,
          body={"channel": "phone", "summary": "s"})
    check(world, "parent", "GET", "/units/sibling/queue", 200)  # its parent still reads it


def test_a_refused_write_tells_a_unit_that_may_not_read_the_member_no_details(
    world: World,
) -> None:
    """`child` may read nothing of the member in transit (held by `other`, letter 2020-1
    out to `sibling`): its refused writes name the code, the field and what to do, but
    not the holder, the letter, the version or who recorded what. The holder, which may
    read the member, is told all of it."""
    api, case = world.api, world.cases["transit"]
    member = world.members["transit"]
    day = {"occurred_on": "2021-01-01"}
    asks = [
        (f"/members/{member}/cases/{case}/letters",
         {"letter_no": "x-1", "to_unit_id": "parent", "dues_paid_through": "2020-12"}, None),
        (f"/members/{member}/cases/{case}/letter-declines",
         {"letter_no": "2020-1", "reason_code": "not_our_area"}, None),
        (f"/members/{member}/cases/{case}/withdrawals", {"reason": "不办了"}, None),
        (f"/members/{member}/contacts", {"channel": "phone", "note": "n"}, {"If-Match": "0"}),
        (f"/members/{member}/voids", {"voided": 10_000, "reason": "x"}, None),
        (f"/members/{member}/contacts", {"channel": "phone", "note": "n",
                                         "occurred_on": "2019-01-01"}, None),
        (f"/members/{member}/cases/{case}/letter-declines",
         {"letter_no": "2020-1", "reason_code": "not_our_area", "occurred_on": "2020-02-15"},
         None),
    ]  # fmt: skip
    head = api.registry.position()
    for path, body, headers in asks:
        told = api.call("POST", path, world.tokens["child"], json_body={**day, **body},
                        headers=headers).json()
        assert told["status"] in (404, 409, 422) and told["code"] in CODES, told
        assert "child may not read this member" in told["detail"], told
        for detail in ("other", "sibling", "2020-1", "2020-01-01", "2020-03-01"):
            assert detail not in told["detail"].replace("2020-12", ""), (told, detail)
        assert "current_version" not in told
    assert api.registry.position() == head
    # The holder reads the member, and its refusals keep their details.
    told = api.call("POST", f"/members/{member}/contacts", world.tokens["other"],
                    json_body={**day, "channel": "phone", "note": "n"},
                    headers={"If-Match": "0"}).json()
    assert told["code"] == "STALE_VERSION" and told["current_version"] == 3
    told = api.call("POST", f"/members/{member}/cases/{case}/letters", world.tokens["other"],
                    json_body={**day, "letter_no": "x-1", "to_unit_id": "parent",
                               "dues_paid_through": "2020-12"}).json()
    assert told["code"] == "R2_LETTER_OUTSTANDING" and "2020-1" in told["detail"]
