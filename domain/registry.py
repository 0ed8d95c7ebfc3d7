"""The application service: one method per command, load → decide → save.

Every command is made *as a unit* (``Actor``): the acting unit and the
person recording come from the caller's credential, never from the body.
A command returns an ``Outcome`` with the log position of its last event,
so a reader can wait until projections have caught up with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    OperationalError,
    Recording,
)

from domain import rules
from domain.batch import Batch
from domain.committer import Commit, GroupCommitter
from domain.errors import (
    Conflict,
    HarborError,
    InvalidInput,
    NotFound,
    RuleRefused,
    StaleVersion,
    Unavailable,
)
from domain.identity import MemberIdentity
from domain.inputs import as_uuid, letter_no_taken
from domain.letter_number import LetterNumber
from domain.member import Act, MemberRelationship
from domain.member_cache import DEFAULT_SIZE, MemberCache
from domain.member_commands import Decide, MemberCommands
from domain.member_events import TOPIC_PREFIX as MEMBER_TOPIC_PREFIX
from domain.member_events import MemberEvent
from domain.receipts import CommandReceipt, Outcome, ReceiptAt, ReceiptStore
from domain.transcodings import register_domain_transcodings
from domain.unit import Unit, unit_id_for
from domain.values import (
    Standing,
    UnitKind,
    optional_text,
    parse_enum,
    require_text,
)

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEV_ID_KEY = "harbor-development-key-not-for-production"
# Without a pinned version a command that lost a race is decided again on the
# new version; a few rounds are plenty, since each round someone else won.
MAX_ATTEMPTS = 8
# Warming the member cache reads the log backwards in pages of WARM_PAGE events, gives
# up after WARM_SCAN_FACTOR events per member it was asked for, and reads the members'
# streams WARM_CHUNK members at a time.
WARM_PAGE = 5000
WARM_SCAN_FACTOR = 5
WARM_CHUNK = 500


T = TypeVar("T")


def call_here(blocking: Callable[[], T]) -> T:
    """The default way a registry makes a blocking store call: on the caller's thread."""
    return blocking()


_TODAY: tuple[int, date] = (-1, date.min)  # (the UTC minute it was worked out in, the date)


