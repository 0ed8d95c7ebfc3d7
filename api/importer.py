"""Bulk import of paper records: one JSON object per action, through the domain rules.

See docs/import.md for the format. Lines are decided by the same Registry
methods as every other command and committed many members at a time. A
refused line rejects its member: none of that member's lines in the batch is
stored (nor its later lines in the file), and the report says which line and
why. Every line carries an idempotency key derived from its content, so
running the same file again adds nothing and an interrupted run resumes.
"""

from __future__ import annotations

import codecs
import hashlib
import inspect
import json
import re
from collections import Counter
from collections.abc import Callable, Container, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from functools import cache, lru_cache
from itertools import islice
from pathlib import Path
from typing import Any
from uuid import UUID

from api.bodies import checked
from domain.batch import Batch
from domain.errors import HarborError, InvalidInput
from domain.letter_number import letter_number_id
from domain.registry import Actor, Registry
from store.collection import rare_collections
from store.sql import Db
from store.tokens import TokenStore

PREFETCH_LINES = 1000  # lines parsed, and looked up in the store, at a time
DATE_FIELDS = {"probation_started_on", "valid_until", "until", "covering_from", "covering_to"}
# action → Registry method (member actions use the command line's names).
ACTIONS: dict[str, str] = {
    "enrol": "enrol_member",
    "inquiry": "receive_inquiry",
    "requirements": "notify_requirements",
    "evidence": "record_evidence",
    "archive-review": "review_archive",
    "origin-contact": "contact_origin",
    "consult": "consult_unit",
    "introduce": "issue_introduction",
    "hold": "hold_transfer",
    "report": "send_performance_report",
    "letter": "issue_letter",
    "letter-decline": "decline_letter",
    "letter-void": "void_letter",
    "letter-expire": "expire_letter",
    "receipt": "return_receipt",
    "refer": "refer_case",
    "referral-accept": "accept_referral",
    "referral-decline": "decline_referral",
    "attach": "attach_member",
    "withdraw": "withdraw_case",
    "dues": "receive_dues",
    "activity": "attend_activity",
    "contact": "make_contact",
    "confirm": "confirm_membership",
    "extend-probation": "extend_probation",
}
# unit actions → Registry method; they are stored at once (later lines may name the unit).
UNIT_ACTIONS: dict[str, str] = {
    "unit": "register_unit",
    "unit-rename": "rename_unit",
    "unit-dissolve": "dissolve_unit",
}
RESERVED = {"action", "unit", "by", "on", "member"}
# The domain's name for a field → the key a line writes it under (see _decided).
FILE_KEYS = {"occurred_on": "on", "unit_id": "unit", "member_id": "member"}
_FILE_KEY_WORDS = re.compile(r"\b(" + "|".join(FILE_KEYS) + r")\b")
@dataclass
class Problem:
    """A line that was not stored, and why."""

    line: int
    code: str
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"line {self.line}: {self.code}{where}: {self.message}"


@dataclass
class ImportReport:
    """What an import did."""

    lines: int = 0
    stored: int = 0
    already: int = 0
    units: int = 0
    problems: list[Problem] = field(default_factory=list)
    members: set[UUID] = field(default_factory=set)
    processes: int = 1  # processes that decided the member lines (harbor import --jobs)

    @property
    def ok(self) -> bool:
        """True when every line is stored (now or by an earlier run)."""
        return not self.problems


@dataclass
class _Unreadable:
    """A line that could not be parsed, and the member it names (when it names one)."""

    problem: Problem
    member: UUID | None


@dataclass
class _Line:
    number: int
    action: str
    actor: Actor
    member: UUID | None
    kwargs: dict[str, Any]
    reference: str = ""  # the member as the line names it (ID number or member id)
    # Why the HTTP API's body would refuse the line. Such a line is still replayed when
    # an earlier run (an older Harbor, which did not check) stored it: re-running a file
    # must never refuse what is already there.
    refusal: InvalidInput | None = None


