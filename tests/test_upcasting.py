"""Upcasting: events stored in an old shape are read in the new one, and never rewritten.

DESIGN.md "Events and fields": each event type has a ``class_version``; an old stored
shape is upcast on read, never rewritten. These scenarios record ``DuesReceived``
events with today's class (version 1), then simulate a later release in which
``DuesReceived`` is version 2 and carries a ``currency`` (every v1 amount was in yuan,
so ``upcast_v1_v2`` fills in "CNY"), and read the old events through each of Harbor's
read paths: the member aggregate (commands, the member cache), the projection runner's
rebuild, the history replay and the import. docs/evolving-events.md is the how-to.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.importer import import_file
from api.trail import trail
from audit.keys import Signer, now_utc, public_pem
from audit.log import AuditLog
from audit.storage import KeyRecord
from audit.verify import verify_log
from domain.member import MemberRelationship
from domain.member_events import DuesReceived, MemberEvent
from domain.registry import Registry
from projections import describe, schema
from projections.history import member_history
from projections.runner import Projector, rebuild
from store.sql import Db
from tests.scenarios import enrol, id_number
from tests.support import as_unit, register_article_units

HOLDER = "factory-superior"  # enrols the member, holds it, and receives its dues
OLD_DUES = ["dues 2025-07–2025-12, 120", "dues 2026-01–2026-06, 150.50"]
UPCAST_DUES = [f"{line} CNY" for line in OLD_DUES]
OLD_DUES_VERSIONS = (2, 3)  # the member's stream: enrolment, then the two v1 dues


# --- the later release, simulated ------------------------------------------------------------


def upcast_v1_v2(state: dict[str, Any]) -> None:
    """DuesReceived v1 → v2: the amount's currency, which v1 left unsaid (always yuan)."""
    state["currency"] = "CNY"


def release_dues_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make DuesReceived what a release adding ``currency`` would make it (undone after)."""
    monkeypatch.setattr(DuesReceived, "class_version", 2)
    monkeypatch.setattr(DuesReceived, "upcast_v1_v2", staticmethod(upcast_v1_v2), raising=False)
    # The release would declare ``currency: str`` on the class; a frozen dataclass cannot
    # gain a field after the fact, so its constructor takes the field here instead, and
    # commands that do not name a currency record yuan.
    original_init = DuesReceived.__init__

    def init_v2(self: DuesReceived, *args: Any, currency: str = "CNY", **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        object.__setattr__(self, "currency", currency)

    monkeypatch.setattr(DuesReceived, "__init__", init_v2)
    # The release's trail line names the currency: it reads the field on every event,
    # so an event that was not upcast would have none to show.
    kind: type[MemberEvent] = DuesReceived
    monkeypatch.setitem(describe._DESCRIBE, kind, describe_dues_v2)


def describe_dues_v2(e: Any) -> str:
    """The release's trail line for dues: the amount with its currency."""
    return f"dues {e.months_from}–{e.months_to}, {e.amount} {e.currency}"


# --- helpers -------------------------------------------------------------------------------


def member_with_v1_dues(registry: Registry) -> UUID:
    """A member held by factory-superior who paid dues twice, recorded by today's classes."""
    register_article_units(registry)
    member = enrol(registry, by=HOLDER)
    for on, start, end, amount in (
        (date(2026, 1, 5), "2025-07", "2025-12", "120"),
        (date(2026, 7, 6), "2026-01", "2026-06", "150.50"),
    ):
        registry.receive_dues(
            as_unit(HOLDER), member, occurred_on=on, months_from=start, months_to=end,
            amount=amount,
        )
    return member


def stored_states(registry: Registry, member: UUID) -> dict[int, bytes]:
    """The member's rows as the database holds them (version → state bytes), read in SQL."""
    recorder: Any = registry.recorder
    db = Db(recorder.datastore)
    key: object = member if db.backend == "postgres" else member.hex
    rows = db.query(
        f"SELECT originator_version, state FROM {recorder.events_table_name}"
        " WHERE originator_id = ?",
        (key,),
    )
    return {int(version): bytes(state) for version, state in rows}


def currencies(member: MemberRelationship) -> list[object]:
    """The currency each DuesReceived in the member's history carries as its own field."""
    # vars(), not getattr(): a value on the event itself, set by the upcast or the
    # constructor, never one the class would lend every event.
    return [vars(e).get("currency") for e in member.history if isinstance(e, DuesReceived)]


def projected_dues(registry: Registry, member: UUID) -> list[str]:
    """The member's dues lines in the live projections' trail table."""
    recorder: Any = registry.recorder
    rows = Db(recorder.datastore).query(
        f"SELECT summary FROM {schema.view('trail')}"
        " WHERE member_id = ? AND event_type = 'DuesReceived' ORDER BY version",
        (str(member),),
    )
    return [str(summary) for (summary,) in rows]


