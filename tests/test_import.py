"""harbor import: paper records through the rules, all-or-nothing per member, resumable."""

from __future__ import annotations

import codecs
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from uuid import UUID

import pytest

from api.demo import load_article_cases
from api.importer import import_file
from api.parallel_import import import_in_parallel
from domain.batch import Batch
from domain.errors import NotFound
from domain.registry import Registry
from store import open_registry
from tests.conftest import TODAY
from tests.support import event_count

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "article-cases.jsonl"


def _trail(registry: Registry, member_id: object) -> list[tuple[str, str, str]]:
    return [(type(e).__name__, e.occurred_on.isoformat(), e.unit_id)
            for e in registry.member(member_id).history]  # type: ignore[arg-type]


def test_the_example_file_gives_the_same_trails_as_the_demo(registry: Registry,
                                                            tmp_path: Path) -> None:
    report = import_file(registry, EXAMPLE)

    assert report.ok and report.stored == report.lines == 25
    demo = open_registry(f"sqlite:///{tmp_path / 'demo.db'}", clock=lambda: TODAY)
    members = load_article_cases(demo)
    for member in (members.liu_yang, members.old_comrade):
        assert _trail(registry, member) == _trail(demo, member)
    demo.close()


def test_running_the_same_file_again_adds_nothing(registry: Registry) -> None:
    import_file(registry, EXAMPLE)
    count = event_count(registry)

    again = import_file(registry, EXAMPLE)

    assert again.ok and again.stored == 0 and again.already == 25
    assert event_count(registry) == count


def _lines(path: Path, objects: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects),
                    encoding="utf-8")
    return path


def test_a_bad_line_rejects_its_member_and_only_its_member(registry: Registry,
                                                          tmp_path: Path) -> None:
    import_file(registry, EXAMPLE)
    base = {"unit": "daning-center", "on": "2020-01-02"}
    good, bad = "310109195001019901", "310109195001019902"
    path = _lines(tmp_path / "mixed.jsonl", [
        {**base, "action": "enrol", "name": "甲", "id_number": good, "standing": "full",
         "household_region": "上海·闸北"},
        {**base, "action": "enrol", "name": "乙", "id_number": bad, "standing": "full",
         "household_region": "上海·闸北"},
        {**base, "action": "inquiry", "member": bad, "channel": "phone", "summary": "想转出"},
        {**base, "action": "attach", "member": bad, "basis": "workplace"},  # line 4: no evidence
        {**base, "action": "contact", "member": bad, "channel": "phone", "note": "回访"},
        {**base, "action": "contact", "member": good, "channel": "phone", "note": "回访"},
    ])
    with path.open("a", encoding="utf-8") as f:
        f.write('{"action": "dues", "unit": \n')  # line 7: not JSON at all
    count = event_count(registry)

    report = import_file(registry, path)

    by_line = {p.line: p for p in report.problems}
    assert sorted(by_line) == [2, 3, 4, 5, 7]
    assert by_line[4].code == "R1_BASIS_WITHOUT_EVIDENCE" and by_line[4].field == "basis"
    assert {by_line[n].code for n in (2, 3, 5)} == {"MEMBER_REJECTED"}
    assert by_line[7].code == "INVALID_INPUT"
    assert event_count(registry) == count + 2  # the good member's two lines, nothing else
    assert [type(e).__name__ for e in registry.member(registry.member_id_for(good)).history] == [
        "MemberEnrolled", "ContactMade"]
    with pytest.raises(NotFound):
        registry.member(registry.member_id_for(bad))


