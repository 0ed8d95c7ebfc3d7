"""在册: who is attached to a unit (DESIGN.md "Users": "who is attached here"), over HTTP
and from the command line, on both backends.

The members a unit holds and those with a letter on the way to it, by name (the same
order on both backends), a page at a time, each with the status a member's own page
gives; other units' members are not listed, and another unit may not list them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import date

import pytest

from api.cli import main
from api.spreadsheet import ROSTER_COLUMNS
from domain.registry import Registry
from tests.support import as_unit, register_article_units
from tests.test_http_api import Api, csv_rows, make_api, refused

# The fixture itself, reused: commit alone and group commit, on both backends.
from tests.test_http_api import registry as registry

ON = date(2021, 6, 1)
# Listed by the bytes of their names: 张 (E5…) < 李 (E6…) < 王 (E7…).
HELD = {"王五": "310101199001010017", "张三": "310101199001010025", "李四": "310101199001010033"}
ARRIVING = ("赵六", "310101199001010041")
ELSEWHERE = ("钱七", "310101199001010050")


@pytest.fixture
def api(registry: Registry) -> Iterator[Api]:
    """daning-center holds three members and has a fourth on the way from sh-univ;
    sh-univ holds a fifth."""
    register_article_units(registry)
    center, univ = as_unit("daning-center"), as_unit("sh-univ")
    for name, id_number in HELD.items():
        registry.enrol_member(center, name=name, id_number=id_number, standing="full",
                              household_region="上海", occurred_on=date(2021, 1, 4))
    for name, id_number in (ARRIVING, ELSEWHERE):
        registry.enrol_member(univ, name=name, id_number=id_number, standing="full",
                              household_region="上海", occurred_on=date(2021, 1, 4))
    arriving = registry.member_id_for(ARRIVING[1])
    registry.receive_inquiry(center, arriving, channel="walk_in", summary="回居住地",
                             occurred_on=date(2021, 3, 1))
    registry.record_evidence(center, arriving, kind="lease", reference="租赁合同",
                             valid_until=date(2030, 1, 1), occurred_on=date(2021, 3, 2))
    registry.issue_letter(univ, arriving, letter_no="U-2021-7", to_unit_id="daning-center",
                          dues_paid_through="2021-02", occurred_on=date(2021, 3, 5))
    yield from make_api(registry)


def test_a_unit_lists_whom_it_holds_and_who_is_on_the_way_by_name(api: Api) -> None:
    clerk = api.token("daning-center")
    data = api.get("/units/daning-center/members", clerk,
                   params={"on": ON.isoformat(), "min_position": api.registry.position()}).json()
    assert (data["unit_id"], data["on"], data["total"], data["offset"]) == (
        "daning-center", "2021-06-01", 4, 0
    )
    assert [(m["name"], m["relation"]) for m in data["members"]] == [
        ("张三", "held"), ("李四", "held"), ("王五", "held"), ("赵六", "arriving"),
    ]
    arriving = data["members"][3]
    assert (arriving["status"], arriving["holder_unit_id"], arriving["in_transit_to"]) == (
        "in_transit", "sh-univ", "daning-center"
    )
    assert arriving["letter_no"] == "U-2021-7" and arriving["open_case_id"] is not None
    # Each row is what the member's own page says.
    for member in data["members"]:
        alone = api.get(f"/members/{member['member_id']}", clerk, params={"on": "2021-06-01"})
        assert {**alone.json(), "relation": member["relation"]} == member

    page = api.get("/units/daning-center/members", clerk, params={"limit": 2, "offset": 2})
    assert [m["name"] for m in page.json()["members"]] == ["王五", "赵六"]
    assert page.json()["total"] == 4

    rows = csv_rows(api.get("/units/daning-center/members", clerk,
                            headers={"Accept": "text/csv"}))
    assert [(r["name"], r["relation"], r["colour"]) for r in rows][:1] == [
        ("张三", "held", data["members"][0]["colour"])
    ]
    assert len(rows) == 4

    univ = api.get("/units/sh-univ/members", api.token("sh-univ")).json()
    assert [(m["name"], m["relation"]) for m in univ["members"]] == [
        ("赵六", "held"), ("钱七", "held")
    ]


def test_only_the_unit_and_auditors_list_its_members_and_bad_pages_are_refused(
    api: Api,
) -> None:
    refused(api.get("/units/daning-center/members", api.token("sh-univ")), 403, "FORBIDDEN")
    refused(api.get("/units/daning-center/members", api.token("sh-org-dept", "admin")),
            403, "FORBIDDEN")
    auditor = api.token("sh-org-dept", "auditor")
    assert api.get("/units/daning-center/members", auditor).json()["total"] == 4
    refused(api.get("/units/nowhere/members", auditor), 404, "UNKNOWN_UNIT", "unit_id")
    refused(api.get("/units/daning-center/members", auditor, params={"limit": 0}),
            422, "INVALID_INPUT", "limit")
    refused(api.get("/units/daning-center/members", auditor, params={"limit": 1001}),
            422, "INVALID_INPUT", "limit")
    refused(api.get("/units/daning-center/members", auditor, params={"offset": -1}),
            422, "INVALID_INPUT", "offset")
    past = api.get("/units/daning-center/members", auditor, params={"offset": 10}).json()
    assert past["members"] == [] and past["total"] == 4


def test_cursor_pages_go_on_where_the_last_one_ended_when_a_member_joins_between(
    api: Api,
) -> None:
    """A member enrolled between two reads, named to sort first: the next offset page
    shows a member again; the next cursor page goes on with the ones not yet seen."""
    clerk = api.token("daning-center")
    path = "/units/daning-center/members"
    first = api.get(path, clerk, params={"limit": 2, "min_position": api.registry.position()})
    assert [m["name"] for m in first.json()["members"]] == ["张三", "李四"]
    cursor = first.json()["next_after"]
    assert isinstance(cursor, str)

    api.registry.enrol_member(as_unit("daning-center"), name="A 新来", standing="full",
                              id_number="310101199001010068", household_region="上海",
                              occurred_on=date(2021, 7, 1))
    fresh = {"min_position": api.registry.position()}

    by_offset = api.get(path, clerk, params={"limit": 2, "offset": 2, **fresh}).json()
    assert [m["name"] for m in by_offset["members"]] == ["李四", "王五"]  # 李四 again
    by_cursor = api.get(path, clerk, params={"limit": 2, "after": cursor, **fresh}).json()
    assert [m["name"] for m in by_cursor["members"]] == ["王五", "赵六"]
    assert by_cursor["total"] == 5 and by_cursor["next_after"] is None

    # Page by page with the cursor alone: every member once, in order, then no cursor.
    seen, after = [], None
    while True:
        page = api.get(path, clerk, params={"limit": 1, **({"after": after} if after else {})})
        seen += [m["name"] for m in page.json()["members"]]
        after = page.json()["next_after"]
        if after is None:
            break
    assert seen == ["A 新来", "张三", "李四", "王五", "赵六"]

    refused(api.get(path, clerk, params={"after": "not-a-cursor"}), 422, "INVALID_INPUT",
            "after")
    refused(api.get(path, clerk, params={"after": cursor, "offset": 1}), 422,
            "INVALID_INPUT", "after")


def test_harbor_roster_prints_a_page_and_where_the_next_one_starts(
    api: Api, store_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    api.get("/units/daning-center/members", api.token("daning-center"),
            params={"min_position": api.registry.position()})  # projected

    assert main(["roster", "daning-center", "--limit", "2", "--on", "2021-06-01"]) == 0
    out = capsys.readouterr().out
    assert out.index("张三") < out.index("李四") and "王五" not in out
    assert "members 1–2 of 4 (next page: --offset 2, or --after " in out
    cursor = out.rsplit("--after ", 1)[1].rstrip(")\n")

    assert main(["roster", "daning-center", "--limit", "2", "--after", cursor]) == 0
    out = capsys.readouterr().out
    assert "王五" in out and "赵六" in out and "李四" not in out
    assert "2 members after the cursor, of 4" in out and "next page" not in out

    assert main(["roster", "daning-center", "--offset", "2"]) == 0
    out = capsys.readouterr().out
    assert "王五" in out and "赵六" in out and "arriving" in out
    assert "members 3–4 of 4" in out and "next page" not in out

    # The table's member column is the whole id, which `harbor status` takes as it is.
    assert main(["roster", "daning-center", "--offset", "2"]) == 0
    shown = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                       capsys.readouterr().out)
    assert shown and main(["status", shown[0]]) == 0
    assert shown[0] in capsys.readouterr().out

    assert main(["roster", "daning-center", "--offset", "10"]) == 0
    assert "no members from 11 on; 4 in all" in capsys.readouterr().out

    assert main(["roster", "daning-center", "--csv"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # The HTTP API's CSV: the byte order mark, its fixed columns, every member.
    assert out.startswith("\ufeff") and lines[0][1:] == ",".join(ROSTER_COLUMNS)
    assert len(lines) == 5  # the header and every member
    assert main(["roster", "hongkou-center", "--csv"]) == 0  # nobody: the header alone
    assert capsys.readouterr().out.splitlines() == ["\ufeff" + ",".join(ROSTER_COLUMNS)]

    assert main(["roster", "nowhere"]) == 1
    assert "UNKNOWN_UNIT" in capsys.readouterr().err
    assert main(["roster", "daning-center", "--after", cursor, "--offset", "1"]) == 2  # usage
    assert "--after and --offset cannot be used together" in capsys.readouterr().err



def test_a_parent_unit_reads_its_sub_units_queue_but_not_their_members(api: Api) -> None:
    api.registry.enrol_member(as_unit("zb-factory"), name="孙八", id_number="310101199001010068",
                              standing="full", household_region="上海",
                              occurred_on=date(2021, 1, 4))
    member = api.registry.member_id_for("310101199001010068")
    api.registry.receive_inquiry(as_unit("zb-factory"), member, channel="walk_in",
                                 summary="转出", occurred_on=date(2021, 3, 1))
    parent, own = api.token("factory-superior"), api.token("zb-factory")
    fresh = {"min_position": api.registry.position()}
    # Its own queue names its members; the parent's view of it does not (it may not read them).
    mine = api.get("/units/zb-factory/queue", own, params=fresh).json()
    assert [c.get("member_name") for c in mine["first_responder_cases"]] == ["孙八"]
    theirs = api.get("/units/zb-factory/queue", parent, params=fresh)
    assert theirs.status_code == 200
    assert [c["member_id"] for c in theirs.json()["first_responder_cases"]] == [str(member)]
    assert "member_name" not in theirs.json()["first_responder_cases"][0]
    # So with its warnings (预警): on 20 March the case stalls in 12 days.
    early = {"on": "2021-03-20"}
    (warned,) = api.get("/units/zb-factory/queue", own, params=early).json()["due_soon"]
    assert (warned["rule"], warned["due_on"], warned["member_name"]) == ("R5", "2021-04-01", "孙八")
    (told,) = api.get("/units/zb-factory/queue", parent, params=early).json()["due_soon"]
    assert told["member_id"] == str(member) and "member_name" not in told
    refused(api.get("/units/zb-factory/members", parent), 403, "FORBIDDEN")
    listed = api.get("/units/zb-factory/members", own,
                     params={"min_position": api.registry.position()}).json()
    assert [m["name"] for m in listed["members"]] == ["孙八"]


def test_a_page_holds_200_by_default_and_the_csv_the_whole_roster(api: Api) -> None:
    center = as_unit("daning-center")
    for n in range(201):
        api.registry.enrol_member(center, name=f"成员{n:03d}", id_number=f"3101012000{n:07d}1",
                                  standing="full", household_region="上海",
                                  occurred_on=date(2021, 1, 4))
    clerk = api.token("daning-center")
    page = api.get("/units/daning-center/members", clerk,
                   params={"min_position": api.registry.position()}).json()
    assert (len(page["members"]), page["total"]) == (200, 205)
    rows = csv_rows(api.get("/units/daning-center/members", clerk,
                            headers={"Accept": "text/csv"}))
    assert len(rows) == 205 and len({r["member_id"] for r in rows}) == 205
    rest = csv_rows(api.get("/units/daning-center/members", clerk, params={"offset": 200},
                            headers={"Accept": "text/csv"}))
    assert [r["member_id"] for r in rest] == [r["member_id"] for r in rows[200:]]
    # CSV pages of a given size: the next page's address is in the Link header, with the
    # page's other parameters, until the last page, which has none.
    paged: list[str] = []
    address: str | None = "/units/daning-center/members?limit=60&on=2021-06-01"
    while address is not None:
        answer = api.get(address, clerk, headers={"Accept": "text/csv"})
        paged += [r["member_id"] for r in csv_rows(answer)]
        link = answer.headers.get("link")
        address = link[1:link.index(">")] if link else None
        assert link is None or ('rel="next"' in link and "limit=60" in link
                                and "on=2021-06-01" in link)
    assert paged == [r["member_id"] for r in rows]
    # A huge offset is refused, not a server error.
    refused(api.get("/units/daning-center/members", clerk, params={"offset": 2**64}),
            422, "INVALID_INPUT", "offset")


def test_the_parent_and_the_successor_of_a_dissolved_holder_list_and_read_its_members(
    api: Api,
) -> None:
    """R8: zb-factory closes with its members on the books. Its parent and its successor
    may issue their letters (R2), so they see them: on their roster as orphaned, and whole
    on the member's own pages. Nobody else gains anything."""
    registry = api.registry
    registry.enrol_member(as_unit("zb-factory"), name="孙八", id_number="310101199001010068",
                          standing="full", household_region="上海", occurred_on=date(2021, 1, 4))
    orphan = registry.member_id_for("310101199001010068")
    parent, successor, other = (api.token(u) for u in (
        "factory-superior", "hongkou-center", "sh-univ"))
    refused(api.get(f"/members/{orphan}", parent), 403, "FORBIDDEN")  # not before it closes
    registry.dissolve_unit(as_unit("sh-org-dept"), "zb-factory",
                           successor_unit_id="hongkou-center", occurred_on=date(2021, 5, 1))
    now = {"min_position": registry.position()}

    for token in (parent, successor):
        listed = api.get(f"/units/{'factory-superior' if token == parent else 'hongkou-center'}"
                         "/members", token, params=now).json()
        assert [(m["name"], m["relation"], m["status"]) for m in listed["members"]] == [
            ("孙八", "orphaned", "orphaned")
        ]
        status = api.get(f"/members/{orphan}", token, params=now)
        assert status.status_code == 200 and status.json()["holder_unit_id"] == "zb-factory"
        whole = api.get(f"/members/{orphan}/history", token, params=now).json()
        assert whole["limited_to_cases"] is None
        assert [e["event_type"] for e in whole["trail"]] == ["MemberEnrolled"]
    refused(api.get(f"/members/{orphan}", other), 403, "FORBIDDEN")
    assert api.get("/units/sh-univ/members", other, params=now).json()["total"] == 2
    # The successor takes over what was left waiting there: the closed unit's queue and
    # scorecard, as its parent always could. The roster stays the holder's own.
    for path in ("/units/zb-factory/queue", "/units/zb-factory/scorecard"):
        assert api.get(path, successor, params=now).status_code == 200, path
        refused(api.get(path, other, params=now), 403, "FORBIDDEN")
    cards = api.get("/scorecards", successor, params=now).json()
    assert {c["unit_id"] for c in cards} == {"hongkou-center", "zb-factory"}
    closed = refused(api.get("/units/zb-factory/members", successor, params=now), 403,
                     "FORBIDDEN")
    assert "on the rosters of its parent and its successor" in closed["detail"]


@pytest.mark.parametrize("cursor", [
    base64.urlsafe_b64encode(b'["a", ' + b"[" * 1100 + b"]" * 1100 + b"]").decode(),  # deep
    base64.urlsafe_b64encode(b'{"a": 1, "b": 2}').decode(),  # two keys, not a name and id
    base64.urlsafe_b64encode(b'"ab"').decode(),  # a string of two characters
    base64.urlsafe_b64encode('["张三", "x"]'.encode("utf-16")).decode(),  # not UTF-8
    "not base64 at all!",
])
def test_anything_but_a_cursor_is_refused_naming_after(api: Api, cursor: str) -> None:
    """Odd JSON, nested JSON and other encodings are not cursors: 422, never 500."""
    refused(api.get("/units/daning-center/members", api.token("daning-center"),
                    params={"after": cursor}), 422, "INVALID_INPUT", "after")
