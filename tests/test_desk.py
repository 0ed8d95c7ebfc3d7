"""The desk (/ui/) in a real browser: headless Chromium driven by Selenium, against
`harbor serve --demo` started as a process, on both backends.

A clerk signs in with a token, finds the letter waiting for the unit with the member's
name, opens the member and reads the trail, enrols a member and records actions with the
forms built from the API's schema (a refusal names its rule and stores nothing); an
auditor ranks units, reads findings and replays a history on a date; the admin sees only
the log's seals. Text from the records
is shown as text: an inquiry summary written as HTML runs nothing. Needs Debian's
chromium and chromium-driver (.ci/run installs them); without them the tests are skipped
with a loud reason, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
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

from tests.conftest import empty_for_a_server
from tests.support import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
HARBOR = str(ROOT / ".venv" / "bin" / "harbor")
TOKEN_LINE = re.compile(r"^(admin|auditor) token \(sh-org-dept, valid through [\d-]+\): (\S+)$")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 20.0
XSS = '<img src=x onerror="window.harborPwned=1">'


def _browser_missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    return ", ".join(missing) or None


@pytest.fixture(scope="module", autouse=True)
def browser_available() -> None:
    missing = _browser_missing()
    if missing is None:
        return
    reason = (
        f"no browser for the desk tests: missing {missing}"
        " (apt-get install chromium chromium-driver)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}")
    pytest.skip(f"SKIPPED BROWSER TESTS — {reason}")


@dataclass
class Desk:
    """A served demo store, its tokens, and the ids the tests need."""

    base: str
    env: dict[str, str]
    admin: str
    auditor: str
    clerk: str  # daning-center
    waiting_member: str  # a member whose letter to daning-center is outstanding
    waiting_name: str

    def post(self, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One command over HTTP, which must be stored."""
        response = httpx.post(f"{self.base}{path}", json=body,
                              headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data


def _issue(env: dict[str, str], unit: str, role: str = "unit", holder: str = "王老师") -> str:
    done = subprocess.run([HARBOR, "tokens", "issue", "--unit", unit, "--role", role,
                           "--holder", holder], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _wait_until_projected(base: str, position: int) -> None:
    response = httpx.get(f"{base}/healthz", timeout=10)
    deadline = time.monotonic() + WAIT
    while response.json()["projected_position"] < position:
        assert time.monotonic() < deadline, "the projections never caught up"
        time.sleep(0.1)
        response = httpx.get(f"{base}/healthz", timeout=10)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def desk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Desk]:
    """One served store per backend for the module: the browser tests only read."""
    tmp_path = tmp_path_factory.mktemp("desk")
    if request.param == "sqlite":
        store_url = f"sqlite:///{tmp_path / 'harbor.db'}"
    else:
        store_url = request.getfixturevalue("pg_database")
        empty_for_a_server(store_url)
    port = free_port()
    env = {**os.environ, "HARBOR_DATABASE_URL": store_url,
           "HARBOR_SIGNING_KEY": str(tmp_path / "no-signing-key.pem")}
    process = subprocess.Popen(
        [HARBOR, "serve", "--demo", "--admin-token", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(x) for x in stdout] + [lines.put(None)],
                     daemon=True).start()
    try:
        tokens: dict[str, str] = {}
        output: list[str] = []
        while len(tokens) < 2:
            line = lines.get(timeout=120)
            assert line is not None, "harbor serve ended early:\n" + "".join(output)
            output.append(line)
            if printed := TOKEN_LINE.match(line.strip()):
                tokens[printed.group(1)] = printed.group(2)
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, time.monotonic() + 60)
        clerk = _issue(env, "daning-center")
        hongkou = _issue(env, "hongkou-center", holder="李老师")
        desk = Desk(base, env, tokens["admin"], tokens["auditor"], clerk, "", "陈<b>晓</b>")
        # A member held at hongkou-center comes forward at daning-center, which has the
        # letter coming: it waits in daning-center's 待办. Its summary is written as HTML.
        member = desk.post(hongkou, "/members", {
            "name": desk.waiting_name, "id_number": "310101199203040015", "standing": "full",
            "household_region": "上海", "occurred_on": "2020-01-01"})["member_id"]
        case = desk.post(clerk, f"/members/{member}/inquiries", {
            "channel": "walk_in", "summary": XSS, "occurred_on": "2020-02-01"})["case_id"]
        desk.post(clerk, f"/members/{member}/cases/{case}/evidence", {
            "kind": "lease", "reference": "租赁合同 1", "valid_until": "2030-01-01",
            "occurred_on": "2020-02-02"})
        letter = desk.post(hongkou, f"/members/{member}/cases/{case}/letters", {
            "letter_no": "HK-2020-1", "to_unit_id": "daning-center",
            "dues_paid_through": "2020-01", "occurred_on": "2020-02-10"})
        _wait_until_projected(base, letter["position"])
        desk.waiting_member = member
        yield desk
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """Where the browser saves what the desk's download buttons give."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
    })
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(browser: Any, check: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, WAIT).until(lambda b: check(b))
    except Exception as e:
        shown = browser.find_element("tag name", "body").text
        raise AssertionError(f"waited for {what}; the page shows:\n{shown}") from e


def _text(browser: Any, selector: str) -> str:
    return str(browser.find_element("css selector", selector).text)


def _sign_in(browser: Any, desk: Desk, token: str) -> None:
    browser.get(f"{desk.base}/ui")
    field = _wait(browser, lambda b: b.find_element("id", "token"), "the token field")
    field.send_keys(token)
    browser.find_element("css selector", "#signin-form button").click()


def _names(browser: Any) -> list[str]:
    """The names on the roster page shown, in its order (read in one go by script: the
    page may be replaced between finding a cell and reading it)."""
    return list(browser.execute_script(
        "return [...document.querySelectorAll('main tbody td:first-child')]"
        ".map((td) => td.textContent)"))


def _visible_tabs(browser: Any) -> list[str]:
    return [a.get_attribute("data-tab") for a in browser.find_elements("css selector", "nav a")
            if a.is_displayed()]


def test_a_clerk_finds_what_waits_for_the_unit_and_reads_the_members_trail(
    desk: Desk, browser: Any, downloads: Path
) -> None:
    _sign_in(browser, desk, "hbr_not-a-token")
    _wait(browser, lambda b: "UNAUTHORIZED" in _text(b, "#problem"), "the refusal")
    assert browser.find_element("id", "signin").is_displayed()

    _sign_in(browser, desk, desk.clerk)
    _wait(browser, lambda b: "闸北区大宁社区（街道）党员服务中心" in _text(b, "#who"), "who I am")
    assert "王老师" in _text(browser, "#who") and "unit" in _text(browser, "#who")
    assert _visible_tabs(browser) == ["queue", "roster", "search", "scorecards"]
    # 待办: the letter from hongkou-center, with the member's name filled in.
    _wait(browser, lambda b: desk.waiting_name in _text(b, "main"), "the member's name")
    todo = browser.find_elements("css selector", "main table")[0].text
    assert "HK-2020-1" in todo and "hongkou-center" in todo and desk.waiting_name in todo

    # 在册: the old comrade is held here; the waiting member is on the way.
    browser.find_element("css selector", 'nav a[data-tab="roster"]').click()
    _wait(browser, lambda b: "members 1–2 of 2" in _text(b, "main"), "the roster")
    roster = [row.text for row in browser.find_elements("css selector", "main tbody tr")]
    assert len(roster) == 2
    assert any(r.startswith("老同志 held") for r in roster), roster
    assert any(r.startswith(f"{desk.waiting_name} arriving") for r in roster), roster
    # The same roster as a spreadsheet file, the API's CSV.
    browser.find_element("xpath", "//main//button[starts-with(., 'Download CSV')]").click()
    saved = downloads / "members-daning-center.csv"
    _wait(browser, lambda b: saved.exists() and saved.stat().st_size > 0, "the CSV file")
    lines = saved.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("relation,member_id,name,") and len(lines) == 3
    assert {line.split(",")[2] for line in lines[1:]} == {"老同志", desk.waiting_name}
    # One member a page: "next" follows the API's cursor (next_after) to the second page,
    # which holds the member after the first page's; "previous" comes back to the first.
    names = _names(browser)
    browser.get(f"{desk.base}/ui/#/roster/daning-center?limit=1")
    _wait(browser, lambda b: "members 1–1 of 2" in _text(b, "main"), "the first page of one")
    assert _names(browser) == names[:1]
    assert not browser.find_elements("css selector", "#roster-previous, #roster-first")
    following = browser.find_element("id", "roster-next")
    assert "after=" in following.get_attribute("href")
    assert "offset=" not in following.get_attribute("href")
    following.click()
    _wait(browser, lambda b: "1 member shown of 2" in _text(b, "main"), "the second page")
    _wait(browser, lambda b: _names(b) == names[1:], "the second page's member")
    assert "after=" in browser.current_url and "limit=1" in browser.current_url
    assert not browser.find_elements("id", "roster-next")  # the last page
    browser.find_element("id", "roster-previous").click()
    _wait(browser, lambda b: "members 1–1 of 2" in _text(b, "main"), "the first page again")
    assert _names(browser) == names[:1]

    browser.find_element("css selector", 'nav a[data-tab="queue"]').click()
    _wait(browser, lambda b: desk.waiting_name in _text(b, "main"), "the queue again")
    browser.find_element("css selector", f'main a[data-member="{desk.waiting_member}"]').click()
    _wait(browser, lambda b: "LetterIssued" in _text(b, "main"), "the member's trail")
    page = _text(browser, "main")
    assert "hongkou-center" in page and "in_transit" in page and "HK-2020-1" in page
    # The summary typed as HTML is shown as those characters, and ran nothing.
    assert XSS in page
    assert browser.execute_script("return window.harborPwned === undefined")
    assert not browser.find_elements("css selector", "main img, main b")

    browser.find_element("id", "signout").click()
    _wait(browser, lambda b: b.find_element("id", "signin").is_displayed(), "signed out")
    assert browser.execute_script("return sessionStorage.getItem('harbor.token')") is None


def test_an_auditor_ranks_units_reads_findings_and_replays_a_history(
    desk: Desk, browser: Any
) -> None:
    _sign_in(browser, desk, desk.auditor)
    _wait(browser, lambda b: "finding(s)" in _text(b, "main"), "the findings")
    assert _visible_tabs(browser) == [
        "queue", "roster", "search", "findings", "scorecards", "audit"
    ]
    findings = _text(browser, "main")
    assert "R5" in findings and "dropped" in findings and "R8" in findings

    browser.get(f"{desk.base}/ui/#/scorecards")
    _wait(browser, lambda b: "sh-residence-center" in _text(b, "main"), "the scorecards")
    first_row = browser.find_elements("css selector", "main tbody tr")[0].text
    assert first_row.startswith("sh-residence-center")  # the only unit that dropped a case

    browser.get(f"{desk.base}/ui/#/search?q=310109195001010022")
    _wait(browser, lambda b: "老**" in _text(b, "main"), "the masked match")
    browser.find_element("css selector", "main a[data-member]").click()
    _wait(browser, lambda b: "ActivityAttended" in _text(b, "main"), "the whole trail")
    now = _text(browser, "main")
    assert "老同志" in now and "daning-center" in now and "seen_through" in now
    # As of 2006-05-20 the member had come forward but was not attached yet.
    field = browser.find_element("id", "f-as_of")
    browser.execute_script("arguments[0].value = '2006-05-20'", field)
    browser.find_element("css selector", "main form:nth-of-type(1) button").click()
    _wait(browser, lambda b: "as of 截至 2006-05-20" in _text(b, "main"), "the replay")
    # The card shows the member as the replay has them: still held by the closed factory.
    assert "zb-factory" in _text(browser, "#member-card")
    assert "daning-center" not in _text(browser, "#member-card")
    then = _text(browser, "main")
    assert "InquiryReceived" in then and "ActivityAttended" not in then
    # Nothing is sealed in this store: the bundle is refused, and says why.
    browser.find_element("id", "bundle").click()
    _wait(browser, lambda b: b.find_element("id", "problem").is_displayed(), "the refusal")
    assert "seal" in _text(browser, "#problem")


def test_the_admin_sees_only_the_logs_seals(desk: Desk, browser: Any) -> None:
    _sign_in(browser, desk, desk.admin)
    _wait(browser, lambda b: "events in the log" in _text(b, "main"), "the audit status")
    assert _visible_tabs(browser) == ["audit"]
    assert "none yet (harbor seal)" in _text(browser, "main")


def test_the_page_runs_only_its_own_files() -> None:
    """The page and its files name no outside host, and never write HTML."""
    from api.http import pages

    page = (pages.HERE / "index.html").read_text(encoding="utf-8")
    script = (pages.HERE / "assets" / "desk.js").read_text(encoding="utf-8")
    assert not re.search(r"https?://|//[a-z]", page + script.replace("// ", ""))
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    # No field of the sign-in form has a name: sent without the script, it carries nothing.
    assert 'name="token"' not in page and 'method="post"' in page


def test_the_page_and_its_files_are_served_with_the_policy(desk: Desk) -> None:
    """What the server really sends: the policy on the page and its files, and no page
    among the files."""
    for path in ("/ui/", "/ui/assets/desk.js", "/ui/assets/desk.css"):
        response = httpx.get(f"{desk.base}{path}", timeout=10)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy, path
        assert "form-action 'none'" in policy and "frame-ancestors 'none'" in policy, path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["cache-control"] == "no-cache", path
    assert httpx.get(f"{desk.base}/ui/assets/index.html", timeout=10).status_code == 404
    moved = httpx.get(f"{desk.base}/ui", timeout=10)
    assert (moved.status_code, moved.headers["location"]) == (308, "ui/")


def _choose(browser: Any, select_id: str, text: str) -> None:
    from selenium.webdriver.support.ui import Select

    options = Select(browser.find_element("id", select_id))
    (wanted,) = [o.text for o in options.options if text in o.text]
    options.select_by_visible_text(wanted)


def _fill(browser: Any, values: dict[str, str]) -> None:
    """Set the command form's fields (by script: date and month inputs ignore typing
    in some locales) and record."""
    for name, value in values.items():
        field = browser.find_element("id", f"c-{name}")
        browser.execute_script("arguments[0].value = arguments[1]", field, value)
    browser.find_element("css selector", "form.command button").click()


def _events(desk: Desk) -> int:
    return int(httpx.get(f"{desk.base}/healthz", timeout=10).json()["log_position"])


def test_a_clerk_enrols_and_records_actions_and_a_refusal_stores_nothing(
    desk: Desk, browser: Any
) -> None:
    _sign_in(browser, desk, desk.clerk)
    _wait(browser, lambda b: "待办" in _text(b, "main"), "the queue")
    # A walk-in looked up by ID number and not found: enrolled with that number filled in.
    browser.get(f"{desk.base}/ui/#/search?q=310101199505060031")
    _wait(browser, lambda b: "Nobody is enrolled with this ID number" in _text(b, "main"),
          "the not-found hint")
    browser.find_element("css selector", "main section.card button").click()
    _wait(browser, lambda b: b.find_elements("id", "c-id_number"), "the enrol form")
    assert browser.find_element("id", "c-id_number").get_attribute("value") == "310101199505060031"
    _fill(browser, {"name": "赵文", "standing": "full", "household_region": "上海",
                    "occurred_on": "2021-03-01"})
    _wait(browser, lambda b: "enrolled at log position" in _text(b, "main"), "the enrolment")
    assert "赵文" in _text(browser, "main h2") and "daning-center" in _text(browser, "main")

    # A member-level action: the inquiry opens a case.
    _choose(browser, "record-action", "member 党员: inquiries —")
    _fill(browser, {"channel": "walk_in", "summary": "毕业后回居住地", "occurred_on": "2021-03-02",
                    "prior_contacts": "原单位人事: 没有党组织\n街道: 让去大宁"})
    _wait(browser, lambda b: "InquiryReceived" in _text(b, "main"), "the inquiry in the trail")
    assert "recorded at log position" in _text(browser, "#recorded")
    assert "open 未结" in _text(browser, "#record-case")  # case actions go to the open case

    # A case action with a list field.
    _choose(browser, "record-action", "case 事项: requirements —")
    browser.find_element("id", "c-documents").send_keys("租赁合同\n户籍证明")
    _fill(browser, {"occurred_on": "2021-03-02"})
    _wait(browser, lambda b: "RequirementsNotified" in _text(b, "main"), "the requirements")
    notified = [row.text for row in browser.find_elements("css selector", "main tr")
                if "RequirementsNotified" in row.text]
    assert len(notified) == 1 and "租赁合同" in notified[0] and "户籍证明" in notified[0]

    # A refusal: attached on a lease basis with no lease shown. The rule is named, the
    # field marked, and nothing is stored.
    before = _events(desk)
    _choose(browser, "record-action", "case 事项: attachments —")
    # No choice is made for the clerk: the basis starts empty and must be chosen.
    assert browser.find_element("id", "c-basis").get_attribute("value") == ""
    _fill(browser, {"basis": "residence", "occurred_on": "2021-03-03"})
    _wait(browser, lambda b: b.find_element("id", "problem").is_displayed(), "the refusal")
    refusal = _text(browser, "#problem")
    assert refusal.startswith("R1_"), refusal
    assert _events(desk) == before


def test_a_walk_in_is_taken_on_by_a_unit_that_could_not_read_the_member_before(
    desk: Desk, browser: Any
) -> None:
    """首问: the old comrade comes to sh-residence-center, which neither holds him nor took
    part in his cases (hongkou-center was consulted in his case, so it reads it); its clerk
    finds him and records the inquiry that makes it take part."""
    residence = _issue(desk.env, "sh-residence-center", holder="周老师")
    _sign_in(browser, desk, residence)
    _wait(browser, lambda b: "待办" in _text(b, "main"), "the queue")
    browser.get(f"{desk.base}/ui/#/search?q=310109195001010022")
    _wait(browser, lambda b: "老**" in _text(b, "main"), "the masked match")
    browser.find_element("css selector", "main table a[data-member]").click()
    _wait(browser, lambda b: "records an inquiry first" in _text(b, "main"), "the offer")
    _choose(browser, "record-action", "member 党员: inquiries —")
    _fill(browser, {"channel": "walk_in", "summary": "搬到虹口，申请转入",
                    "occurred_on": "2026-11-20"})
    _wait(browser, lambda b: "搬到虹口" in _text(b, "main"), "the member's page with the inquiry")
    assert "recorded at log position" in _text(browser, "#recorded")
    assert "老同志" in _text(browser, "main h2")


def test_a_stale_version_is_refused_then_recorded_on_the_new_one(
    desk: Desk, browser: Any
) -> None:
    """Another unit records for the member while the clerk's form is open: the clerk's
    command is refused, not laid over it; pressed again, it is recorded once."""
    member = _enrolled(desk, "吴九", "310101199707070019")
    _sign_in(browser, desk, desk.clerk)
    _wait(browser, lambda b: "待办" in _text(b, "main"), "the queue")
    browser.get(f"{desk.base}/ui/#/member/{member}")
    _wait(browser, lambda b: b.find_elements("id", "record-action"), "the record panel")
    _choose(browser, "record-action", "member 党员: contacts —")
    sibling = _issue(desk.env, "sh-univ", holder="高校")
    desk.post(sibling, f"/members/{member}/contacts", {"channel": "phone", "note": "别处联系",
                                                       "occurred_on": "2026-11-21"})
    before = _events(desk)
    _fill(browser, {"channel": "phone", "note": "本单位联系", "occurred_on": "2026-11-22"})
    _wait(browser, lambda b: "changed meanwhile" in _text(b, "#problem"), "the refusal")
    assert "STALE_VERSION" in _text(browser, "#problem") and _events(desk) == before
    # What the other unit recorded is shown under the form, and the version sent next.
    _wait(browser, lambda b: "别处联系" in _text(b, "form.command .changed"), "the change shown")
    assert "本单位联系" not in _text(browser, "form.command .changed")
    assert "version 2" in _text(browser, ".version-hint")  # it was 1 when the page loaded
    browser.find_element("css selector", "form.command button").click()
    _wait(browser, lambda b: "本单位联系" in _text(b, "main"), "the contact in the trail")
    assert _events(desk) == before + 1
    notes = [row.text for row in browser.find_elements("css selector", "main tr")
             if "联系" in row.text and "ContactMade" in row.text]
    assert len(notes) == 2, notes


def _enrolled(desk: Desk, name: str, id_number: str) -> str:
    """A member enrolled at daning-center over HTTP, projected."""
    answer = desk.post(desk.clerk, "/members", {"name": name, "id_number": id_number,
                                                "standing": "full", "household_region": "上海",
                                                "occurred_on": "2026-11-01"})
    _wait_until_projected(desk.base, answer["position"])
    return str(answer["member_id"])


def test_the_roster_pages_forward_by_cursor_and_back_by_the_cursors_kept(
    desk: Desk, browser: Any
) -> None:
    """Page by page, one member a page: "next" follows each cursor to the last page,
    "previous" steps back through the pages seen, and "first page" starts again."""
    _enrolled(desk, "钱一", "310101199808080016")
    _enrolled(desk, "孙二", "310101199909090011")
    everyone = httpx.get(f"{desk.base}/units/daning-center/members", params={"limit": 1000},
                         headers={"Authorization": f"Bearer {desk.clerk}"}, timeout=10).json()
    names = [m["name"] for m in everyone["members"]]
    assert len(names) >= 4
    _sign_in(browser, desk, desk.clerk)
    _wait(browser, lambda b: "待办" in _text(b, "main"), "the queue")
    browser.get(f"{desk.base}/ui/#/roster/daning-center?limit=1")
    _wait(browser, lambda b: f"members 1–1 of {len(names)}" in _text(b, "main"), "page 1")
    seen = [_names(browser)]
    for number in range(2, len(names) + 1):
        browser.find_element("id", "roster-next").click()
        _wait(browser, lambda b, n=number: _names(b) == names[n - 1:n], f"page {number}")
        assert f"1 member shown of {len(names)}" in _text(browser, "#roster-count")
        seen.append(_names(browser))
    assert seen == [[name] for name in names]
    assert not browser.find_elements("id", "roster-next")  # the last page
    for number in range(len(names) - 1, 1, -1):
        assert browser.find_elements("id", "roster-first")
        browser.find_element("id", "roster-previous").click()
        _wait(browser, lambda b, n=number: _names(b) == names[n - 1:n], f"back to page {number}")
    assert not browser.find_elements("id", "roster-first")  # "previous" is the first page
    browser.find_element("id", "roster-next").click()
    _wait(browser, lambda b: _names(b) == names[2:3], "page 3 again")
    browser.find_element("id", "roster-first").click()
    _wait(browser, lambda b: f"members 1–1 of {len(names)}" in _text(b, "main"), "page 1 again")
    assert _names(browser) == names[:1]