def test_a_line_that_cannot_be_read_rejects_the_member_it_names(registry: Registry,
                                                                 tmp_path: Path) -> None:
    import_file(registry, EXAMPLE)
    base = {"unit": "daning-center", "on": "2020-01-02"}
    good, bad = "310109195001019903", "310109195001019904"
    path = _lines(tmp_path / "unreadable.jsonl", [
        {**base, "action": "enrol", "name": "丙", "id_number": bad, "standing": "full",
         "household_region": "上海·闸北"},
        {**base, "action": "contact", "member": bad, "channel": "phone", "note": "回访"},
        {**base, "action": "contact", "member": bad, "channel": "phone", "note": "再访",
         "on": "2020-13-40"},  # line 3: no such date
        {**base, "action": "enrol", "name": "丁", "id_number": good, "standing": "full",
         "household_region": "上海·闸北"},
        {**base, "action": "contact", "member": bad, "channel": "phone", "note": "三访"},
        {**base, "action": "enrol", "name": "戊", "id_number": "310109195001019905",
         "standing": "full", "household_region": "上海·闸北",
         "idempotency_key": "mine"},  # line 6: the import makes the keys
    ])
    count = event_count(registry)

    report = import_file(registry, path)

    by_line = {p.line: p for p in report.problems}
    assert sorted(by_line) == [1, 2, 3, 5, 6]
    assert by_line[3].code == "INVALID_INPUT" and by_line[3].field == "on"
    assert {by_line[n].code for n in (1, 2, 5)} == {"MEMBER_REJECTED"}
    assert by_line[6].code == "INVALID_INPUT" and by_line[6].field == "idempotency_key"
    assert "remove" in by_line[6].message
    assert event_count(registry) == count + 1  # only the good member's enrolment
    assert registry.member(registry.member_id_for(good)).history
    for refused in (bad, "310109195001019905"):
        with pytest.raises(NotFound):
            registry.member(registry.member_id_for(refused))


def test_a_file_from_a_windows_editor_imports_and_a_line_not_in_utf8_is_reported(
    registry: Registry, tmp_path: Path
) -> None:
    import_file(registry, EXAMPLE)
    base = {"unit": "daning-center", "on": "2020-01-02"}
    first, second = "310109195001019906", "310109195001019907"
    lines = [json.dumps(o, ensure_ascii=False).encode("utf-8") for o in [
        {**base, "action": "enrol", "name": "己", "id_number": first, "standing": "full",
         "household_region": "上海·闸北"},
        {**base, "action": "enrol", "name": "庚", "id_number": second, "standing": "full",
         "household_region": "上海·闸北"},
    ]]
    not_utf8 = json.dumps({**base, "action": "contact", "member": second, "channel": "phone",
                           "note": "回访"}, ensure_ascii=False).encode("gbk")
    windows = tmp_path / "windows.jsonl"  # a byte-order mark, CRLF, one line in GBK
    windows.write_bytes(codecs.BOM_UTF8 + b"\r\n".join([*lines, not_utf8]) + b"\r\n")
    count = event_count(registry)

    report = import_file(registry, windows)

    # The unreadable line names its member in ASCII digits: none of that member's lines
    # is stored without it, as for any other refused line.
    assert [(p.line, p.code) for p in report.problems] == [
        (2, "MEMBER_REJECTED"),
        (3, "INVALID_INPUT"),
    ]
    assert "UTF-8" in report.problems[1].message
    assert report.stored == 1 and event_count(registry) == count + 1
    # The same lines without the mark and with plain line ends are the same lines.
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    again = import_file(registry, plain)
    assert again.ok and again.already == 1 and again.stored == 1
    assert event_count(registry) == count + 2