def dues_lines(history: dict[str, Any]) -> list[str]:
    """The dues lines of a replayed history's trail."""
    return [str(r["summary"]) for r in history["trail"] if r["event_type"] == "DuesReceived"]


def sealing_key(audit: AuditLog) -> Signer:
    """A fresh signing key whose public half the audit log trusts."""
    signer = Signer(Ed25519PrivateKey.generate())
    audit.keep_key(KeyRecord(signer.key_id, public_pem(signer.public_key), now_utc()))
    return signer


# --- the scenarios -------------------------------------------------------------------------


def test_a_member_loaded_by_the_new_release_has_its_old_dues_upcast(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dues stored under v1, the member loaded under v2: each old dues event has a currency."""
    member = member_with_v1_dues(registry)
    release_dues_v2(monkeypatch)
    # A process of the new release starts with an empty member cache; the one the v1
    # commands filled holds events decoded before the release, so empty it.
    assert registry.members.take(member) is not None

    loaded = registry.member(member)

    assert currencies(loaded) == ["CNY", "CNY"]
    assert [r.action for r in trail(loaded) if r.action.startswith("dues")] == UPCAST_DUES
    # Warming the cache (as `harbor serve` does at start) reads many whole streams in
    # one query and folds them with member_from_stored, which HTTP status reads use too.
    assert registry.warm_member_cache() == 1
    warmed = registry.members.take(member)
    assert warmed is not None and currencies(warmed) == ["CNY", "CNY"]


def test_a_rebuild_folds_the_old_dues_in_their_new_shape(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Projections folded v1 dues under v1; rebuilt from zero under v2, they show the currency."""
    member = member_with_v1_dues(registry)
    Projector(registry).catch_up()  # the live projections, as the old release folded them
    assert projected_dues(registry, member) == OLD_DUES

    release_dues_v2(monkeypatch)
    rebuild(registry)

    assert projected_dues(registry, member) == UPCAST_DUES


def test_a_history_replay_shows_the_old_dues_in_their_new_shape(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dues stored under v1, the member's history replayed under v2, whole and as of a date."""
    member = member_with_v1_dues(registry)
    release_dues_v2(monkeypatch)

    assert dues_lines(member_history(registry, member)) == UPCAST_DUES
    assert dues_lines(member_history(registry, member, as_of=date(2026, 3, 1))) == UPCAST_DUES[:1]


def test_reading_old_events_under_the_new_release_rewrites_nothing_and_the_log_verifies(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 dues sealed, then read every way under v2: their bytes are the same, the seals hold."""
    member = member_with_v1_dues(registry)
    audit = AuditLog(registry.recorder)
    signer = sealing_key(audit)
    audit.seal(signer)
    before = stored_states(registry, member)

    release_dues_v2(monkeypatch)
    # Every read path under the new release: none of them may write the new shape back.
    registry.members.take(member)
    registry.member(member)
    member_history(registry, member)
    rebuild(registry)
    after = stored_states(registry, member)
    # A head signed under the new release covers the same old bytes as the first one.
    audit.seal(signer)
    report = verify_log(audit)

    assert after == before
    for version in OLD_DUES_VERSIONS:
        old = json.loads(after[version])
        assert "currency" not in old and "class_version" not in old  # still the v1 shape
    assert report.ok, report.findings
    assert report.heads == 2


def test_dues_recorded_under_the_new_release_are_stored_as_v2_and_read_back(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under v2, dues from a command and from an import are stored as v2 beside the v1 ones."""
    member = member_with_v1_dues(registry)
    release_dues_v2(monkeypatch)
    registry.members.take(member)  # a new process: the command decides on the stored stream
    registry.receive_dues(
        as_unit(HOLDER), member, occurred_on=date(2026, 10, 8), months_from="2026-07",
        months_to="2026-09", amount="75",
    )
    # The member the command decided on (kept in the cache after it) was folded from the
    # stored stream: its old dues were upcast there too.
    decided = registry.members.take(member)
    paper = tmp_path / "dues.jsonl"
    line = {
        "action": "dues", "unit": HOLDER, "on": "2026-11-02", "member": id_number(1),
        "months_from": "2026-10", "months_to": "2026-12", "amount": "75",
    }
    paper.write_text(json.dumps(line) + "\n", encoding="utf-8")
    imported = import_file(registry, paper)

    assert imported.ok and imported.stored == 1, imported.problems
    states = {v: json.loads(s) for v, s in stored_states(registry, member).items()}
    assert [(states[v].get("class_version"), states[v].get("currency")) for v in (2, 3, 4, 5)] == [
        (None, None),  # v1: stored as it was, no version written (the library omits 1)
        (None, None),
        (2, "CNY"),
        (2, "CNY"),
    ]
    assert decided is not None and currencies(decided) == ["CNY"] * 3
    loaded = registry.member(member)
    assert currencies(loaded) == ["CNY"] * 4
    assert all("class_version" not in vars(e) for e in loaded.history)