def today_in_shanghai() -> date:
    """Today's date where the registry's units are."""
    global _TODAY
    # Worked out once a minute: every request asks (token expiry, business dates), and
    # Shanghai's offset is whole hours, so its days begin and end on a UTC minute.
    now = time.time()
    minute = int(now // 60)
    known = _TODAY
    if known[0] != minute:
        known = _TODAY = (minute, datetime.fromtimestamp(now, SHANGHAI).date())
    return known[1]


@dataclass(frozen=True)
class Actor:
    """Who makes a command: the acting unit and the person recording for it."""

    unit_id: str
    recorded_by: str


class Registry(MemberCommands, Application[UUID]):
    """Harbor's command side: units and member relationships."""

    name = "Harbor"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        clock: Callable[[], date] = today_in_shanghai,
    ) -> None:
        super().__init__(env)
        self.clock = clock
        key = self.env.get("HARBOR_ID_KEY") or DEV_ID_KEY
        self.identity = MemberIdentity(key.encode("utf-8"))
        self._batch: Batch | None = None
        # Every blocking store call (reads, and waiting for a commit) goes through this:
        # a host that runs commands on an event loop replaces it with one that waits
        # elsewhere (api/http/on_loop.py); the rules themselves never block.
        self.blocking: Callable[[Callable[[], Any]], Any] = call_here
        self._units: dict[str, tuple[float, Unit]] = {}
        # Bumped when this registry changes a unit: a read that began before then does not
        # cache what it read (a dissolved unit would act on for HARBOR_UNIT_CACHE_SECONDS).
        self._unit_changes = 0
        self._unit_caching = threading.Lock()
        self._unit_seconds = float(self.env.get("HARBOR_UNIT_CACHE_SECONDS") or 2)
        # Checked once: a runtime protocol check costs tens of microseconds per command.
        self._keeps_receipts = isinstance(self.recorder, ReceiptStore)
        self.members = MemberCache(int(self.env.get("HARBOR_MEMBER_CACHE") or DEFAULT_SIZE))
        self.committer: GroupCommitter | None = None
        if (self.env.get("HARBOR_GROUP_COMMIT") or "off").lower() in ("on", "yes", "1", "true"):
            self.enable_group_commit()

    def enable_group_commit(self) -> None:
        """Share transactions between concurrent commands (settings from the environment).

        HARBOR_GROUP_COMMIT_MAX_BATCH (default 64) commands at most per transaction;
        HARBOR_GROUP_COMMIT_MAX_WAIT_MS (default 0: take only what is already queued);
        HARBOR_GROUP_COMMIT_LEADERS (default 2) transactions under way at once.
        """
        if self.committer is None:
            self.committer = GroupCommitter(
                self._append,
                max_batch=int(self.env.get("HARBOR_GROUP_COMMIT_MAX_BATCH") or 64),
                max_wait=float(self.env.get("HARBOR_GROUP_COMMIT_MAX_WAIT_MS") or 0) / 1000,
                max_leaders=int(self.env.get("HARBOR_GROUP_COMMIT_LEADERS") or 2),
            )

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Decide commands into a batch instead of saving each (one thread at a time)."""
        if self._batch is not None:
            raise RuntimeError("a batch is already open on this registry")
        self._batch = Batch()
        try:
            yield self._batch
        finally:
            self._batch = None

    def commit_batch(self, batch: Batch) -> dict[UUID, BaseException]:
        """Append a batch in one transaction; returns the members that conflicted."""
        try:
            return batch.commit(self._append)
        except (OperationalError, InterfaceError) as e:
            raise Unavailable(
                f"{_unreachable(e)}; whether this batch was stored is not known — run the"
                " import again: it resumes, and stores nothing twice"
            ) from e

    def prefetch(self, ids: set[UUID], receipts: set[tuple[str, str]]) -> None:
        """Ask the store in bulk what the open batch's next commands will need to know.

        ``ids`` are streams they may read or claim, ``receipts`` the (unit,
        idempotency key) pairs they carry: two queries instead of a few per command.
        """
        batch = self._batch
        if batch is None or not self._keeps_receipts:
            return
        store: Any = self.recorder
        wanted = ids - set(batch.aggregates)
        present = self._read(lambda: store.existing(wanted))
        stored = self._read(lambda: store.find_receipts(receipts))
        batch.learn(wanted - present, receipts, stored)

    def _append(self, events: list[Any], receipts: list[ReceiptAt]) -> list[Recording[Any]]:
        """One transaction: the events, and the receipts of the commands they belong to."""
        # The library's save() path without its per-object protocol checks: the events
        # are already collected.
        processing = ProcessingEvent[UUID]()
        processing.events.extend(events)
        processing.saved_kwargs["receipts"] = receipts
        recordings = self._record(processing)
        self._notify(recordings)
        return recordings

    def close(self) -> None:
        """Finish queued commits, then close the store."""
        if self.committer is not None:
            self.committer.close()
        release = getattr(self.recorder, "close", None)  # connections a recorder keeps
        if release is not None:
            release()
        super().close()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """The library's transcodings plus Harbor's value types."""
        super().register_transcodings(transcoder)
        register_domain_transcodings(transcoder)

    # --- reading ------------------------------------------------------------

    def unit(self, code: str, field: str = "unit_id") -> Unit:
        """The unit with this code, or UNKNOWN_UNIT naming ``field`` (read-only use).

        Units change rarely and every command reads two or three of them, so they
        are kept for HARBOR_UNIT_CACHE_SECONDS (default 2); this registry's own unit
        commands drop them at once, other processes' within that time.
        """
        code = require_text(code, field, max_length=64)
        cached = self._cached_unit(code)
        if cached is not None:
            return cached
        changes = self._unit_changes
        unit = self._load_unit(code, field)
        if self._unit_seconds > 0:
            with self._unit_caching:
                if changes == self._unit_changes:
                    self._units[code] = (time.monotonic() + self._unit_seconds, unit)
        return unit

    def _forget_unit(self, code: str) -> None:
        with self._unit_caching:
            self._unit_changes += 1
            self._units.pop(code, None)

    def unit_is_cached(self, code: str) -> bool:
        """True when ``unit(code)`` would answer without asking the store."""
        return self._cached_unit(code) is not None

    def _cached_unit(self, code: str) -> Unit | None:
        cached = self._units.get(code)
        return cached[1] if cached is not None and cached[0] > time.monotonic() else None

    def _load_unit(self, code: str, field: str = "unit_id") -> Unit:
        code = require_text(code, field, max_length=64)
        try:
            unit = self._read(
                lambda: self.repository.get(unit_id_for(code), projector_func=_project)
            )
        except AggregateNotFoundError:
            raise NotFound(
                f"no unit {code!r} is registered", code="UNKNOWN_UNIT", field=field
            ) from None
        assert isinstance(unit, Unit)
        return unit

    def member(self, member_id: UUID | str, *, version: int | None = None) -> MemberRelationship:
        """The member's relationship (optionally as it stood at a stream version)."""
        mid = as_uuid(member_id, "member_id")
        if self._batch is not None and version is None and self._batch.holds(mid):
            held = self._batch.aggregates[mid]
            assert isinstance(held, MemberRelationship)
            return held
        if self._batch is not None and version is None and mid in self._batch.absent:
            raise NotFound(f"no member {mid}", code="UNKNOWN_MEMBER", field="member_id")
        try:
            member = self._read(
                lambda: self.repository.get(mid, version=version, projector_func=_project)
            )
        except AggregateNotFoundError:
            raise NotFound(f"no member {mid}", code="UNKNOWN_MEMBER", field="member_id") from None
        if not isinstance(member, MemberRelationship):
            raise NotFound(f"no member {mid}", code="UNKNOWN_MEMBER", field="member_id")
        return member

    def warm_member_cache(self, limit: int | None = None) -> int:
        """Load the most recently active members into the member cache; returns how many.

        A command on a cached member needs no read from the store, so a server that
        has just started answers its first command on each member more slowly than
        one that has run a while. The log is read backwards from its head for the
        latest members (at most ``limit``, by default as many as the cache keeps),
        looking at no more than WARM_SCAN_FACTOR events per member wanted. Members
        only fill free room: whatever commands cached meanwhile stays.
        """
        wanted = self.members.size if limit is None else min(limit, self.members.size)
        recent: dict[UUID, None] = {}  # insertion-ordered: the most recent first
        high, budget = self.position(), wanted * WARM_SCAN_FACTOR
        while high >= 1 and len(recent) < wanted and budget > 0:
            low = max(1, high - min(WARM_PAGE, budget) + 1)
            page = self._read(
                partial(self.recorder.select_notifications, low, high - low + 1, stop=high)
            )
            for n in reversed(page):
                if n.topic.startswith(MEMBER_TOPIC_PREFIX) and len(recent) < wanted:
                    recent.setdefault(n.originator_id, None)
            budget -= high - low + 1
            high = low - 1
        ids = list(recent)
        streams = getattr(self.recorder, "select_streams", None)
        kept = 0
        for start in range(0, len(ids), WARM_CHUNK):
            chunk = ids[start : start + WARM_CHUNK]
            if streams is None:
                members = [self.member(member_id) for member_id in chunk]
            else:
                stored = self._read(partial(streams, chunk))
                members = [
                    self.member_from_stored(member_id, stored[member_id])
                    for member_id in chunk
                    if member_id in stored
                ]
            kept += sum(self.members.offer(m) for m in members)
        return kept

    def member_from_stored(
        self, member_id: UUID, stored: Sequence[Any], base: MemberRelationship | None = None
    ) -> MemberRelationship:
        """The member folded from stored events read elsewhere (asynchronously).

        With ``base``, the events are the ones after it, and ``base`` itself is advanced.
        """
        if base is not None:
            stored = [e for e in stored if e.originator_version > base.version]
        member = _project(base, map(self.mapper.to_domain_event, stored)) if stored else base
        if not isinstance(member, MemberRelationship):
            raise NotFound(f"no member {member_id}", code="UNKNOWN_MEMBER", field="member_id")
        return member

    def member_id_for(self, id_number: str) -> UUID:
        """The member id an ID number maps to (whether or not enrolled)."""
        return self.identity.member_id(id_number)

    def units(self) -> list[Unit]:
        """Every registered unit, in registration order."""
        topic = f"{Unit.UnitRegistered.__module__}:{Unit.UnitRegistered.__qualname__}"
        return [self.unit(e.code) for e in self._scan(topic)]

    def _scan(self, topic: str) -> Iterator[Any]:
        start = 1
        while True:
            page = self._read(
                partial(self.recorder.select_notifications, start, 500, topics=[topic])
            )
            for n in page:
                yield self.mapper.to_domain_event(n)
            if len(page) < 500:
                return
            start = page[-1].id + 1

    def position(self) -> int:
        """The log position of the latest event (0 for an empty log)."""
        latest = self._read(lambda: self.recorder.max_notification_id())
        return int(latest or 0)

    # --- units ----------------------------------------------------------------

    def register_unit(
        self,
        actor: Actor,
        *,
        code: str,
        name: str,
        kind: UnitKind | str,
        region: str,
        parent_unit_id: str | None = None,
        occurred_on: date | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Register a unit (the acting unit may be the new unit itself)."""
        params = dict(
            code=code, name=name, kind=kind, region=region, parent=parent_unit_id, on=occurred_on
        )

        def decide(on: date) -> Aggregate:
            unit_code = require_text(code, "code", max_length=64)
            # ASCII only, as the HTTP API's unit fields take them: a code with other
            # letters could be registered here but never named in a request body. It
            # starts with a letter or digit: "." and ".." cannot be named in a URL path.
            if not (
                unit_code[0].isascii()
                and unit_code[0].isalnum()
                and all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in unit_code)
            ):
                raise InvalidInput(
                    "code may hold ASCII letters, digits, '-', '_' and '.' only, and starts"
                    " with a letter or digit (e.g. daning-center); the unit's name holds its"
                    " Chinese name",
                    field="code",
                )
            if self._exists(unit_id_for(unit_code)):
                raise Conflict(
                    f"unit {unit_code} is already registered", code="DUPLICATE_UNIT", field="code"
                )
            if actor.unit_id != unit_code:
                self._acting_unit(actor, on)
            parent = optional_text(parent_unit_id, "parent_unit_id", max_length=64)
            if parent is not None:
                self.unit(parent, "parent_unit_id")
            return Unit.register(
                code=unit_code,
                name=require_text(name, "name", max_length=200),
                kind=parse_enum(UnitKind, kind, "kind"),
                parent_unit_id=parent,
                region=require_text(region, "region", max_length=100),
                unit_id=actor.unit_id,
                occurred_on=on,
                recorded_by=actor.recorded_by,
            )

        return self._unit_command(
            "register_unit",
            actor,
            params,
            occurred_on,
            idempotency_key,
            decide,
            duplicate_code="DUPLICATE_UNIT",
        )

    def rename_unit(
        self,
        actor: Actor,
        unit_code: str,
        *,
        name: str,
        occurred_on: date | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record a unit's new name."""

        def decide(on: date) -> Aggregate:
            self._acting_unit(actor, on)
            unit = self._load_unit(unit_code)
            self._forget_unit(unit.code)
            unit.rename(
                name=require_text(name, "name", max_length=200),
                unit_id=actor.unit_id,
                occurred_on=on,
                recorded_by=actor.recorded_by,
            )
            return unit

        return self._unit_command(
            "rename_unit",
            actor,
            dict(unit=unit_code, name=name, on=occurred_on),
            occurred_on,
            idempotency_key,
            decide,
        )

    def dissolve_unit(
        self,
        actor: Actor,
        unit_code: str,
        *,
        successor_unit_id: str | None = None,
        occurred_on: date | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that a unit no longer exists; its members become orphaned (R8)."""

        def decide(on: date) -> Aggregate:
            self._acting_unit(actor, on)
            unit = self._load_unit(unit_code)
            if unit.code == actor.unit_id:  # the code as loaded: " sh-org-dept" is the same
                # It would end the acting unit's own credentials with it (dissolution
                # revokes a unit's tokens), leaving nobody to record what follows.
                raise RuleRefused(
                    f"{unit_code} cannot dissolve itself; the unit above it (or another"
                    " organisation department) records the dissolution",
                    code="SELF_DISSOLUTION",
                    field="unit_id",
                )
            self._forget_unit(unit.code)
            successor = optional_text(successor_unit_id, "successor_unit_id", max_length=64)
            if successor is not None:
                if successor == unit.code:
                    raise InvalidInput("a unit cannot succeed itself", field="successor_unit_id")
                rules.unit_can_act(
                    self.unit(successor, "successor_unit_id"), on, field="successor_unit_id"
                )
            unit.dissolve(
                successor_unit_id=successor,
                unit_id=actor.unit_id,
                occurred_on=on,
                recorded_by=actor.recorded_by,
            )
            return unit

        return self._unit_command(
            "dissolve_unit",
            actor,
            dict(unit=unit_code, successor=successor_unit_id, on=occurred_on),
            occurred_on,
            idempotency_key,
            decide,
        )

    # --- members: enrolment and standing ----------------------------------------

    def enrol_member(
        self,
        actor: Actor,
        *,
        name: str,
        id_number: str,
        standing: Standing | str,
        household_region: str,
        occurred_on: date | None = None,
        probation_started_on: date | None = None,
        developing_unit_id: str | None = None,
        holder_unit_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Enrol a member (DUPLICATE_MEMBER if the ID number is known); returns the member id."""
        digest = self.identity.digest(id_number)
        member_id = self.identity.member_id_from_digest(digest)
        on = occurred_on or self.clock()
        params = dict(
            digest=digest,
            name=name,
            standing=standing,
            region=household_region,
            on=occurred_on,
            probation=probation_started_on,
            developing=developing_unit_id,
            holder=holder_unit_id,
        )

        def attempt() -> Outcome:
            if self._exists(member_id):
                raise Conflict(
                    "this ID number is already enrolled", code="DUPLICATE_MEMBER", field="id_number"
                )
            acting = self._acting_unit(actor, on)
            holder = self.unit(holder_unit_id, "holder_unit_id") if holder_unit_id else acting
            developing = (
                self.unit(developing_unit_id, "developing_unit_id") if developing_unit_id else None
            )
            member = MemberRelationship.enrol(
                Act(acting, actor.recorded_by, on, self.clock()),
                member_id=member_id,
                name=name,
                id_digest=digest,
                standing=parse_enum(Standing, standing, "standing"),
                probation_started_on=probation_started_on,
                developing_unit=developing,
                household_region=household_region,
                holder=holder,
            )
            outcome = self._commit(
                [member],
                actor,
                idempotency_key,
                fingerprint,
                Outcome(member_id=member_id, version=member.version),
            )
            if self._batch is None:
                self.members.put(member)
            return outcome

        fingerprint = (
            _fingerprint("enrol_member", None, params) if idempotency_key is not None else ""
        )
        replay = self._replay(actor, idempotency_key, fingerprint)
        if replay:
            return replay
        try:
            try:
                return attempt()
            except IntegrityError:
                raise Conflict(
                    "this ID number is already enrolled", code="DUPLICATE_MEMBER", field="id_number"
                ) from None
        except HarborError:
            # The first attempt of this very command may have committed meanwhile.
            replay = self._replay(actor, idempotency_key, fingerprint)
            if replay:
                return replay
            raise

    # --- the machinery ---------------------------------------------------------------

    def _on_member(
        self,
        command: str,
        actor: Actor,
        member_id: UUID | str,
        occurred_on: date | None,
        expected_version: int | None,
        idempotency_key: str | None,
        params: dict[str, Any],
        decide: Decide,
    ) -> Outcome:
        mid = as_uuid(member_id, "member_id")
        if occurred_on is not None and not isinstance(occurred_on, date):
            raise InvalidInput("occurred_on must be a date (YYYY-MM-DD)", field="occurred_on")
        # The fingerprint is of the command as sent: a retry without a date is the same
        # command even after midnight, although "today" has moved on. Only a command with
        # an idempotency key keeps one.
        fingerprint = (
            _fingerprint(command, mid, {**params, "on": occurred_on})
            if idempotency_key is not None
            else ""
        )
        replay = self._replay(actor, idempotency_key, fingerprint)
        if replay:
            return replay
        on = occurred_on or self.clock()
        try:
            return self._decide_and_commit(
                command, actor, mid, on, expected_version, idempotency_key, fingerprint, decide
            )
        except HarborError:
            # The first attempt of this very command may have committed meanwhile, and its
            # events then refuse the retry: answer with the first outcome instead.
            replay = self._replay(actor, idempotency_key, fingerprint)
            if replay:
                return replay
            raise

    def _decide_and_commit(
        self,
        command: str,
        actor: Actor,
        mid: UUID,
        on: date,
        expected_version: int | None,
        idempotency_key: str | None,
        fingerprint: str,
        decide: Decide,
    ) -> Outcome:
        fresh = False  # decided on what the store holds now, not on a cached member
        for _ in range(MAX_ATTEMPTS):
            member = None if fresh or self._batch is not None else self.members.take(mid)
            if member is None:
                member, fresh = self.member(mid), True
            try:
                if expected_version is not None and member.version != expected_version:
                    raise StaleVersion(
                        f"the member is at version {member.version}, not {expected_version};"
                        " reload and decide again",
                        field="expected_version",
                        current_version=member.version,
                    )
                acting = self._acting_unit(actor, on)
                holder = self._opt_unit(member.holder_unit_id, "holder_unit_id")
                act = Act(acting, actor.recorded_by, on, self.clock(), holder)
                others = decide(member, act) or []
            except HarborError:
                if fresh:
                    raise
                # A cached member may be behind the store (another process wrote since):
                # a refusal only counts when decided on the stored stream.
                fresh = True
                continue
            last: MemberEvent = member.pending_events[-1]  # type: ignore[assignment]
            case = member.state.cases.get(last.case_id) if last.case_id else None
            outcome = Outcome(
                member_id=mid,
                case_id=last.case_id,
                version=member.version,
                first_responder=case.first_responder if case else None,
            )
            try:
                outcome = self._commit(
                    [member, *others], actor, idempotency_key, fingerprint, outcome
                )
            except IntegrityError:
                replay = self._replay(actor, idempotency_key, fingerprint)
                if replay:
                    return replay
                if not fresh:
                    # Decided on a cached member that had moved on elsewhere: what the
                    # stored stream says (a refusal, or a taken number) is what counts.
                    fresh = True
                    continue
                for other in others:
                    if isinstance(other, LetterNumber) and self._exists(other.id):
                        raise letter_no_taken(
                            actor.unit_id, on.year, getattr(last, "letter_no", "")
                        ) from None
                if expected_version is not None:
                    raise StaleVersion(
                        "the member changed while this command was being decided; reload and"
                        " decide again",
                        field="expected_version",
                    ) from None
                log.info("%s on %s lost a race; deciding again", command, mid)
                continue
            if self._batch is None:
                self.members.put(member)
            return outcome
        raise StaleVersion("the member kept changing; try again", field="expected_version")

    def _unit_command(
        self,
        command: str,
        actor: Actor,
        params: dict[str, Any],
        occurred_on: date | None,
        idempotency_key: str | None,
        decide: Callable[[date], Aggregate],
        duplicate_code: str | None = None,
    ) -> Outcome:
        fingerprint = (
            _fingerprint(command, None, {**params, "on": occurred_on})
            if idempotency_key is not None
            else ""
        )
        replay = self._replay(actor, idempotency_key, fingerprint)
        if replay:
            return replay
        on = occurred_on or self.clock()
        try:
            rules.date_is_not_in_future(on, self.clock())
            unit = decide(on)
            assert isinstance(unit, Unit)
            try:
                outcome = self._commit(
                    [unit],
                    actor,
                    idempotency_key,
                    fingerprint,
                    Outcome(unit_id=unit.code, version=unit.version),
                )
                self._forget_unit(unit.code)
                return outcome
            except IntegrityError:
                if duplicate_code:
                    raise Conflict(
                        f"unit {unit.code} is already registered",
                        code=duplicate_code,
                        field="code",
                    ) from None
                raise StaleVersion(f"unit {unit.code} changed meanwhile; try again") from None
        except HarborError:
            # The first attempt of this very command may have committed meanwhile.
            replay = self._replay(actor, idempotency_key, fingerprint)
            if replay:
                return replay
            raise

    def _commit(
        self,
        aggregates: Sequence[Aggregate],
        actor: Actor,
        idempotency_key: str | None,
        fingerprint: str,
        outcome: Outcome,
    ) -> Outcome:
        receipt = None
        if idempotency_key is not None:
            receipt = CommandReceipt(
                actor.unit_id, _key(idempotency_key), fingerprint, outcome.to_json()
            )
        if self._batch is not None:
            self._batch.add(aggregates[0].id, aggregates, receipt, outcome)
            return outcome
        events = [e for aggregate in aggregates for e in aggregate.collect_events()]
        receipts = [ReceiptAt(receipt, len(events) - 1)] if receipt else []
        try:
            if self.committer is not None:
                recordings = self.blocking(Commit(self.committer, events, receipts))
            else:
                recordings = self.blocking(partial(self._append, events, receipts))
        except (OperationalError, InterfaceError) as e:
            raise Unavailable(
                f"{_unreachable(e)}; "
                + (
                    "retry the same command with the same idempotency key: it is stored once"
                    if idempotency_key
                    else "the command may have been stored just before the connection went —"
                    " look before recording it again (an idempotency key makes such a retry"
                    " safe)"
                ),
            ) from e
        position = max((r.notification.id for r in recordings), default=None)
        return Outcome(**{**outcome.__dict__, "position": position})

    def _replay(self, actor: Actor, key: str | None, fingerprint: str) -> Outcome | None:
        if key is None:
            return None
        if self._batch is not None:
            answer = self._batch.answer(actor.unit_id, _key(key))
            if answer is not None:
                if answer[0] != fingerprint:
                    raise Conflict(
                        f"idempotency key {key!r} was already used by {actor.unit_id} for a"
                        " different command; use a new key for a new command",
                        code="IDEMPOTENCY_KEY_REUSED",
                        field="idempotency_key",
                    )
                return replace(answer[1], replayed=True)
        store = self.recorder
        if not self._keeps_receipts:
            raise InvalidInput("this store cannot keep idempotency keys", field="idempotency_key")
        pair = (actor.unit_id, _key(key))
        if self._batch is not None and pair in self._batch.receipts:
            receipt = self._batch.receipts[pair]
        else:
            receipt = self._read(lambda: store.find_receipt(*pair))  # type: ignore[attr-defined]
        if receipt is None:
            return None
        if receipt.fingerprint != fingerprint:
            raise Conflict(
                f"idempotency key {key!r} was already used by {actor.unit_id} for a different"
                " command; use a new key for a new command",
                code="IDEMPOTENCY_KEY_REUSED",
                field="idempotency_key",
            )
        return Outcome.from_json(receipt.outcome_json, receipt.position)

    def _acting_unit(self, actor: Actor, on: date) -> Unit:
        unit = self.unit(actor.unit_id, "unit_id")
        rules.unit_can_act(unit, on)
        return unit

    def _opt_unit(self, code: str | None, field: str) -> Unit | None:
        return self.unit(code, field) if code else None

    def _exists(self, aggregate_id: UUID) -> bool:
        if self._batch is not None:
            if self._batch.holds(aggregate_id):
                return True
            if aggregate_id in self._batch.absent:
                return False
        return bool(self._read(lambda: self.recorder.select_events(aggregate_id, limit=1)))

    def _taken_before_append(self, aggregate_id: UUID) -> bool:
        """Whether a claimed stream (a letter number) is taken, where that must be known early.

        A batch asks (from what it prefetched): its members stand or fall alone, and a
        conflict at commit would send each of them to the store on its own. A single
        command does not spend a read on it: claiming a taken stream fails the append
        itself, and ``_decide_and_commit`` then names the refusal. Under group commit
        that failure sends the shared transaction's commands to the store one by one,
        as any conflict does; a number is rarely given twice, a read per letter is paid
        on every one.
        """
        return self._batch is not None and self._exists(aggregate_id)

    def _version_at(self, member_id: UUID, position: int) -> int:
        if not isinstance(position, int) or position < 1:
            raise InvalidInput(
                "position must be a log position (a whole number ≥ 1)", field="voided"
            )
        found = self._read(lambda: self.recorder.select_notifications(position, 1, stop=position))
        if not found or found[0].originator_id != member_id:
            raise NotFound(
                f"log position {position} is not an entry of this member",
                code="UNKNOWN_ENTRY",
                field="voided",
            )
        return int(found[0].originator_version)

    def _read(self, fn: Callable[[], Any]) -> Any:
        try:
            return self.blocking(fn)
        except (OperationalError, InterfaceError) as e:
            raise Unavailable(
                f"{_unreachable(e)}; retry"
            ) from e


def _unreachable(error: Exception) -> str:
    """Why the store did not answer, as a clerk can act on it."""
    if "locked" in str(error):  # SQLite's one writer: another process held the file
        return (
            "the event store is locked by another process writing to it (SQLite takes one"
            " writer at a time: a `harbor serve`, import or rebuild on the same file?)"
        )
    return f"the event store could not be reached ({error.__class__.__name__})"


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's projector without its per-event runtime protocol check (costly)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _fingerprint(command: str, member_id: UUID | None, params: dict[str, Any]) -> str:
    def plain(value: Any) -> Any:
        if hasattr(value, "value") and not isinstance(value, (date, Decimal)):
            return value.value  # enums
        return str(value) if value is not None else None

    body = _FINGERPRINT_JSON(
        [
            command,
            str(member_id),
            {k: plain(v) if not isinstance(v, list) else v for k, v in params.items()},
        ]
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# Made once: json.dumps with options builds a new encoder on every call.
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False).encode


def _key(key: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
        raise InvalidInput(
            "an idempotency key is 1–200 printable characters", field="idempotency_key"
        )
    return key