def test_a_refusal_names_the_keys_and_the_member_as_the_file_writes_them(
    registry: Registry, tmp_path: Path
) -> None:
    import_file(registry, EXAMPLE)
    base = {"unit": "daning-center", "on": "2020-01-02"}
    enrolled, stranger = "310109195001019911", "310109195001019912"
    unknown_id = "5b2f4e0c-1111-4222-8333-444455556666"
    path = _lines(tmp_path / "refused.jsonl", [
        {**base, "action": "enrol", "name": "辛", "id_number": enrolled, "standing": "full",
         "household_region": "上海·闸北"},
        {**base, "action": "contact", "member": stranger, "channel": "phone", "note": "回访"},
        {**base, "action": "contact", "member": unknown_id, "channel": "phone", "note": "回访"},
        {**base, "action": "enrol", "name": "壬", "id_number": "310109195001019913",
         "standing": "full", "household_region": "上海·闸北", "on": "2099-01-01"},
        {**base, "action": "enrol", "name": "癸", "id_number": "310109195001019914",
         "standing": "full", "household_region": "上海·闸北", "unit": "no-such-unit"},
        {**base, "action": "contact", "member": enrolled, "channel": "phone", "note": "早",
         "on": "2019-01-01"},  # line 6: before the enrolment
        {**base, "action": "unit-rename", "code": "no-such-unit", "name": "新名"},
    ])

    report = import_file(registry, path)

    by_line = {p.line: p for p in report.problems}
    assert (by_line[2].code, by_line[2].field) == ("UNKNOWN_MEMBER", "member")
    assert by_line[2].message == (f"no member with ID number {stranger}; enrol them first"
                                  " (an `enrol` line before this one)")
    assert (by_line[3].code, by_line[3].field) == ("UNKNOWN_MEMBER", "member")
    assert by_line[3].message.startswith(f"no member with member id {unknown_id};")
    assert (by_line[4].code, by_line[4].field) == ("INVALID_DATE", "on")
    assert by_line[4].message.startswith("on 2099-01-01 is in the future")
    assert (by_line[5].code, by_line[5].field) == ("UNKNOWN_UNIT", "unit")
    assert (by_line[6].code, by_line[6].field) == ("INVALID_DATE", "on")
    assert by_line[6].message.startswith("on 2019-01-01 is before the member's enrolment")
    assert (by_line[7].code, by_line[7].field) == ("UNKNOWN_UNIT", "code")
    text = "\n".join(str(p) for p in report.problems)
    for internal in ("occurred_on", "unit_id", "member_id"):
        assert internal not in text
    assert str(registry.member_id_for(stranger)) not in text


def test_a_line_that_does_not_parse_is_reported_in_its_own_terms(
    registry: Registry, tmp_path: Path
) -> None:
    import_file(registry, EXAMPLE)
    path = tmp_path / "parse.jsonl"
    path.write_text(
        '{"action": "dues", "unit": \n'  # cut off mid-object
        "{}\n"
        '{"action": "inquiry", "unit": "daning-center", "member": "310109195001019915",'
        ' "channel": "phone"}\r\n'
        '{"action": "unit", "unit": "sh-org-dept", "name": "名", "kind": "service_center"}\n',
        encoding="utf-8",
    )

    report = import_file(registry, path)

    by_line = {p.line: p for p in report.problems}
    assert by_line[1].message == "not a JSON object: Expecting value at column 28"
    assert (by_line[2].field, by_line[2].message) == (
        "action", "every line names its action (see docs/import.md)")
    assert (by_line[3].field, by_line[3].message) == ("summary", "an inquiry line needs summary")
    assert by_line[4].message == "a unit line needs code"


def test_a_line_an_older_harbor_stored_is_replayed_though_it_would_be_refused_now(
    registry: Registry, tmp_path: Path
) -> None:
    """Re-running a file never refuses what is already there: an older Harbor took lines the
    HTTP bodies' checks refuse (here three decimal places), and stored them."""
    from api.importer import _keys
    from domain.registry import Actor

    import_file(registry, EXAMPLE)
    comrade = "310109195001010022"
    line = {"action": "dues", "unit": "daning-center", "on": "2006-07-01", "member": comrade,
            "months_from": "2006-07", "months_to": "2006-07", "amount": "4.505"}
    path = _lines(tmp_path / "old.jsonl", [line])
    ((_, _, key),) = list(_keys(path))
    registry.receive_dues(  # what the older importer did with the line, under its key
        Actor("daning-center", "import"), registry.member_id_for(comrade),
        occurred_on=date(2006, 7, 1), months_from="2006-07", months_to="2006-07",
        amount="4.505", idempotency_key=key,
    )  # fmt: skip
    count = event_count(registry)

    again = import_file(registry, path)

    assert again.ok and again.already == 1 and event_count(registry) == count
    fresh = _lines(tmp_path / "new.jsonl", [{**line, "on": "2006-07-02"}])
    refused = import_file(registry, fresh)
    assert [(p.code, p.field) for p in refused.problems] == [("INVALID_INPUT", "amount")]
    assert event_count(registry) == count


