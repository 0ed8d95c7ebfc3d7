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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    OperationalError,
)

from domain import rules
from domain.errors import (
    Conflict,
    HarborError,
    InvalidInput,
    NotFound,
    StaleVersion,
    Unavailable,
)
from domain.identity import MemberIdentity
from domain.letter_number import LetterNumber, letter_number_id
from domain.member import Act, MemberRelationship
from domain.member_events import MemberEvent
from domain.receipts import CommandReceipt, Outcome, ReceiptStore
from domain.transcodings import register_domain_transcodings
from domain.unit import Unit, unit_id_for
from domain.values import (
    Basis,
    Channel,
    ContactOutcome,
    DeclineReason,
    EvidenceKind,
    Handover,
    PriorContact,
    Standing,
    UnitKind,
    YearMonth,
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


def today_in_shanghai() -> date:
    """Today's date where the registry's units are."""
    return datetime.now(SHANGHAI).date()


@dataclass(frozen=True)
class Actor:
    """Who makes a command: the acting unit and the person recording for it."""

    unit_id: str
    recorded_by: str


Decide = Callable[[MemberRelationship, Act], Sequence[Aggregate] | None]


class Registry(Application[UUID]):
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

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """The library's transcodings plus Harbor's value types."""
        super().register_transcodings(transcoder)
        register_domain_transcodings(transcoder)

    # --- reading ------------------------------------------------------------

    def unit(self, code: str, field: str = "unit_id") -> Unit:
        """The unit with this code, or UNKNOWN_UNIT naming ``field``."""
        code = require_text(code, field, max_length=64)
        try:
            unit = self._read(lambda: self.repository.get(unit_id_for(code)))
        except AggregateNotFoundError:
            raise NotFound(
                f"no unit {code!r} is registered", code="UNKNOWN_UNIT", field=field
            ) from None
        assert isinstance(unit, Unit)
        return unit

    def member(self, member_id: UUID | str, *, version: int | None = None) -> MemberRelationship:
        """The member's relationship (optionally as it stood at a stream version)."""
        mid = _uuid(member_id, "member_id")
        try:
            member = self._read(lambda: self.repository.get(mid, version=version))
        except AggregateNotFoundError:
            raise NotFound(f"no member {mid}", code="UNKNOWN_MEMBER", field="member_id") from None
        if not isinstance(member, MemberRelationship):
            raise NotFound(f"no member {mid}", code="UNKNOWN_MEMBER", field="member_id")
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
            if not all(ch.isalnum() or ch in "-_." for ch in unit_code):
                raise InvalidInput(
                    "code may hold letters, digits, '-', '_' and '.' only", field="code"
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
            unit = self.unit(unit_code)
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
            unit = self.unit(unit_code)
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
            return self._commit(
                [member],
                actor,
                idempotency_key,
                fingerprint,
                Outcome(member_id=member_id, version=member.version),
            )

        fingerprint = _fingerprint("enrol_member", None, params)
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

    def confirm_membership(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """转正: the probationary member becomes a full member."""
        return self._on_member(
            "confirm_membership",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            {},
            lambda m, act: m.confirm_membership(act),
        )

    def extend_probation(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        months: int,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Extend probation by whole months."""
        return self._on_member(
            "extend_probation",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(months=months),
            lambda m, act: m.extend_probation(act, months=months),
        )

    # --- members: the case ---------------------------------------------------------

    def receive_inquiry(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        channel: Channel | str,
        summary: str,
        prior_contacts: Sequence[PriorContact | dict[str, str]] = (),
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The member came forward: opens a case or joins the open one."""
        contacts = [_prior_contact(c, i) for i, c in enumerate(prior_contacts)]

        def decide(m: MemberRelationship, act: Act) -> None:
            m.receive_inquiry(
                act,
                channel=parse_enum(Channel, channel, "channel"),
                summary=summary,
                prior_contacts=contacts,
            )

        return self._on_member(
            "receive_inquiry",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(channel=channel, summary=summary, prior=[(c.who, c.answer) for c in contacts]),
            decide,
        )

    def notify_requirements(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        documents: Sequence[str],
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """一次性告知: tell the member every document needed, at once."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "notify_requirements",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, documents=list(documents)),
            lambda m, act: m.notify_requirements(act, case_id=cid, documents=documents),
        )

    def record_evidence(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        kind: EvidenceKind | str,
        reference: str,
        valid_until: date | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record a document the member showed (labour contract, lease, ...)."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "record_evidence",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, kind=kind, reference=reference, valid_until=valid_until),
            lambda m, act: m.record_evidence(
                act,
                case_id=cid,
                kind=parse_enum(EvidenceKind, kind, "kind"),
                reference=reference,
                valid_until=valid_until,
            ),
        )

    def review_archive(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        finding: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record what the member's personal file (档案) showed."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "review_archive",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, finding=finding),
            lambda m, act: m.review_archive(act, case_id=cid, finding=finding),
        )

    def contact_origin(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        outcome: ContactOutcome | str,
        contacted_unit_id: str | None = None,
        contacted_name: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record an attempt to reach the member's original unit or its superior."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "contact_origin",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, outcome=outcome, unit=contacted_unit_id, name=contacted_name),
            lambda m, act: m.contact_origin(
                act,
                case_id=cid,
                outcome=parse_enum(ContactOutcome, outcome, "outcome"),
                contacted_unit=self._opt_unit(contacted_unit_id, "contacted_unit_id"),
                contacted_name=contacted_name,
            ),
        )

    def consult_unit(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        consulted_unit_id: str,
        note: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record coordination with another unit (the case stays here)."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "consult_unit",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, unit=consulted_unit_id, note=note),
            lambda m, act: m.consult_unit(
                act,
                case_id=cid,
                consulted=self.unit(consulted_unit_id, "consulted_unit_id"),
                note=note,
            ),
        )

    def issue_introduction(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        purpose: str,
        to_unit_id: str | None = None,
        to_name: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Issue an introduction letter so the member can inquire somewhere."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "issue_introduction",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, purpose=purpose, unit=to_unit_id, name=to_name),
            lambda m, act: m.issue_introduction(
                act,
                case_id=cid,
                to_unit=self._opt_unit(to_unit_id, "to_unit_id"),
                to_name=to_name,
                purpose=purpose,
            ),
        )

    def hold_transfer(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        rule: str,
        note: str,
        until: date | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that the transfer waits under a named rule."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "hold_transfer",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, rule=rule, note=note, until=until),
            lambda m, act: m.hold_transfer(act, case_id=cid, rule=rule, until=until, note=note),
        )

    def send_performance_report(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        to_unit_id: str,
        covering_from: date,
        covering_to: date,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record the performance report (考察材料) sent to the receiving unit."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "send_performance_report",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, to=to_unit_id, start=covering_from, end=covering_to),
            lambda m, act: m.send_performance_report(
                act,
                case_id=cid,
                to_unit=self.unit(to_unit_id, "to_unit_id"),
                covering_from=covering_from,
                covering_to=covering_to,
            ),
        )

    def issue_letter(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        to_unit_id: str,
        dues_paid_through: YearMonth | str,
        valid_until: date | None = None,
        special_circumstances: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Issue the transfer letter (组织关系介绍信) to the receiving unit."""
        cid = _opt_uuid(case_id, "case_id")
        dues = (
            dues_paid_through
            if isinstance(dues_paid_through, YearMonth)
            else YearMonth.parse(dues_paid_through, "dues_paid_through")
        )

        def decide(m: MemberRelationship, act: Act) -> Sequence[Aggregate]:
            m.issue_letter(
                act,
                case_id=cid,
                letter_no=letter_no,
                to_unit=self.unit(to_unit_id, "to_unit_id"),
                valid_until=valid_until,
                dues_paid_through=dues,
                special_circumstances=special_circumstances,
            )
            number = letter_no.strip()
            if self._exists(letter_number_id(act.actor.code, act.on.year, number)):
                raise _letter_no_taken(act.actor.code, act.on.year, number)
            return [LetterNumber.take(act.actor.code, act.on.year, number, m.id)]

        return self._on_member(
            "issue_letter",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(
                case=cid,
                no=letter_no,
                to=to_unit_id,
                dues=str(dues),
                until=valid_until,
                special=special_circumstances,
            ),
            decide,
        )

    def decline_letter(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        reason_code: DeclineReason | str,
        note: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """拒接: the addressee refuses the letter, with a stated cause."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "decline_letter",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, no=letter_no, reason=reason_code, note=note),
            lambda m, act: m.decline_letter(
                act,
                case_id=cid,
                letter_no=letter_no,
                reason_code=parse_enum(DeclineReason, reason_code, "reason_code"),
                note=note,
            ),
        )

    def void_letter(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        reason: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The issuer withdraws its letter (lost, re-issued, ...)."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "void_letter",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, no=letter_no, reason=reason),
            lambda m, act: m.void_letter(act, case_id=cid, letter_no=letter_no, reason=reason),
        )

    def expire_letter(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that an expired letter came back unused."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "expire_letter",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, no=letter_no),
            lambda m, act: m.expire_letter(act, case_id=cid, letter_no=letter_no),
        )

    def return_receipt(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that the receipt (回执) of a used letter reached its issuer."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "return_receipt",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, no=letter_no),
            lambda m, act: m.return_receipt(act, case_id=cid, letter_no=letter_no),
        )

    def refer_case(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        to_unit_id: str,
        handover: Handover | str,
        reason: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Send the member on to another unit, warm (accompanied) or cold."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "refer_case",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, to=to_unit_id, handover=handover, reason=reason),
            lambda m, act: m.refer(
                act,
                case_id=cid,
                to_unit=self.unit(to_unit_id, "to_unit_id"),
                handover=parse_enum(Handover, handover, "handover"),
                reason=reason,
            ),
        )

    def accept_referral(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The addressee takes the referred case on."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "accept_referral",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid),
            lambda m, act: m.accept_referral(act, case_id=cid),
        )

    def decline_referral(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        reason_code: DeclineReason | str,
        note: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The addressee refuses the referral, with a stated cause."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "decline_referral",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, reason=reason_code, note=note),
            lambda m, act: m.decline_referral(
                act,
                case_id=cid,
                reason_code=parse_enum(DeclineReason, reason_code, "reason_code"),
                note=note,
            ),
        )

    def attach_member(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        basis: Basis | str,
        letter_no: str | None = None,
        override_reason: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The acting unit takes the member in and becomes the holder."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "attach_member",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, basis=basis, no=letter_no, reason=override_reason),
            lambda m, act: m.attach(
                act,
                case_id=cid,
                basis=parse_enum(Basis, basis, "basis"),
                letter_no=letter_no,
                override_reason=override_reason,
            ),
        )

    def withdraw_case(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        reason: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Close the case without an attachment."""
        cid = _opt_uuid(case_id, "case_id")
        return self._on_member(
            "withdraw_case",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, reason=reason),
            lambda m, act: m.withdraw_case(act, case_id=cid, reason=reason),
        )

    # --- members: life of the relationship ------------------------------------------

    def receive_dues(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        months_from: YearMonth | str,
        months_to: YearMonth | str,
        amount: Decimal | str | int,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record party dues (党费) received for whole months."""
        start = (
            months_from
            if isinstance(months_from, YearMonth)
            else YearMonth.parse(months_from, "months_from")
        )
        end = (
            months_to
            if isinstance(months_to, YearMonth)
            else YearMonth.parse(months_to, "months_to")
        )
        money = _decimal(amount, "amount")
        return self._on_member(
            "receive_dues",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(start=str(start), end=str(end), amount=str(money)),
            lambda m, act: m.receive_dues(act, months_from=start, months_to=end, amount=money),
        )

    def attend_activity(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        kind: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that the member took part in an activity of the acting unit."""
        return self._on_member(
            "attend_activity",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(kind=kind),
            lambda m, act: m.attend_activity(act, kind=kind),
        )

    def make_contact(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        channel: Channel | str,
        note: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that the acting unit reached the member."""
        return self._on_member(
            "make_contact",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(channel=channel, note=note),
            lambda m, act: m.make_contact(
                act, channel=parse_enum(Channel, channel, "channel"), note=note
            ),
        )

    def void_entry(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        position: int,
        reason: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Void an entry (by its log position): it stays in the trail and stops counting."""
        mid = _uuid(member_id, "member_id")

        def decide(m: MemberRelationship, act: Act) -> Sequence[Aggregate]:
            version = self._version_at(mid, position)
            m.void_entry(act, position=position, version=version, reason=reason)
            return []

        return self._on_member(
            "void_entry",
            actor,
            mid,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(position=position, reason=reason),
            decide,
        )

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
        mid = _uuid(member_id, "member_id")
        if occurred_on is not None and not isinstance(occurred_on, date):
            raise InvalidInput("occurred_on must be a date (YYYY-MM-DD)", field="occurred_on")
        # The fingerprint is of the command as sent: a retry without a date is the same
        # command even after midnight, although "today" has moved on.
        fingerprint = _fingerprint(command, mid, {**params, "on": occurred_on})
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
        for _ in range(MAX_ATTEMPTS):
            member = self.member(mid)
            if expected_version is not None and member.version != expected_version:
                raise StaleVersion(
                    f"the member is at version {member.version}, not {expected_version};"
                    " reload and decide again",
                    field="expected_version",
                )
            acting = self._acting_unit(actor, on)
            holder = self._opt_unit(member.holder_unit_id, "holder_unit_id")
            act = Act(acting, actor.recorded_by, on, self.clock(), holder)
            others = decide(member, act) or []
            last: MemberEvent = member.pending_events[-1]  # type: ignore[assignment]
            case = member.state.cases.get(last.case_id) if last.case_id else None
            outcome = Outcome(
                member_id=mid,
                case_id=last.case_id,
                version=member.version,
                first_responder=case.first_responder if case else None,
            )
            try:
                return self._commit([member, *others], actor, idempotency_key, fingerprint, outcome)
            except IntegrityError:
                replay = self._replay(actor, idempotency_key, fingerprint)
                if replay:
                    return replay
                for other in others:
                    if isinstance(other, LetterNumber) and self._exists(other.id):
                        raise _letter_no_taken(
                            actor.unit_id, on.year, getattr(last, "letter_no", "")
                        ) from None
                if expected_version is not None:
                    raise StaleVersion(
                        "the member changed while this command was being decided; reload and"
                        " decide again",
                        field="expected_version",
                    ) from None
                log.info("%s on %s lost a race; deciding again", command, mid)
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
        fingerprint = _fingerprint(command, None, {**params, "on": occurred_on})
        replay = self._replay(actor, idempotency_key, fingerprint)
        if replay:
            return replay
        on = occurred_on or self.clock()
        try:
            rules.date_is_not_in_future(on, self.clock())
            unit = decide(on)
            assert isinstance(unit, Unit)
            try:
                return self._commit(
                    [unit],
                    actor,
                    idempotency_key,
                    fingerprint,
                    Outcome(unit_id=unit.code, version=unit.version),
                )
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
        try:
            recordings = self.save(*aggregates, receipt=receipt)
        except (OperationalError, InterfaceError) as e:
            raise Unavailable(
                f"the event store could not be reached ({e.__class__.__name__}); nothing is known"
                " to be stored — retry the same command"
                + (" with the same idempotency key" if idempotency_key else ""),
            ) from e
        position = max((r.notification.id for r in recordings), default=None)
        return Outcome(**{**outcome.__dict__, "position": position})

    def _replay(self, actor: Actor, key: str | None, fingerprint: str) -> Outcome | None:
        if key is None:
            return None
        store = self.recorder
        if not isinstance(store, ReceiptStore):
            raise InvalidInput("this store cannot keep idempotency keys", field="idempotency_key")
        receipt = self._read(lambda: store.find_receipt(actor.unit_id, _key(key)))
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
        return bool(self._read(lambda: self.recorder.select_events(aggregate_id, limit=1)))

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

    @staticmethod
    def _read(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (OperationalError, InterfaceError) as e:
            raise Unavailable(
                f"the event store could not be reached ({e.__class__.__name__}); retry"
            ) from e


def _letter_no_taken(issuer: str, year: int, number: str) -> Conflict:
    return Conflict(
        f"{issuer} already used letter number {number} in {year}; take the next number",
        code="LETTER_NO_TAKEN",
        field="letter_no",
    )


def _fingerprint(command: str, member_id: UUID | None, params: dict[str, Any]) -> str:
    def plain(value: Any) -> Any:
        if hasattr(value, "value") and not isinstance(value, (date, Decimal)):
            return value.value  # enums
        return str(value) if value is not None else None

    body = json.dumps(
        [
            command,
            str(member_id),
            {k: plain(v) if not isinstance(v, list) else v for k, v in params.items()},
        ],
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _key(key: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
        raise InvalidInput(
            "an idempotency key is 1–200 printable characters", field="idempotency_key"
        )
    return key


def _uuid(value: UUID | str, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{field} must be a UUID (got {value!r})", field=field) from None


def _opt_uuid(value: UUID | str | None, field: str) -> UUID | None:
    return None if value is None else _uuid(value, field)


def _decimal(value: Decimal | str | int, field: str) -> Decimal:
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(
            f"{field} must be a decimal number (got {value!r})", field=field
        ) from None
    if not result.is_finite() or result < 0:
        raise InvalidInput(f"{field} must be a non-negative number", field=field)
    return result


def _prior_contact(value: PriorContact | dict[str, str], index: int) -> PriorContact:
    if isinstance(value, PriorContact):
        return value
    if not isinstance(value, dict) or set(value) - {"who", "answer"}:
        raise InvalidInput("a prior contact is {who, answer}", field=f"prior_contacts[{index}]")
    return PriorContact(who=value.get("who", ""), answer=value.get("answer", ""))
