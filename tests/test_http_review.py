"""Review findings on the HTTP API: headers, strict input, problem fields, CSV, Accept,
read-your-writes on the audit routes, OpenAPI examples and unknown query parameters."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from api.http import schemas
from api.http.routes.commands import CASE_ACTIONS, MEMBER_ACTIONS
from api.spreadsheet import FINDING_COLUMNS, QUEUE_COLUMNS, SCORECARD_COLUMNS, csv_cell
from tests.test_http_api import ADMIN_UNIT, Api, Article, refused
from tests.test_http_api import api as api  # the fixtures
from tests.test_http_api import article as article
from tests.test_http_api import registry as registry


def _activity(article: Article) -> tuple[Api, str, str, dict[str, str]]:
    api = article.api
    return (
        api,
        f"/members/{article.members.liu_yang}/activities",
        api.token("sh-org-dept"),
        {"kind": "组织生活会", "occurred_on": "2011-10-01"},
    )


# --- 1. If-Match takes ASCII digits only ------------------------------------------------


@pytest.mark.parametrize("value", [b"\xb2", b"1\xb2", b"\xb9\xb2", b"5W", b'"5', b"W/W/5"])
def test_an_if_match_that_is_not_ascii_digits_is_422_naming_the_header(
    article: Article, value: bytes
) -> None:
    api, path, clerk, body = _activity(article)
    response = api.client.post(
        path, json=body, headers={"Authorization": f"Bearer {clerk}", "If-Match": value}
    )
    refused(response, 422, "INVALID_INPUT", "If-Match")


def test_if_match_still_takes_plain_quoted_and_weak_versions(article: Article) -> None:
    api, path, clerk, body = _activity(article)
    version = api.get(f"/members/{article.members.liu_yang}", clerk).json()["version"]
    for sent in (f" {version} ", f'"{version + 1}"', f'W/"{version + 2}"'):
        response = api.post(path, clerk, body, headers={"If-Match": sent})
        assert response.status_code == 201, response.text


# --- 2. dates are YYYY-MM-DD, numbers are JSON integers ---------------------------------


@pytest.mark.parametrize(
    "occurred_on",
    [1699920000, "1699920000", 1699920000000, "2011-10-01T00:00:00", "20111001", True],
)
def test_a_body_date_is_only_a_yyyy_mm_dd_string(article: Article, occurred_on: object) -> None:
    api, path, clerk, body = _activity(article)
    problem = refused(
        api.post(path, clerk, {**body, "occurred_on": occurred_on}),
        422,
        "INVALID_INPUT",
        "occurred_on",
    )
    assert problem["detail"] == f"occurred_on must be a date YYYY-MM-DD (got {occurred_on!r})"


def test_every_kind_of_route_refuses_a_date_that_is_a_number(article: Article) -> None:
    api, liu = article.api, article.members.liu_yang
    case = article.case_of(liu)
    clerk = api.token("sh-org-dept")
    # the lean inquiry route, a case action and an enrolment field, FastAPI's own unit route
    sent = [
        (
            f"/members/{liu}/inquiries",
            clerk,
            {"channel": "phone", "summary": "s", "occurred_on": 1318000000},
            "occurred_on",
        ),
        (
            f"/members/{liu}/cases/{case}/evidence",
            clerk,
            {"kind": "lease", "reference": "r", "valid_until": "2030-01-01T00:00:00"},
            "valid_until",
        ),
        (
            "/members",
            clerk,
            {
                "name": "n",
                "id_number": "110101199505050017",
                "standing": "probationary",
                "household_region": "r",
                "probation_started_on": 1318000000,
            },
            "probation_started_on",
        ),
        (
            "/units/sh-univ/rename",
            article.admin,
            {"name": "n", "occurred_on": "20111001"},
            "occurred_on",
        ),
    ]
    for path, token, body, field in sent:
        refused(api.post(path, token, body), 422, "INVALID_INPUT", field)


@pytest.mark.parametrize("months", [True, "3", 3.0, "three", None])
def test_an_integer_field_takes_only_a_json_integer(article: Article, months: object) -> None:
    api, liu = article.api, article.members.liu_yang
    clerk = api.token("sh-org-dept")
    refused(
        api.post(
            f"/members/{liu}/probation-extensions",
            clerk,
            {"months": months, "occurred_on": "2011-10-01"},
        ),
        422,
        "INVALID_INPUT",
        "months",
    )
    refused(
        api.post(
            f"/members/{liu}/voids",
            clerk,
            {"voided": months, "reason": "r", "occurred_on": "2011-10-01"},
        ),
        422,
        "INVALID_INPUT",
        "voided",
    )


@pytest.mark.parametrize("on", ["20240101", "1699920000", "2024-01-01T00:00:00", "2024-1-1"])
def test_a_query_date_is_only_yyyy_mm_dd_and_says_so(article: Article, on: str) -> None:
    api, liu, auditor = article.api, article.members.liu_yang, article.auditor
    for path, name in (
        (f"/members/{liu}", "on"),
        ("/scorecards", "on"),
        (f"/cases/{article.case_of(liu)}", "on"),
        (f"/members/{liu}/history", "as_of"),
        (f"/members/{liu}/history", "as_recorded"),
    ):
        problem = refused(api.get(path, auditor, params={name: on}), 422, "INVALID_INPUT", name)
        assert problem["detail"] == f"{name} must be a date YYYY-MM-DD (got {on!r})", path


def test_well_formed_dates_still_pass_and_calendar_limits_stay_invalid_date(
    article: Article,
) -> None:
    api, liu, auditor = article.api, article.members.liu_yang, article.auditor
    assert api.get(f"/members/{liu}", auditor, params={"on": "2011-10-01"}).status_code == 200
    refused(api.get(f"/members/{liu}", auditor, params={"on": "0001-01-01"}), 422, "INVALID_DATE")
    refused(
        api.get(f"/members/{liu}", auditor, params={"on": "2011-02-30"}), 422, "INVALID_INPUT", "on"
    )
    api_, path, clerk, body = _activity(article)
    assert api_.post(path, clerk, body).status_code == 201


# --- 3. a refusal names the header the client sent --------------------------------------


def test_a_stale_version_names_the_if_match_header(article: Article) -> None:
    api, path, clerk, body = _activity(article)
    refused(
        api.post(path, clerk, body, headers={"If-Match": "1"}), 409, "STALE_VERSION", "If-Match"
    )


def test_idempotency_refusals_name_the_idempotency_key_header(article: Article) -> None:
    api, path, clerk, body = _activity(article)
    key = {"Idempotency-Key": "k-1"}
    assert api.post(path, clerk, body, headers=key).status_code == 201
    refused(
        api.post(path, clerk, {**body, "kind": "other"}, headers=key),
        409,
        "IDEMPOTENCY_KEY_REUSED",
        "Idempotency-Key",
    )
    refused(
        api.post(path, clerk, body, headers={"Idempotency-Key": "del\x7f"}),
        422,
        "INVALID_INPUT",
        "Idempotency-Key",
    )
    # FastAPI's own routes (not the lean ones) too
    rename = {"Idempotency-Key": "rename-1"}
    assert (
        api.post("/units/sh-univ/rename", article.admin, {"name": "a"}, headers=rename).status_code
        == 201
    )
    refused(
        api.post("/units/sh-univ/rename", article.admin, {"name": "b"}, headers=rename),
        409,
        "IDEMPOTENCY_KEY_REUSED",
        "Idempotency-Key",
    )


# --- 4. a command whose fields are all optional needs no body ---------------------------


def test_commands_without_required_fields_take_no_body(api: Api) -> None:
    univ, center = api.token("sh-univ"), api.token("daning-center")
    enrolled = api.post(
        "/members",
        univ,
        {
            "name": "王小明",
            "id_number": "110101199505050017",
            "standing": "probationary",
            "household_region": "外省某县",
            "probation_started_on": "2024-01-10",
            "developing_unit_id": "sh-univ",
            "occurred_on": "2024-01-10",
        },
    )
    member = enrolled.json()["member_id"]
    case = api.post(
        f"/members/{member}/inquiries", center, {"channel": "walk_in", "summary": "s"}
    ).json()["case_id"]
    assert (
        api.post(
            f"/members/{member}/cases/{case}/referrals",
            center,
            {"to_unit_id": "hongkou-center", "handover": "warm", "reason": "r"},
        ).status_code
        == 201
    )
    hongkou = api.token("hongkou-center")
    json_type = {"Content-Type": "application/json"}
    accepted = api.call(
        "POST", f"/members/{member}/cases/{case}/referral-acceptances", hongkou
    )  # no body, no content type
    assert accepted.status_code == 201, accepted.text
    confirmed = api.call(
        "POST", f"/members/{member}/confirmation", univ, content=b"", headers=json_type
    )
    assert confirmed.status_code == 201, confirmed.text
    refused(
        api.post(f"/members/{member}/confirmation", univ, {"colour": "red"}),
        422,
        "INVALID_INPUT",
        "colour",
    )
    refused(
        api.post(f"/members/{member}/confirmation", univ, None, content=b"null", headers=json_type),
        422,
        "INVALID_INPUT",
    )
    dissolved = api.call("POST", "/units/sh-univ/dissolution", api.token(ADMIN_UNIT, "admin"))
    assert dissolved.status_code == 201, dissolved.text
    # a body is still checked, and a command with required fields still needs one
    refused(
        api.post(
            "/units/hongkou-center/dissolution", api.token(ADMIN_UNIT, "admin"), {"colour": "red"}
        ),
        422,
        "INVALID_INPUT",
        "colour",
    )

    refused(api.call("POST", f"/members/{member}/contacts", center), 422, "INVALID_INPUT")


# --- 5. Accept is parsed, with q-values, case-insensitively -----------------------------


@pytest.mark.parametrize(
    ("accept", "is_csv"),
    [
        ("text/csv", True),
        ("Text/CSV", True),
        ("text/csv; charset=utf-8", True),
        ("text/csv;q=0, application/json", False),
        ("text/csv;q=0", False),
        ("application/json;q=0.5, text/csv;q=0.9", True),
        ("application/json, text/csv;q=0.9", False),
        ("text/csv, application/json", False),  # a tie stays JSON
        ("text/*", True),
        ("text/*;q=0.1, */*;q=1", False),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("text/csvx", False),
        ("text/csv;q=banana", False),
    ],
)
def test_csv_only_when_the_client_prefers_it(article: Article, accept: str, is_csv: bool) -> None:
    response = article.api.get("/scorecards", article.auditor, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    kind = response.headers["content-type"]
    assert kind.startswith("text/csv" if is_csv else "application/json"), (accept, kind)


# --- 6. CSV: fixed columns, a header always, true/false, no formulas --------------------


def _csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for Chinese
    return list(csv.reader(io.StringIO(response.text.removeprefix("\ufeff"))))


CSV = {"Accept": "text/csv"}


def test_an_empty_csv_answer_still_has_its_header(article: Article) -> None:
    api, auditor = article.api, article.auditor
    assert _csv(api.get("/units/sh-org-dept/queue", auditor, headers=CSV)) == [list(QUEUE_COLUMNS)]
    assert _csv(api.get("/compliance/findings", auditor, params={"rule": "R9"}, headers=CSV)) == [
        list(FINDING_COLUMNS)
    ]
    header, *_ = _csv(api.get("/scorecards", auditor, headers=CSV))
    assert header == list(SCORECARD_COLUMNS)


def test_queue_csv_has_the_same_columns_for_every_kind_of_item_and_safe_cells(
    article: Article,
) -> None:
    api, liu = article.api, article.members.liu_yang
    univ = api.token("sh-univ")
    letter = api.post(
        f"/members/{liu}/cases/{article.case_of(liu)}/letters",
        univ,
        {
            "letter_no": '=HYPERLINK("x")',
            "to_unit_id": "hongkou-center",
            "dues_paid_through": "2011-08",
            "occurred_on": "2011-09-01",
        },
    )
    assert letter.status_code == 201, letter.text
    position = {"min_position": letter.json()["position"]}
    for unit in ("sh-univ", "sh-residence-center"):
        header, *rows = _csv(
            api.get(f"/units/{unit}/queue", article.auditor, params=position, headers=CSV)
        )
        assert header == list(QUEUE_COLUMNS)
        assert rows and all(len(row) == len(header) for row in rows)
    _, *rows = _csv(api.get("/units/sh-univ/queue", article.auditor, params=position, headers=CSV))
    (row,) = [dict(zip(QUEUE_COLUMNS, r, strict=True)) for r in rows if r[1] == "letter"]
    assert row["letter_no"] == '\'=HYPERLINK("x")'
    _, *rows = _csv(
        api.get(
            "/units/sh-residence-center/queue",
            article.auditor,
            params={"on": "2011-09-19"},
            headers=CSV,
        )
    )
    stalled = {
        dict(zip(QUEUE_COLUMNS, r, strict=True))["stalled"]
        for r in rows
        if r[0] == "first_responder_cases"
    }
    assert stalled and stalled <= {"true", "false"}


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-3, "-3"),
        (1.5, "1.5"),
        ("=1+1", "'=1+1"),
        ("+86 21", "'+86 21"),
        ("-x", "'-x"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("张三", "张三"),
        ("a=b", "a=b"),
    ],
)
def test_csv_cells(value: Any, cell: str) -> None:
    assert csv_cell(value) == cell


# --- 7. every query takes min_position, the audit routes too ----------------------------


def test_the_audit_routes_wait_for_min_position(article: Article) -> None:
    api, auditor = article.api, article.auditor
    beyond = {"min_position": api.registry.position() + 1000}
    bundle = f"/audit/members/{article.members.liu_yang}/bundle"
    for path in ("/audit/status", bundle):
        refused(api.get(path, auditor, params=beyond), 422, "INVALID_INPUT", "min_position")
        refused(
            api.get(path, auditor, params={"min_position": -1}),
            422,
            "INVALID_INPUT",
            "min_position",
        )
    now = {"min_position": api.registry.position()}
    status = api.get("/audit/status", auditor, params=now)
    assert status.status_code == 200 and status.json()["log_size"] >= now["min_position"]


def test_every_query_documents_min_position(article: Article) -> None:
    paths = article.api.client.get("/openapi.json").json()["paths"]
    for path, item in paths.items():
        if "get" in item and path not in ("/healthz", "/metrics"):
            names = {p["name"] for p in item["get"].get("parameters", [])}
            assert "min_position" in names, path


# --- 8. every request body has an example, valid for its body ---------------------------


def test_every_request_body_has_an_example_its_model_accepts(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            content = operation["requestBody"]["content"]["application/json"]
            name = content["schema"]["$ref"].rpartition("/")[2]
            examples = [
                *components[name].get("examples", []),
                *([content["example"]] if "example" in content else []),
                *(e["value"] for e in content.get("examples", {}).values()),
            ]
            assert examples, (method, path, name)
            model = getattr(schemas, name)
            for example in examples:
                model.model_validate_json(json.dumps(example))  # as a client would send it
            checked += 1
            if path.startswith("/members") or path.startswith("/units"):
                replay = operation["responses"]["200"]["content"]["application/json"]
                assert replay["schema"]["$ref"].endswith("/CommandResult"), (method, path)
    # every command: the unit routes, enrolment, inquiries, every case and member action
    assert checked == 3 + 2 + len(CASE_ACTIONS) + len(MEMBER_ACTIONS)


# --- 9. an unknown query parameter is refused, not ignored ------------------------------


def test_an_unknown_query_parameter_is_422_naming_it(article: Article) -> None:
    api, liu, auditor = article.api, article.members.liu_yang, article.auditor
    for path, params, name in (
        (f"/members/{liu}/history", {"as_off": "2011-01-01"}, "as_off"),
        ("/compliance/findings", {"severty": "breach"}, "severty"),
        (f"/members/{liu}", {"on": "2011-10-01", "colour": "red"}, "colour"),  # lean
        ("/scorecards", {"min_position": "0", "x": "1"}, "x"),
        ("/members", {"q": "刘", "limit": "5"}, "limit"),
        ("/audit/status", {"verbose": "1"}, "verbose"),
        (f"/audit/members/{liu}/bundle", {"format": "zip"}, "format"),
    ):
        problem = refused(api.get(path, auditor, params=params), 422, "INVALID_INPUT", name)
        assert repr(name) in problem["detail"], problem
    # the documented ones still pass, min_position everywhere
    for path, params in (
        (f"/members/{liu}/history", {"as_of": "2011-01-01", "min_position": "0"}),
        (
            "/compliance/findings",
            {
                "severity": "breach",
                "rule": "R2",
                "unit": "sh-univ",
                "open": "true",
                "on": "2011-10-01",
            },
        ),
        (f"/members/{liu}", {"on": "2011-10-01", "min_position": "0"}),
        ("/audit/status", {"min_position": "0"}),
    ):
        assert api.get(path, auditor, params=params).status_code == 200, path