def test_null_case_id_and_expected_version_mean_left_out(registry: Registry,
                                                         tmp_path: Path) -> None:
    import_file(registry, EXAMPLE)
    line = {"action": "contact", "unit": "daning-center", "on": "2006-07-01",
            "member": "310109195001010022", "channel": "phone", "note": "回访",
            "expected_version": None}
    report = import_file(registry, _lines(tmp_path / "nulls.jsonl", [line]))
    assert report.ok and report.stored == 1


# A value of the right type for every field a line may carry (not all valid together).
_FIELDS: dict[str, object] = {
    "code": "new-unit", "name": "名", "kind": "service_center", "region": "上海",
    "parent_unit_id": "daning-center", "successor_unit_id": "daning-center",
    "id_number": "310109195001019999", "standing": "full", "household_region": "上海",
    "probation_started_on": "2020-01-01", "developing_unit_id": "daning-center",
    "holder_unit_id": "daning-center", "channel": "phone", "summary": "s",
    "prior_contacts": [{"who": "a", "answer": "b"}], "documents": ["d"], "reference": "r",
    "valid_until": "2021-01-01", "finding": "f", "outcome": "reached",
    "contacted_unit_id": "daning-center", "contacted_name": "n",
    "consulted_unit_id": "daning-center", "note": "n", "purpose": "p",
    "to_unit_id": "daning-center", "to_name": "t", "rule": "R3", "until": "2021-01-01",
    "covering_from": "2019-01-01", "covering_to": "2019-06-01", "letter_no": "L1",
    "dues_paid_through": "2019-12", "special_circumstances": "x", "reason_code": "other",
    "reason": "r", "handover": "warm", "basis": "residence", "override_reason": "o",
    "months_from": "2019-01", "months_to": "2019-02", "amount": "1.00", "months": 2,
}
_WRONG: list[object] = [7, ["a"], {"a": 1}, "x" * 3000, None, "a\x00\nb"]


def _malformed(action: str) -> list[dict[str, object]]:
    """A line of ``action`` with each field in turn left out or of a wrong type."""
    from api.importer import UNIT_ACTIONS, _accepted

    names = sorted(_accepted(action) - {"idempotency_key", "occurred_on", "case_id",
                                        "expected_version"})
    base: dict[str, object] = {"action": action, "unit": "daning-center", "on": "2020-01-02"}
    if action not in UNIT_ACTIONS and action != "enrol":
        base["member"] = "310109195001010022"
    base |= {n: "lease" if (action, n) == ("evidence", "kind") else _FIELDS[n] for n in names}
    lines = []
    for name in [*names, "case_id", "expected_version", "on", "by", "action", "unit", "member"]:
        if name in base:
            lines.append({k: v for k, v in base.items() if k != name})
        lines += [{**base, name: wrong} for wrong in _WRONG]
    return lines