def _keys(path: Path) -> Iterator[tuple[int, str | UnicodeDecodeError, str]]:
    """(line number, text, idempotency key) of every non-blank line.

    A line that is not UTF-8 comes as its decoding error, for the report. A byte-order
    mark opening the file (as editors on Windows write one) is not part of the first line.
    """
    seen: Counter[str] = Counter()
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            text, data = _content(number, raw)
            if not data:
                continue
            digest = hashlib.sha256(data).hexdigest()[:32]
            seen[digest] += 1
            yield number, text, f"import:{digest}:{seen[digest]}"


def count_lines(path: Path) -> int:
    """How many lines of the file an import reads (the ones ``_keys`` yields)."""
    with path.open("rb") as lines:
        return sum(1 for number, raw in enumerate(lines, start=1) if _content(number, raw)[1])


def _content(number: int, raw: bytes) -> tuple[str | UnicodeDecodeError, bytes]:
    """A line as text (or its decoding error), and its content without surrounding space."""
    if number == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
        return text, text.strip().encode("utf-8")
    except UnicodeDecodeError as e:
        return e, raw.strip()


def _parse(
    registry: Registry,
    number: int,
    text: str | UnicodeDecodeError,
    key: str,
    member_id_for: Callable[[str], UUID],
) -> _Line:
    if isinstance(text, UnicodeDecodeError):
        raise InvalidInput(
            f"not UTF-8 text (byte 0x{text.object[text.start]:02x} at byte {text.start + 1});"
            " save the file as UTF-8"
        )
    data = _json_object(text)
    action = data.get("action")
    if action is None:
        raise InvalidInput("every line names its action (see docs/import.md)", field="action")
    if not isinstance(action, str) or (action not in UNIT_ACTIONS and action not in ACTIONS):
        shown = repr(action) if len(repr(action)) <= 60 else repr(action)[:57] + "..."
        raise InvalidInput(f"unknown action {shown}; see docs/import.md", field="action")
    unit = data.get("unit")
    if not isinstance(unit, str) or not unit:
        raise InvalidInput("every line names its acting unit", field="unit")
    if not unit.isprintable():  # before the bulk lookups send it to the store
        raise InvalidInput("unit contains control characters", field="unit")
    for own, instead in (
        ("idempotency_key", None),
        ("occurred_on", "the line's date as 'on'"),
        ("unit_id", "the acting unit as 'unit'"),
    ):
        if own in data:
            raise InvalidInput(
                f"the import takes {instead}; rename {own!r}"
                if instead
                else "the import makes each line's idempotency key from its content; remove it",
                field=own,
            )
    by = data.get("by") or "import"
    if not isinstance(by, str) or len(by) > 200 or not by.isprintable():
        raise InvalidInput(
            "by names who recorded it, in at most 200 characters on one line (no control"
            " characters)",
            field="by",
        )
    actor = Actor(unit, by)
    fields = {k: v for k, v in data.items() if k not in RESERVED}
    unknown = sorted(set(fields) - _accepted(action))
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r} for {action}", field=unknown[0])
    if action in ("unit-rename", "unit-dissolve") and not isinstance(fields.get("code"), str):
        raise InvalidInput(
            f"a {action} line needs code: the code of the unit "
            + ("renamed" if action == "unit-rename" else "dissolved"),
            field="code",
        )
    for name in DATE_FIELDS & set(fields):
        fields[name] = _date(fields[name], name)
    refusal: InvalidInput | None = None
    try:
        kwargs = checked(action, fields)
    except InvalidInput as e:
        kwargs, refusal = dict(fields), e  # as an older Harbor passed them on
    if refusal is None and "member" in data and (action == "enrol" or action in UNIT_ACTIONS):
        # Older Harbors ignored it, so it is a refusal a re-run still replays.
        refusal = InvalidInput(
            "an enrol line names its member by id_number; remove member"
            if action == "enrol"
            else f"a {action} line names no member; remove member",
            field="member",
        )
    if "on" in data:
        kwargs["occurred_on"] = _date(data["on"], "on")
    kwargs["idempotency_key"] = key
    member = None if action in UNIT_ACTIONS else member_of(data, member_id_for)
    if member is None and action not in UNIT_ACTIONS:
        raise InvalidInput("name the member by ID number or member id", field="member")
    reference = str(data.get("id_number" if action == "enrol" else "member") or "")
    return _Line(number, action, actor, member, kwargs, reference, refusal)


