"""The command line: the README's `make run`, and subcommands calling the application service."""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.cli import MEMBER_COMMANDS, build_parser, main
from domain.registry import Registry, today_in_shanghai
from store import open_registry
from store.tokens import DEFAULT_LIFETIME
from tests.conftest import fresh_pg_database
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_make_run_serves_the_article_cases_on_a_fresh_embedded_store(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HARBOR_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "HARBOR_PORT": str(port),
    }
    server = subprocess.Popen(
        ["make", "-s", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        assert server.stdout is not None
        while not any(line.startswith("auditor token") for line in lines):
            line = server.stdout.readline()
            assert line, "make run ended early:\n" + "".join(lines)
            lines.append(line)
        # An admin token (units, credentials) and an auditor token (reads) are printed, each
        # expiring after the admin default (store/tokens.py); the auditor's reads below.
        expires = today_in_shanghai() + DEFAULT_LIFETIME["admin"]
        assert f"admin token (sh-org-dept, valid through {expires}): hbr_" in lines[-2]
        assert f"auditor token (sh-org-dept, valid through {expires}): hbr_" in lines[-1]
        token = lines[-1].split(": ", 1)[1].strip()
        assert f"Harbor is serving at http://127.0.0.1:{port}" in "".join(lines)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2).json()
                if health["projection_lag"] == 0 and health["member_cache"]["warming"] == "done":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        # The article's members were loaded before serving, so warming the cache found them.
        assert health["member_cache"]["members"] >= 2
        assert health["follower"] == {"runs_in": "thread"}  # SQLite: one process

        cards = httpx.get(
            f"{base}/scorecards",
            params={"on": "2011-09-19"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()

        by_unit = {c["unit_id"]: c for c in cards}
        assert (by_unit["daning-center"]["seen_through"], by_unit["daning-center"]["dropped"]) == (
            1,
            0,
        )
        assert (
            by_unit["sh-residence-center"]["answered_first"],
            by_unit["sh-residence-center"]["dropped"],
        ) == (1, 1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_harbor_demo_prints_both_article_cases(
    cli, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("demo") == 0

    out = capsys.readouterr().out
    assert "Case 1 — 刘洋" in out and "Case 2 — 老同志" in out
    assert "answered first by 居住地街道党员服务中心 (sh-residence-center)" in out
    assert "answered first by 闸北区大宁社区（街道）党员服务中心 (daning-center)" in out
    assert "referred to home-county (cold)" in out
    assert "attached, basis other on letter 2006-001" in out
    assert "Scorecards" in out


@pytest.fixture
def cli(store_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)

    def run(*argv: str) -> int:
        return main(list(argv))

    return run


def _units(cli) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli(
            "units",
            "add",
            "sh-org-dept",
            "--name",
            "组织部",
            "--kind",
            "org_department",
            "--region",
            "上海",
            "--on",
            "2000-01-01",
        )
        == 0
    )
    assert (
        cli(
            "units",
            "add",
            "daning-center",
            "--name",
            "大宁",
            "--kind",
            "service_center",
            "--region",
            "上海·闸北",
            "--unit",
            "sh-org-dept",
            "--on",
            "2000-01-01",
        )
        == 0
    )


def test_enrol_then_inquiry_from_the_command_line(
    cli, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    _units(cli)
    assert (
        cli(
            "--json",
            "enrol",
            "--unit",
            "daning-center",
            "--name",
            "张三",
            "--id-number",
            "310109195001010022",
            "--standing",
            "full",
            "--household-region",
            "上海·虹口",
            "--on",
            "2001-01-01",
            "--as",
            "clerk-wang",
        )
        == 0
    )
    member_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["member_id"]

    code = cli(
        "--json",
        "inquiry",
        "310109195001010022",
        "--unit",
        "daning-center",
        "--channel",
        "walk_in",
        "--summary",
        "想转入",
        "--prior",
        "单位=去街道",
        "--on",
        "2006-05-08",
    )

    assert code == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["member_id"] == member_id and outcome["first_responder"] == "daning-center"
    from store import open_registry

    app: Registry = open_registry(store_url)
    try:
        enrolled, inquiry = app.member(member_id).history
        assert enrolled.recorded_by == "clerk-wang"
        assert inquiry.recorded_by == (os.environ.get("USER") or getpass.getuser())
        assert inquiry.unit_id == "daning-center"
    finally:
        app.close()


def test_a_refusal_exits_1_and_names_the_code(cli, capsys: pytest.CaptureFixture[str]) -> None:
    _units(cli)
    cli(
        "enrol",
        "--unit",
        "daning-center",
        "--name",
        "张三",
        "--id-number",
        "310109195001010022",
        "--standing",
        "full",
        "--household-region",
        "上海·虹口",
        "--on",
        "2001-01-01",
    )
    capsys.readouterr()

    code = cli(
        "attach",
        "310109195001010022",
        "--unit",
        "daning-center",
        "--basis",
        "other",
        "--on",
        "2006-05-08",
    )

    assert code == 1
    assert "R9_NO_OPEN_CASE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [("queue", "no-such-unit"), ("scorecard", "no-such-unit"), ("findings", "--unit", "no-such")],
)
def test_a_unit_that_does_not_exist_is_refused_not_shown_empty(
    cli, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    _units(cli)
    capsys.readouterr()

    code = cli(*argv)

    assert code == 1
    assert "UNKNOWN_UNIT" in capsys.readouterr().err


def test_the_same_idempotency_key_twice_records_once(
    cli, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    _units(cli)
    cli(
        "enrol",
        "--unit",
        "daning-center",
        "--name",
        "张三",
        "--id-number",
        "310109195001010022",
        "--standing",
        "full",
        "--household-region",
        "上海·虹口",
        "--on",
        "2001-01-01",
    )
    args = (
        "contact",
        "310109195001010022",
        "--unit",
        "daning-center",
        "--channel",
        "phone",
        "--note",
        "电话联系",
        "--on",
        "2006-05-08",
        "--idempotency-key",
        "k-1",
    )

    assert cli(*args) == 0 and cli(*args) == 0

    out = capsys.readouterr().out
    assert "already recorded (same idempotency key)" in out
    from store import open_registry

    app = open_registry(store_url)
    try:
        assert app.member(app.member_id_for("310109195001010022")).version == 2
    finally:
        app.close()


@pytest.mark.parametrize("command", [c.name for c in MEMBER_COMMANDS] + ["enrol", "demo"])
def test_every_subcommand_has_help(command: str) -> None:
    parser = build_parser()

    with pytest.raises(SystemExit) as done:
        parser.parse_args([command, "--help"])

    assert done.value.code == 0


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["import"],
        ["rebuild"],
        ["project"],
        ["status"],
        ["tokens", "issue"],
        ["tokens", "list"],
        ["tokens", "revoke"],
        ["verify"],
        ["units", "add"],
        ["enrol"],
    ],
    ids=" ".join,
)
def test_help_pages_describe_the_command_and_show_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])

    assert done.value.code == 0
    page = capsys.readouterr().out
    description = page.split("\n\n")[1]  # after the usage
    assert not description.startswith(("options:", "positional arguments:"))
    assert "\nexample:\n  " in page


def test_json_is_accepted_before_and_after_the_command(
    cli, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARBOR_SIGNING_KEY", str(tmp_path / "keys" / "signing.pem"))
    monkeypatch.setenv("HARBOR_WITNESS_FILE", str(tmp_path / "witness.txt"))
    _units(cli)
    cli(
        "enrol",
        "--unit",
        "daning-center",
        "--name",
        "张三",
        "--id-number",
        "310109195001010022",
        "--standing",
        "full",
        "--household-region",
        "上海·虹口",
        "--on",
        "2001-01-01",
    )
    capsys.readouterr()

    for command in (["units", "list"], ["status", "310109195001010022"], ["verify"]):
        for argv in (["--json", *command], [*command, "--json"]):
            assert cli(*argv) == 0, argv
            out = capsys.readouterr().out
            assert json.loads(out), argv  # the whole output is one JSON document

    assert build_parser().parse_args(["tokens", "list"]).json is False


def test_harbor_help_runs_as_a_console_script() -> None:
    harbor = Path(sys.executable).parent / "harbor"

    done = subprocess.run([str(harbor), "--help"], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0 and "HARBOR_DATABASE_URL" in done.stdout


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no test has used (on PostgreSQL the shared one keeps its tables)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_pg_database("harbor_test_init") as url:
        yield url


def test_db_init_creates_every_table_harbor_uses(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARBOR_DATABASE_URL", empty_database)

    assert main(["db", "init"]) == 0

    tables = _table_names(empty_database)
    assert "harbor_command_receipts" in tables  # the event store (events: by backend)
    assert {"harbor_events", "stored_events"} & tables
    assert {"harbor_projection_state", "harbor_tokens"} <= tables  # read side, credentials
    assert {
        "harbor_merkle_leaves",
        "harbor_merkle_nodes",
        "harbor_tree_heads",
        "harbor_signing_keys",
        "harbor_verifications",
    } <= tables  # the audit log
    assert "harbor_p1_members" in tables, sorted(tables)  # the first generation's tables


def _table_names(url: str) -> set[str]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {r[0] for r in rows}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_tables_line_up_on_screen_with_chinese_unit_names() -> None:
    from api.cli_projections import _table, _width

    lines = _table([["unit", "first"], ["大宁社区党员服务中心", "12"], ["zb-factory", "3"]]).split(
        "\n"
    )

    assert lines[0].startswith("unit ")
    assert _width(lines[1]) == _width(lines[2]) == _width("大宁社区党员服务中心") + 2 + 5
    assert lines[2].endswith("    3")


# --- tokens: every new token expires ----------------------------------------------------


def _issue(cli, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = cli("tokens", "issue", "--unit", "daning-center", "--holder", "王芳", *argv)
    out, err = capsys.readouterr()
    return code, out, err


def _listed(cli, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    assert cli("tokens", "list", "--json") == 0
    rows: list[dict[str, str]] = json.loads(capsys.readouterr().out)
    return rows


def test_tokens_issue_gives_every_token_its_roles_default_expiry(
    cli, capsys: pytest.CaptureFixture[str]
) -> None:
    _units(cli)
    capsys.readouterr()
    today = today_in_shanghai()
    for role, days in (("unit", 365), ("auditor", 365), ("admin", 30)):
        assert DEFAULT_LIFETIME[role] == timedelta(days=days)
        code, out, err = _issue(cli, capsys, "--role", role)
        assert code == 0, err
        assert out.startswith("hbr_") and len(out.splitlines()) == 1  # the token alone
        assert f"expires {today + timedelta(days=days)}" in err
    listed = {(r["role"], r["expires_on"]) for r in _listed(cli, capsys)}
    assert listed == {
        (role, (today + timedelta(days=days)).isoformat())
        for role, days in (("unit", 365), ("auditor", 365), ("admin", 30))
    }
    assert cli("tokens", "list") == 0
    text = capsys.readouterr().out
    assert "no expiry" not in text and text.count("expires ") == 3


def test_tokens_issue_expires_on_a_chosen_day_within_two_years(
    cli, capsys: pytest.CaptureFixture[str]
) -> None:
    _units(cli)
    capsys.readouterr()
    today = today_in_shanghai()
    chosen = [today, today + timedelta(days=730)]  # today itself; two years ahead
    for day in chosen:
        code, out, err = _issue(cli, capsys, "--role", "unit", "--expires", day.isoformat())
        assert code == 0, err
    assert sorted(r["expires_on"] for r in _listed(cli, capsys)) == [d.isoformat() for d in chosen]

    yesterday = (today - timedelta(days=1)).isoformat()
    code, out, err = _issue(cli, capsys, "--role", "unit", "--expires", yesterday)
    assert (code, out) == (2, "")
    assert f"expiry {yesterday} is in the past" in err
    too_far = (today + timedelta(days=731)).isoformat()
    code, out, err = _issue(cli, capsys, "--role", "admin", "--expires", too_far)
    assert (code, out) == (2, "")
    assert f"expiry {too_far} is more than 730 days ahead" in err
    assert (today + timedelta(days=730)).isoformat() in err  # the latest day it would take
    assert len(_listed(cli, capsys)) == 2  # nothing issued by the refusals


def test_tokens_list_flags_a_token_issued_before_expiry_was_required(
    cli, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    from store import open_registry
    from store.sql import Db
    from store.tokens import TABLE, TokenStore

    _units(cli)
    code, token, _ = _issue(cli, capsys, "--role", "unit")
    assert code == 0
    app: Registry = open_registry(store_url)
    try:  # as an older Harbor stored it: no expiry at all
        store = TokenStore(Db(app.recorder.datastore), cache_seconds=0)  # type: ignore[attr-defined]
        with store.db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (token_hash, token_id, unit_id, role, holder, issued_at,"
                " expires_on) VALUES ('old-hash', 'old00001', 'daning-center', 'unit', '老张',"
                " '2024-01-01T00:00:00+00:00', NULL)"
            )
        # ... and it still acts: existing databases keep working.
        (old,) = [t for t in store.list() if t.token_id == "old00001"]
        assert old.expires_on is None
        assert store.check(token.strip(), date(3000, 1, 1)) is None  # a new one does expire
    finally:
        app.close()

    assert cli("tokens", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    (flagged,) = [line for line in lines if line.startswith("old00001")]
    assert flagged.endswith("no expiry (issued before expiry was required; revoke and reissue)")
    (new,) = [line for line in lines if not line.startswith("old00001")]
    assert "  expires " in new
    rows = {r["token_id"]: r for r in _listed(cli, capsys)}
    assert rows["old00001"]["expires_on"] is None
    assert rows["old00001"]["state"].startswith("no expiry (issued before expiry was required")


def test_serve_on_a_port_in_use_says_so_before_announcing_anything(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    monkeypatch.setenv("HARBOR_DEMO", "no")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        code = main(["serve", "--port", str(port), "--admin-token", "--follower", "none"])

    out, err = capsys.readouterr()
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert "serving at" not in out and "token" not in out


@pytest.mark.parametrize(
    ("env", "argv", "named"),
    [
        ({"HARBOR_FOLLOWER": "proc"}, [], "HARBOR_FOLLOWER"),  # a typo ran with no follower
        ({"HARBOR_PORT": "abc"}, [], "HARBOR_PORT"),
        ({}, ["--port", "99999"], "--port"),
        ({}, ["--threads", "0"], "--threads"),
        ({}, ["--workers", "0"], "--workers"),
    ],
)
def test_serve_refuses_a_bad_setting_naming_it(
    env: dict[str, str], argv: list[str], named: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["serve", *argv])

    assert done.value.code == 2
    assert named in capsys.readouterr().err


def test_a_bad_harbor_port_does_not_stop_other_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARBOR_PORT", "abc")

    assert build_parser().parse_args(["units", "list"]).command == "units"


def test_serve_on_a_host_that_does_not_resolve_names_the_host(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)

    code = main(["serve", "--host", "no.such.host.invalid", "--demo", "--follower", "none"])

    assert code == 2
    assert "--host" in capsys.readouterr().err
    store = open_registry(store_url)
    try:
        assert store.position() == 0  # the demo waits for the port check
    finally:
        store.close()


# --- small things a newcomer meets ------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("status", "310104198503150031"),
        ("history", "310104198503150031"),
        ("queue", "daning-center"),
        ("lookup", "310104198503150031"),
        ("units", "list"),
        ("verify",),
        ("seal",),
    ],
)
def test_a_reading_command_on_a_mistyped_store_path_says_so_and_creates_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
) -> None:
    store = tmp_path / "nonexistent" / "dir" / "x.db"
    monkeypatch.setenv("HARBOR_DATABASE_URL", f"sqlite:///{store}")

    code = main(list(argv))

    assert code == 3
    assert capsys.readouterr().err == (
        f"harbor: no store at {store} (HARBOR_DATABASE_URL); create it with `harbor db init`"
        " or `harbor demo`\n"
    )
    assert not (tmp_path / "nonexistent").exists()


def test_a_writing_command_still_creates_the_store_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "new" / "x.db"
    monkeypatch.setenv("HARBOR_DATABASE_URL", f"sqlite:///{store}")

    assert main(["db", "init"]) == 0
    assert store.exists()
    assert main(["units", "list"]) == 0


def test_a_short_id_key_is_named_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARBOR_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("HARBOR_ID_KEY", "short")

    code = main(["status", "x"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("harbor: HARBOR_ID_KEY is 5 bytes long;")
    assert "at least 16 bytes" in err and "secrets.token_hex" in err
    assert "Traceback" not in err


def test_a_reader_that_leaves_early_ends_the_output_quietly(store_url: str) -> None:
    """`harbor demo | head -1`: the reader is gone before harbor writes."""
    env = {**os.environ, "HARBOR_DATABASE_URL": store_url}
    read, write = os.pipe()
    os.close(read)  # every write to the pipe fails: EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "demo"],
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write)

    assert done.stderr.decode() == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell reports it


def test_the_queue_says_yes_and_no_not_true_and_false(
    cli, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("demo") == 0
    capsys.readouterr()

    assert cli("queue", "sh-residence-center") == 0

    out = capsys.readouterr().out
    assert "outcome dropped, stalled yes" in out
    assert "True" not in out and "False" not in out


def test_a_postgresql_database_that_does_not_exist_is_named_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "HARBOR_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/harbor_no_such_database"
    )

    assert main(["units", "list"]) == 3
    err = capsys.readouterr().err
    assert 'database "harbor_no_such_database" does not exist' in err and "createdb" in err


def test_ctrl_c_ends_a_command_with_a_sentence_not_a_traceback(
    registry: Registry, store_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import api.cli

    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)

    def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(api.cli, "dispatch", interrupted)

    assert main(["units", "list"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "x", "--position", "-1"],
        ["roster", "u", "--limit", "0"],
        ["db", "status", "--max-lag", "-1"],
        ["queue", "u", "--within", "91"],
        ["rebuild", "--batch", "0"],
        ["db", "copy", "--to", "sqlite:///x.db", "--batch", "0"],
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_option(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(argv)

    assert done.value.code == 2
    option = next(a for a in argv if a.startswith("--") and a != "--to")
    assert f"{option} is a whole number" in capsys.readouterr().err


def test_tokens_list_says_expired_and_a_revoke_of_no_token_is_a_refusal_in_json(
    cli, capsys: pytest.CaptureFixture[str], store_url: str  # type: ignore[no-untyped-def]
) -> None:
    from store import open_registry
    from store.sql import Db
    from store.tokens import TABLE, TokenStore

    _units(cli)
    capsys.readouterr()
    yesterday = (today_in_shanghai() - timedelta(days=1)).isoformat()
    app: Registry = open_registry(store_url)
    try:
        store = TokenStore(Db(app.recorder.datastore), cache_seconds=0)  # type: ignore[attr-defined]
        with store.db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (token_hash, token_id, unit_id, role, holder, issued_at,"
                " expires_on) VALUES ('h', 'gone0001', 'daning-center', 'unit', '老张',"
                f" '2024-01-01T00:00:00+00:00', '{yesterday}')"
            )
    finally:
        app.close()

    assert {r["token_id"]: r["state"] for r in _listed(cli, capsys)} == {
        "gone0001": f"expired {yesterday}"
    }
    assert cli("--json", "tokens", "revoke", "nosuchid") == 1
    refusal = json.loads(capsys.readouterr().err)
    assert (refusal["code"], refusal["field"]) == ("UNKNOWN_TOKEN", "token_id")


def _leaves(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[str, Any]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, [*path, name])


def test_every_help_page_has_an_example_that_parses() -> None:
    """What a newcomer copies from `--help` is a command the parser takes."""
    leaves = list(_leaves(build_parser(), []))
    assert len(leaves) > 50
    for name, page in leaves:
        assert page.epilog and page.epilog.startswith("example:"), name
        example = page.epilog.split("\n", 1)[1].replace("\\\n", " ")  # continued lines
        line = example.splitlines()[0].split("#")[0].split("&&")[0].split(">")[0].strip()
        words = shlex.split(line)
        while "=" in words[0]:  # environment settings before the command
            words.pop(0)
        assert words[0] == "harbor", name
        build_parser().parse_args(words[1:])  # SystemExit (exit 2) if it does not parse


def test_db_init_lookup_and_rebuild_print_json_when_asked(
    registry: Registry, store_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.demo import load_article_cases

    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    load_article_cases(registry)
    capsys.readouterr()

    assert main(["--json", "db", "init"]) == 0
    assert json.loads(capsys.readouterr().out)["log_position"] == registry.position()
    assert main(["--json", "lookup", "110101199001010011"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "member_id": str(registry.member_id_for("110101199001010011"))
    }
    assert main(["--json", "rebuild"]) == 0
    assert json.loads(capsys.readouterr().out)["position"] == registry.position()


def test_every_member_commands_example_is_taken_by_the_rules_as_written(
    cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run in turn on the demo's store with 张三 enrolled, as the README has it, each member
    command's help example is decided by the rules: refused perhaps (a letter from a unit
    that does not hold 张三), but never bad usage or bad input — the example is right."""
    assert cli("demo") == 0
    assert cli("enrol", "--unit", "daning-center", "--name", "张三", "--id-number",
               "310104198503150031", "--standing", "full", "--household-region",
               "上海·闸北") == 0
    parser = build_parser()
    for cmd in MEMBER_COMMANDS:
        (subs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        epilog = subs.choices[cmd.name].epilog or ""
        words = shlex.split(epilog.split("\n", 1)[1].replace("\\\n", " ").split("#")[0])
        capsys.readouterr()

        code = cli("--json", *words[1:])

        err = capsys.readouterr().err
        assert code in (0, 1), (cmd.name, code, err)
        if code == 1:
            assert json.loads(err)["code"] != "INVALID_INPUT", (cmd.name, err)


def test_a_dues_amount_is_checked_as_the_http_api_checks_it(
    cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three decimals or thirteen digits: refused naming the amount, as over HTTP and in an
    import (the command line used to record them); 1e3 is recorded as 1000."""
    assert cli("demo") == 0
    comrade = "310109195001010022"
    for amount in ("1.234", "12345678901234"):
        capsys.readouterr()
        assert cli("--json", "dues", comrade, "--unit", "daning-center", "--from", "2026-01",
                   "--to", "2026-01", "--amount", amount) == 1, amount
        refusal = json.loads(capsys.readouterr().err)
        assert (refusal["code"], refusal["field"]) == ("INVALID_INPUT", "amount"), refusal
    assert cli("dues", comrade, "--unit", "daning-center", "--from", "2026-01", "--to",
               "2026-01", "--amount", "1e3") == 0
    registry = open_registry()
    try:
        (dues,) = [e for e in registry.member(registry.member_id_for(comrade)).history
                   if type(e).__name__ == "DuesReceived" and str(e.months_from) == "2026-01"]
        assert str(dues.amount) == "1000"  # type: ignore[attr-defined]
    finally:
        registry.close()


def test_a_refusal_names_the_option_to_correct_not_the_apis_field(
    cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("demo") == 0
    comrade = "310109195001010022"
    capsys.readouterr()

    assert cli("contact", comrade, "--unit", "daning-center", "--on", "2999-01-01",
               "--channel", "phone", "--note", "回访") == 1
    assert "[--on]" in capsys.readouterr().err
    assert cli("--json", "void", comrade, "--unit", "daning-center", "--position", "999999",
               "--reason", "误录") == 1
    refusal = json.loads(capsys.readouterr().err)
    assert (refusal["field"], refusal["option"]) == ("voided", "--position"), refusal
    assert cli("--json", "letter", comrade, "--unit", "daning-center", "--no", "x" * 51,
               "--to", "hongkou-center", "--dues-paid-through", "2026-10") == 1
    refusal = json.loads(capsys.readouterr().err)
    assert (refusal["field"], refusal["option"]) == ("letter_no", "--no"), refusal


def test_an_unknown_id_number_is_named_as_typed_with_what_to_check(
    cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("demo") == 0
    capsys.readouterr()

    assert cli("lookup", "110101199001010099") == 1
    said = capsys.readouterr().err
    assert "UNKNOWN_MEMBER" in said and "ID number 110101199001010099" in said
    assert "HARBOR_ID_KEY" in said and "harbor enrol" in said
    assert cli("status", "110101199001010099") == 1
    assert "ID number 110101199001010099" in capsys.readouterr().err


def test_findings_as_csv_are_the_http_apis_csv_formula_safe(
    cli: Any, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    """A name a spreadsheet would run as a formula is written as text, as over HTTP."""
    from api.spreadsheet import FINDING_COLUMNS

    assert cli("demo") == 0
    assert cli("enrol", "--unit", "daning-center", "--name", "=1+2", "--id-number",
               "310104198503150031", "--standing", "full", "--household-region", "上海",
               "--on", "2020-01-01") == 0
    capsys.readouterr()

    assert cli("findings", "--rule", "R7", "--csv") == 0

    rows = list(csv.reader(io.StringIO(capsys.readouterr().out.lstrip("\ufeff"))))
    assert rows[0] == list(FINDING_COLUMNS)
    assert "'=1+2" in [row[FINDING_COLUMNS.index("member_name")] for row in rows[1:]]