def test_no_line_however_malformed_stops_an_import(registry: Registry, tmp_path: Path) -> None:
    """Every field of every action left out or of the wrong type: reported or stored, never
    an exception out of the import, and a reported line stores nothing."""
    from api.importer import ACTIONS, UNIT_ACTIONS

    import_file(registry, EXAMPLE)
    tried = 0
    for action in [*UNIT_ACTIONS, *ACTIONS]:
        for line in _malformed(action):
            path = _lines(tmp_path / "one.jsonl", [line])
            count = event_count(registry)
            report = import_file(registry, path)  # raises on a crash
            tried += 1
            assert report.lines == 1
            if report.problems:
                (problem,) = report.problems
                assert problem.code and problem.message, line
                assert event_count(registry) == count, line
    assert tried > 500


def test_a_line_is_checked_with_the_http_body_of_the_same_command() -> None:
    from api.bodies import BODIES
    from api.http.routes.commands import CASE_ACTIONS, MEMBER_ACTIONS
    from api.importer import ACTIONS, UNIT_ACTIONS

    http = {method: model for model, method, _ in [*CASE_ACTIONS.values(),
                                                   *MEMBER_ACTIONS.values()]}
    methods = ACTIONS | UNIT_ACTIONS
    assert set(BODIES) == set(methods)
    shared = {a: m for a, m in methods.items() if m in http}
    assert len(shared) == 23  # all but enrol, inquiry and the unit actions
    assert {a: BODIES[a] for a in shared} == {a: http[m] for a, m in shared.items()}


def _generated(path: Path, members: int) -> Path:
    objects: list[dict[str, object]] = []
    for i in range(members):
        number = f"3101091950{i:08d}"
        objects.append({"action": "enrol", "unit": "daning-center", "on": "2020-01-02",
                        "name": f"党员{i}", "id_number": number, "standing": "full",
                        "household_region": "上海·闸北"})
        for month in range(1, 6):
            objects.append({"action": "dues", "unit": "daning-center", "on": "2020-06-01",
                            "member": number, "months_from": f"2020-0{month}",
                            "months_to": f"2020-0{month}", "amount": "1.00"})
    return _lines(path, objects)