# A \u escape of half a UTF-16 pair (D800–DFFF) is valid JSON but no character: alone it
# cannot be stored or printed. Only such an escape can put one into a decoded line.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _json_object(text: str) -> dict[str, Any]:
    """The line as a JSON object, or a refusal saying why it is not one."""
    try:
        # Without its line end: a line cut off mid-object is reported where it stops.
        data = json.loads(text.rstrip("\r\n"))
    except json.JSONDecodeError as e:
        raise InvalidInput(f"not a JSON object: {e.msg} at column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # an integer of thousands of digits, deep nesting
        reason = (
            "nested too deeply"
            if isinstance(e, RecursionError)
            else "a number of more than 4,300 digits"
            if "digits" in str(e)
            else str(e)
        )
        raise InvalidInput(f"not a JSON object Harbor can read: {reason}") from None
    if not isinstance(data, dict):
        raise InvalidInput("each line is one JSON object")
    if _SURROGATE_ESCAPE.search(text):
        for key, value in data.items():
            try:
                json.dumps({key: value}, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                name = key.encode("utf-8", "backslashreplace").decode("ascii", "replace")
                raise InvalidInput(
                    f"{name} holds a \\u escape of half a character (a lone surrogate);"
                    " write the character itself, or its two escapes",
                    field=name,
                ) from None
    return data


def member_of(data: dict[str, Any], member_id_for: Callable[[str], UUID]) -> UUID | None:
    """The member a member line acts on: an enrolment's ID number, else its ``member``
    (a member id or an ID number); None when it names none."""
    if data.get("action") == "enrol":
        return member_id_for(str(data.get("id_number", "")))
    reference = data.get("member")
    if not isinstance(reference, str) or not reference:
        return None
    try:
        return UUID(reference)
    except ValueError:
        pass
    try:
        return member_id_for(reference)
    except InvalidInput:
        shown = repr(reference) if len(reference) <= 40 else repr(reference[:37] + "...")
        raise InvalidInput(
            f"member must be a member id or the member's 18-character resident ID number"
            f" (got {shown})",
            field="member",
        ) from None


@cache
def _accepted(action: str) -> frozenset[str]:
    """The fields a line of this action may carry: its Registry method's parameters."""
    method = getattr(Registry, UNIT_ACTIONS.get(action) or ACTIONS[action])
    # The keyword-only ones: self, the actor and the member come from elsewhere.
    accepted = {
        name
        for name, parameter in inspect.signature(method).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    if action in ("unit-rename", "unit-dissolve"):
        accepted.add("code")
    return frozenset(accepted)


def _date(value: Any, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(
            f"{name} must be a date YYYY-MM-DD (got {value!r})", field=name
        ) from None


def import_file(
    registry: Registry,
    path: Path,
    *,
    batch_events: int = 2000,
    progress: Callable[[int], None] | None = None,
    lines: Container[int] | None = None,
) -> ImportReport:
    """Import ``path`` into ``registry``; see the module docstring.

    ``lines``: import only these line numbers (the others are not read further, nor
    counted); a parallel import gives each process its members' lines so.
    """
    report = ImportReport()
    rejected: dict[UUID, int] = {}
    pending: dict[UUID, list[int]] = {}  # member → its lines in the open batch
    # The batch being committed on the committer thread while the next one is decided.
    inflight: tuple[Future[dict[UUID, BaseException]], Batch, dict[UUID, list[int]]] | None
    inflight = None

    def settle() -> None:
        """Wait for the batch in flight, and account for what it stored or could not."""
        nonlocal inflight
        if inflight is None:
            return
        future, detached, lines_of = inflight
        inflight = None
        failed = future.result()
        batch.forget(detached)
        for member, lines in lines_of.items():
            if member in failed:
                rejected[member] = lines[0]
                report.problems += [
                    Problem(
                        n,
                        "STALE_VERSION",
                        None,
                        "the member changed while the import ran; run the import again",
                    )
                    for n in lines
                ]
            else:
                report.stored += len(lines)
                report.members.add(member)

    def commit(*, wait: bool = False) -> None:
        """Send the open batch to the committer thread (after the one before it)."""
        nonlocal inflight
        settle()
        if pending:
            detached = batch.detach()
            inflight = (committer.submit(registry.commit_batch, detached), detached, dict(pending))
            pending.clear()
        if wait:
            settle()

    def reject(member: UUID, number: int) -> None:
        """Drop the member's lines in the open batch, and refuse its later ones."""
        for earlier in pending.pop(member, []):
            report.problems.append(
                Problem(
                    earlier,
                    "MEMBER_REJECTED",
                    "member",
                    f"not stored: line {number} of the same member was refused",
                )
            )
        batch.discard(member)
        rejected.setdefault(member, number)

    def must_wait(line: _Line) -> bool:
        """A line whose member, letter number or receipt the batch in flight may store."""
        if inflight is None:
            return False
        key = (line.actor.unit_id, line.kwargs["idempotency_key"])
        return inflight[1].touches((line.member, _letter_claim(registry, line)), key)

    with (
        rare_collections(),
        registry.batch() as batch,
        ThreadPoolExecutor(1, thread_name_prefix="harbor-import-commit") as committer,
    ):
        last_member: UUID | None = None
        keyed = _keys(path)
        if lines is not None:
            keyed = (entry for entry in keyed if entry[0] in lines)
        for parsed in _prefetched(registry, keyed):
            report.lines += 1
            if progress is not None:
                progress(report.lines)
            if isinstance(parsed, _Unreadable):
                report.problems.append(parsed.problem)
                if parsed.member is not None:
                    reject(parsed.member, parsed.problem.line)
                continue
            line, number = parsed, parsed.number
            if line.refusal is not None and not _stored_before(batch, line):
                why = line.refusal
                report.problems.append(Problem(number, why.code, why.field, why.message))
                if line.member is not None:
                    reject(line.member, number)
                continue
            if line.member != last_member and len(batch) >= batch_events:
                commit()  # only between members, so a member's lines go in together
            last_member = line.member
            if line.action in UNIT_ACTIONS:
                # Stored at once, alone: the members' lines decided so far stay open, so a
                # bad line after the unit's still rejects all of its member's lines.
                settle()
                aside = batch.detach()
                try:
                    _store_unit(registry, batch, line, report)
                finally:
                    batch.restore(aside)
                continue
            assert line.member is not None
            if must_wait(line):
                settle()  # decide it on what that commit stored (or failed to)
            if line.member in rejected:
                report.problems.append(
                    Problem(
                        number,
                        "MEMBER_REJECTED",
                        "member",
                        f"line {rejected[line.member]} of this member was refused; fix it and run"
                        " the import again",
                    )
                )
                continue
            try:
                outcome = _run(registry, line)
            except HarborError as e:
                report.problems.append(_decided(line, e))
                reject(line.member, number)
                continue
            if outcome.replayed:
                report.already += 1
            else:
                pending.setdefault(line.member, []).append(number)
        commit(wait=True)
    report.problems.sort(key=lambda p: p.line)
    return report


def _prefetched(
    registry: Registry, keyed: Iterator[tuple[int, str | UnicodeDecodeError, str]]
) -> Iterator[_Line | _Unreadable]:
    """Parsed lines, a chunk at a time, with the chunk's store lookups made in bulk first.

    Deciding a line needs to know whether its member (and a letter's number) exist
    and whether its receipt is stored; asking once per chunk instead of once per
    line is most of what makes an import fast.
    """
    # A member's lines name it by the same ID number, each a keyed hash to compute.
    member_id_for = lru_cache(maxsize=65536)(registry.member_id_for)
    while True:
        chunk: list[_Line | _Unreadable] = []
        for number, text, key in islice(keyed, PREFETCH_LINES):
            try:
                chunk.append(_parse(registry, number, text, key, member_id_for))
            except HarborError as e:
                problem = Problem(number, e.code, e.field, e.message)
                named = line_member(text, member_id_for)
                chunk.append(_Unreadable(problem, named if isinstance(named, UUID) else None))
        if not chunk:
            return
        lines = [line for line in chunk if isinstance(line, _Line)]
        ids = {line.member for line in lines if line.member is not None}
        ids |= {claim for line in lines if (claim := _letter_claim(registry, line)) is not None}
        pairs = {(line.actor.unit_id, line.kwargs["idempotency_key"]) for line in lines}
        registry.prefetch(ids, pairs)
        yield from chunk


UNIT_LINE = object()  # what ``line_member`` answers for a unit line


def line_member(
    text: str | UnicodeDecodeError, member_id_for: Callable[[str], UUID]
) -> UUID | object | None:
    """The member a line names, without deciding anything (UNIT_LINE for a unit line;
    None when the line is too broken to tell)."""
    if not isinstance(text, str):
        # Not UTF-8, yet the member it names is ASCII digits or a member id: read round
        # the bad bytes, so that none of that member's lines is stored without it.
        text = text.object.decode("utf-8", "replace")
    try:
        data = _json_object(text)
    except InvalidInput:
        return None
    action = data.get("action")
    if isinstance(action, str) and action in UNIT_ACTIONS:
        return UNIT_LINE
    try:
        return member_of(data, member_id_for)
    except HarborError:  # an ID number Harbor cannot use: no member to name
        return None


def _stored_before(batch: Batch, line: _Line) -> bool:
    """Whether an earlier run stored this line (its receipt, looked up in bulk ahead)."""
    return batch.receipts.get((line.actor.unit_id, line.kwargs["idempotency_key"])) is not None


def _letter_claim(registry: Registry, line: _Line) -> UUID | None:
    """The letter number a letter line would claim (None when it cannot tell yet)."""
    number, on = line.kwargs.get("letter_no"), line.kwargs.get("occurred_on")
    if line.action != "letter" or not isinstance(number, str):
        return None
    return letter_number_id(line.actor.unit_id, (on or registry.clock()).year, number)


def _run(registry: Registry, line: _Line) -> Any:
    method = getattr(registry, ACTIONS[line.action])
    if line.action == "enrol":
        return method(line.actor, **line.kwargs)
    return method(line.actor, line.member, **line.kwargs)


def _store_unit(registry: Registry, batch: Batch, line: _Line, report: ImportReport) -> None:
    """Units are stored at once: the lines after them may name them."""
    kwargs = dict(line.kwargs)
    try:
        method = getattr(registry, UNIT_ACTIONS[line.action])
        if line.action == "unit":
            outcome = method(line.actor, **kwargs)
        else:
            outcome = method(line.actor, kwargs.pop("code", ""), **kwargs)
    except HarborError as e:
        report.problems.append(_decided(line, e))
        return
    if outcome.replayed:
        report.already += 1
        return
    if registry.commit_batch(batch):
        report.problems.append(
            Problem(line.number, "DUPLICATE_UNIT", "code", "registered by someone else meanwhile")
        )
        return
    report.units += 1
    report.stored += 1
    if line.action == "unit-dissolve":
        # As `harbor units dissolve` and the HTTP route do: a dissolved unit's credentials
        # stop, and the list of live ones says so.
        gone = outcome.unit_id or line.kwargs.get("code", "")
        TokenStore(Db(registry.recorder.datastore)).revoke_unit(gone)  # type: ignore[attr-defined]


def _decided(line: _Line, error: HarborError) -> Problem:
    """A refusal of a line's command, told in the file's terms.

    The domain names its own fields (``occurred_on``, ``unit_id``, ``member_id``) and
    the member by its hashed id; the line wrote ``on``, ``unit`` and ``member``, and named
    the member by an ID number or a member id. The refusal code stays as it is.
    """
    field, message = error.field, error.message
    if error.code == "UNKNOWN_MEMBER" and field == "member_id":
        kind = "member id" if _is_uuid(line.reference) else "ID number"
        return Problem(
            line.number,
            error.code,
            "member",
            f"no member with {kind} {line.reference}; enrol them first (an `enrol` line"
            " before this one)",
        )
    if field == "unit_id" and line.action in ("unit-rename", "unit-dissolve"):
        # The unit renamed or dissolved (the line's code) or the acting unit (its unit)?
        actor = re.compile(rf"(?<![\w.-]){re.escape(line.actor.unit_id)}(?![\w.-])")
        if line.kwargs.get("code") != line.actor.unit_id and not actor.search(message):
            field = "code"
    message = _FILE_KEY_WORDS.sub(lambda m: FILE_KEYS[m.group(1)], message)
    return Problem(line.number, error.code, FILE_KEYS.get(field or "", field), message)


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