@pytest.mark.slow
def test_an_interrupted_import_resumes_and_stores_every_line_once(store_url: str,
                                                                 tmp_path: Path) -> None:
    registry = open_registry(store_url, clock=lambda: TODAY)
    import_file(registry, EXAMPLE)
    base = event_count(registry)
    path = _generated(tmp_path / "big.jsonl", 600)  # 3,600 lines
    env = {**os.environ, "HARBOR_DATABASE_URL": store_url}
    first = subprocess.Popen([sys.executable, "-m", "api.cli", "import", str(path),
                              "--batch-events", "100"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while event_count(registry) < base + 500:
        assert first.poll() is None, "the import finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    interrupted = event_count(registry)
    assert base < interrupted < base + 3600

    # The rest in two processes (on SQLite, one: it says so).
    done = subprocess.run([sys.executable, "-m", "api.cli", "import", str(path), "--jobs", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout + done.stderr
    assert ("--jobs needs PostgreSQL" in done.stderr) == store_url.startswith("sqlite")
    assert event_count(registry) == base + 3600
    for i in (0, 299, 599):
        history = registry.member(registry.member_id_for(f"3101091950{i:08d}")).history
        assert [type(e).__name__ for e in history] == ["MemberEnrolled"] + ["DuesReceived"] * 5
    registry.close()


def _story(number: str, letter_no: str) -> list[dict[str, object]]:
    """A member enrolled at factory-superior, taken in by daning-center on a letter."""
    holder = {"unit": "factory-superior", "member": number}
    center = {"unit": "daning-center", "member": number}
    return [
        {"action": "enrol", "unit": "factory-superior", "on": "2020-01-02", "name": "党员",
         "id_number": number, "standing": "full", "household_region": "上海·闸北"},
        {**center, "action": "inquiry", "on": "2020-02-01", "channel": "walk_in",
         "summary": "申请转入居住地"},
        {**center, "action": "evidence", "on": "2020-02-02", "kind": "lease",
         "reference": f"租赁合同 {number}", "valid_until": "2030-01-01"},
        {**holder, "action": "letter", "on": "2020-02-10", "letter_no": letter_no,
         "to_unit_id": "daning-center", "dues_paid_through": "2020-01"},
    ]


@pytest.fixture
def slow_commits(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The example's units, then every batch commit takes a while: the next batch is
    decided meanwhile."""
    import_file(registry, EXAMPLE)
    commit = registry.commit_batch

    def slowly(batch: Batch) -> dict[UUID, BaseException]:
        time.sleep(0.1)
        return commit(batch)

    monkeypatch.setattr(registry, "commit_batch", slowly)
    return registry


def test_a_member_whose_batch_is_still_committing_is_decided_on_what_it_stored(
    slow_commits: Registry, tmp_path: Path
) -> None:
    # Batches of two events: while one commits on the committer thread, the next is
    # decided; a member's line right after its batch left waits for that commit.
    registry = slow_commits
    a, b = "310109195001019911", "310109195001019912"
    a_lines, b_lines = _story(a, "2020-801"), _story(b, "2020-802")
    path = _lines(tmp_path / "interleaved.jsonl", [
        *a_lines[:2], *b_lines[:1], *a_lines[2:], *b_lines[1:],
    ])
    count = event_count(registry)

    report = import_file(registry, path, batch_events=2)

    assert report.ok, [str(p) for p in report.problems]
    assert report.stored == 8
    assert event_count(registry) == count + 10  # each letter also claims its number
    for number in (a, b):
        history = registry.member(registry.member_id_for(number)).history
        assert [type(e).__name__ for e in history] == [
            "MemberEnrolled", "InquiryReceived", "EvidenceRecorded", "LetterIssued"]


def test_a_letter_number_taken_in_the_batch_still_committing_is_refused_as_taken(
    slow_commits: Registry, tmp_path: Path
) -> None:
    registry = slow_commits
    a, b = "310109195001019921", "310109195001019922"
    path = _lines(tmp_path / "same-number.jsonl", [
        *_story(a, "2020-900"), *_story(b, "2020-900"),
    ])

    report = import_file(registry, path, batch_events=3)

    by_line = {p.line: p for p in report.problems}
    assert sorted(by_line) == [5, 6, 7, 8]
    assert by_line[8].code == "LETTER_NO_TAKEN"
    assert {by_line[n].code for n in (5, 6, 7)} == {"MEMBER_REJECTED"}
    assert report.stored == 4


def test_an_import_shared_among_processes_stores_what_one_process_would(
    pg_registry: Registry, tmp_path: Path
) -> None:
    import_file(pg_registry, EXAMPLE)
    base = event_count(pg_registry)
    generated = _generated(tmp_path / "members.jsonl", 120).read_text(encoding="utf-8")
    path = tmp_path / "shared.jsonl"
    unit = {"action": "unit", "unit": "sh-org-dept", "on": "2020-01-01", "code": "new-center",
            "name": "新中心", "kind": "service_center", "region": "上海"}
    path.write_text(json.dumps(unit, ensure_ascii=False) + "\n" + generated, encoding="utf-8")
    with path.open("a", encoding="utf-8") as f:  # lines 722-723: one unreadable, one refused
        f.write('{"action": "dues", "unit": \n')
        f.write(json.dumps({"action": "attach", "unit": "daning-center", "on": "2020-07-01",
                            "member": "310109195000000007", "basis": "workplace"}) + "\n")

    report = import_in_parallel(pg_registry, path, jobs=2, batch_events=100)

    assert report.processes == 2
    # The unit line is stored once, by this process; member 7's earlier lines were
    # committed before its refused line was reached.
    assert report.lines == 723 and report.units == 1 and report.stored == 721
    assert [(p.line, p.code) for p in report.problems] == [
        (722, "INVALID_INPUT"),
        (723, "R9_NO_OPEN_CASE"),  # member 7 has no case to attach on
    ]
    assert len(report.members) == 120
    assert event_count(pg_registry) == base + 721
    for i in (0, 59, 119):
        history = pg_registry.member(pg_registry.member_id_for(f"3101091950{i:08d}")).history
        assert [type(e).__name__ for e in history] == ["MemberEnrolled"] + ["DuesReceived"] * 5

    again = import_in_parallel(pg_registry, path, jobs=2)
    assert again.lines == 723 and again.stored == 0 and again.already == 721
    assert event_count(pg_registry) == base + 721


def test_an_import_with_a_unit_line_after_members_runs_in_one_process(
    pg_registry: Registry, tmp_path: Path
) -> None:
    import_file(pg_registry, EXAMPLE)
    path = _generated(tmp_path / "late-unit.jsonl", 4)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"action": "unit", "unit": "sh-org-dept", "on": "2020-01-01",
                            "code": "late-center", "name": "后设中心",
                            "kind": "service_center", "region": "上海"},
                           ensure_ascii=False) + "\n")

    report = import_in_parallel(pg_registry, path, jobs=2)

    assert report.ok and report.processes == 1 and report.units == 1
    assert report.stored == 25


def test_lines_json_cannot_carry_into_the_store_are_reported_not_raised(
    registry: Registry, tmp_path: Path
) -> None:
    """Valid JSON that is no text or number Harbor can keep: a lone surrogate escape (in a
    value, the recorder's name, the unit or a key), thousands of digits, deep nesting."""
    import_file(registry, EXAMPLE)
    contact = '"action": "contact", "unit": "daning-center", "member": "310109195001010022"'

    def line(rest: str) -> str:
        return "{" + contact + ", " + rest + "}"

    path = tmp_path / "odd.jsonl"
    path.write_text(
        "\n".join([
            line('"channel": "phone", "note": "\\ud800"'),
            line('"channel": "phone", "note": "n", "by": "\\udc00"'),
            '{"action": "contact", "unit": "\\ud800", "member": "310109195001010022"}',
            line('"\\ud800": 1'),
            line('"channel": "phone", "note": ' + "9" * 5000),
            "[" * 100_000 + "]" * 100_000,
            line('"channel": "phone", "note": "\\ud83d\\ude00 fine"'),
        ]) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    count = event_count(registry)

    report = import_file(registry, path)

    by_line = {p.line: p for p in report.problems}
    assert sorted(by_line) == [1, 2, 3, 4, 5, 6], report.problems
    assert (by_line[1].field, by_line[2].field, by_line[3].field) == ("note", "by", "unit")
    assert "lone surrogate" in by_line[1].message
    assert "4,300 digits" in by_line[5].message and "nested too deeply" in by_line[6].message
    assert report.stored == 1 and event_count(registry) == count + 1  # the emoji's line


def test_a_unit_line_among_a_members_lines_does_not_store_the_ones_before_it(
    registry: Registry, tmp_path: Path
) -> None:
    """The example file's letter (line 22) made bad: the old comrade's dues (14, 15), before
    the dissolution on line 16, are not stored either — all of the member or nothing."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    assert '"unit-dissolve"' in lines[15] and '"letter"' in lines[21]
    lines[21] = lines[21].replace('"to_unit_id": "daning-center"', '"to_unit_id": "nowhere"')
    path = tmp_path / "bad-letter.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = import_file(registry, path)

    by_line = {p.line: p.code for p in report.problems}
    assert by_line[22] == "UNKNOWN_UNIT"
    assert by_line[14] == by_line[15] == "MEMBER_REJECTED"
    with pytest.raises(NotFound):
        registry.member(registry.member_id_for("310109195001010022"))
    assert 16 not in by_line  # the dissolution itself is stored


def test_refusals_name_the_field_the_line_got_wrong(registry: Registry, tmp_path: Path) -> None:
    import_file(registry, EXAMPLE)
    member = {"unit": "daning-center", "member": "310109195001010022"}
    path = _lines(tmp_path / "fields.jsonl", [
        {**member, "action": "archive-review", "finding": "f", "member": "12345"},
        {**member, "action": "archive-review", "finding": "f", "case_id": "zzz",
         "expected_version": 1},
        {**member, "action": "inquiry", "channel": "phone", "summary": "s",
         "prior_contacts": [{"who": "a"}]},
        {"action": "unit-rename", "unit": "sh-org-dept", "name": "新名"},
        {**member, "action": "contact", "channel": "phone", "note": "n",
         "occurred_on": "2020-01-01"},
    ])  # fmt: skip

    report = import_file(registry, path)

    got = {p.line: (p.field, p.message) for p in report.problems}
    assert got[1][0] == "member" and "'12345'" in got[1][1]
    assert got[2][0] == "case_id"
    assert got[3] == ("prior_contacts", "an inquiry line needs prior_contacts.0.answer")
    assert got[4][0] == "code" and "needs code" in got[4][1]
    assert got[5] == (
        "occurred_on", "the import takes the line's date as 'on'; rename 'occurred_on'"
    )


def test_member_on_a_line_that_names_its_member_otherwise_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    """An enrolment names its member by id_number, a unit line names none: a `member` there
    was silently ignored, so a line naming two different people stored one of them."""
    import_file(registry, EXAMPLE)
    enrol = {"action": "enrol", "unit": "daning-center", "on": "2020-01-02", "name": "辛",
             "id_number": "310109195001019908", "standing": "full",
             "household_region": "上海·闸北", "member": "310109195001019909"}
    unit = {"action": "unit", "unit": "sh-org-dept", "code": "new-centre", "name": "新中心",
            "kind": "service_center", "region": "上海·闸北", "member": "310109195001019908"}
    count = event_count(registry)

    report = import_file(registry, _lines(tmp_path / "named.jsonl", [enrol, unit]))

    assert [(p.line, p.code, p.field) for p in report.problems] == [
        (1, "INVALID_INPUT", "member"), (2, "INVALID_INPUT", "member"),
    ]
    assert "id_number" in report.problems[0].message
    assert report.stored == 0 and event_count(registry) == count


def test_the_import_command_prints_json_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli import main

    monkeypatch.setenv("HARBOR_DATABASE_URL", f"sqlite:///{tmp_path / 'h.db'}")
    path = tmp_path / "bom.jsonl"
    body = EXAMPLE.read_bytes()
    path.write_bytes(codecs.BOM_UTF8 + b"\n \n" + body + "\u3000\n".encode())

    assert main(["--json", "import", str(path)]) == 0

    out = json.loads(capsys.readouterr().out)
    assert (out["lines"], out["stored"], out["not_stored"], out["problems"]) == (25, 25, 0, [])
    from api.importer import count_lines

    assert count_lines(path) == 25  # what the progress bar counts: the lines read


def test_a_unit_dissolved_by_an_import_line_loses_its_tokens(
    registry: Registry, tmp_path: Path
) -> None:
    """As `harbor units dissolve` and the HTTP route: the credentials stop and are listed so."""
    from store.sql import Db
    from store.tokens import TokenStore

    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    dissolve = next(i for i, line in enumerate(lines) if '"unit-dissolve"' in line)
    code = json.loads(lines[dissolve])["code"]
    first = tmp_path / "before.jsonl"
    first.write_text("\n".join(lines[:dissolve]) + "\n", encoding="utf-8")
    import_file(registry, first)
    tokens = TokenStore(Db(registry.recorder.datastore))  # type: ignore[attr-defined]
    tokens.issue(code, "unit", "档案室", TODAY.replace(year=TODAY.year + 1), today=TODAY)

    import_file(registry, EXAMPLE)

    assert [t.unit_id for t in tokens.list() if t.revoked_at is None and t.unit_id == code] == []
