"""Refusals: every command Harbor will not record raises one of these.

Each error carries a stable ``code`` (the contract with clients, see
DESIGN.md "Rules and refusal codes"), a message a clerk can act on, and the
name of the offending field where there is one. Nothing is stored when one
is raised.
"""

from __future__ import annotations


class HarborError(Exception):
    """A command was refused; nothing was stored."""

    default_code = "REFUSED"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.code}{where}: {self.message}"


class RuleRefused(HarborError):
    """A business rule (R1–R9) forbids the command as it stands."""


class InvalidInput(HarborError):
    """A field is missing, malformed or out of range."""

    default_code = "INVALID_INPUT"


class NotFound(HarborError):
    """The command names a member, case, unit or letter Harbor does not know."""


class Conflict(HarborError):
    """The command collides with something already recorded."""


class StaleVersion(Conflict):
    """The member changed since the caller read it (optimistic concurrency)."""

    default_code = "STALE_VERSION"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        current_version: int | None = None,
    ):
        """``current_version``: the version the member is at, for a caller deciding again."""
        super().__init__(message, code=code, field=field)
        self.current_version = current_version


class Unavailable(HarborError):
    """The store could not be reached; the command may be retried as it is."""

    default_code = "STORE_UNAVAILABLE"


# Every code a command's refusal can carry, with what the clerk should do about it.
# The rule tests check against it (tests/scenarios.py: a code a test expects must be
# listed here); the README and the API docs do not read it. The HTTP layer's own codes
# (UNAUTHORIZED, FORBIDDEN, NOT_CAUGHT_UP, NOT_SEALED, BODY_TOO_LARGE, NOT_FOUND, ...)
# and the importer's MEMBER_REJECTED are not listed: docs/design-notes.md names them.
CODES: dict[str, str] = {
    "R1_BASIS_WITHOUT_EVIDENCE": "record valid evidence, or attach on basis other with a reason",
    "R1_LOWER_BASIS_WITHOUT_REASON": "a higher basis has valid evidence: use it or give a reason",
    "R2_LETTER_OUTSTANDING": "void, expire or settle the outstanding letter first",
    "R2_NOT_HOLDER": "only the holding unit (or a dissolved holder's parent/successor) issues",
    "R2_NOT_ADDRESSED": "no outstanding letter is addressed to this unit; give override_reason",
    "R3_NEAR_CONFIRMATION": "1–3 months before confirmation: hold, or give special_circumstances",
    "R4_REPORT_MISSING": "send the performance report to the addressee first",
    "R9_CASE_CLOSED": "the case is closed; record a new inquiry to open a new case",
    "R9_NO_OPEN_CASE": "record an inquiry first: it opens the case",
    "ALREADY_ATTACHED": "this case already has an attachment; void it first to redo it",
    "NOT_HOLDER": "only the unit that holds the member may do this",
    "NOT_ADDRESSEE": "only the unit the letter or referral is addressed to may answer it",
    "NOT_ISSUER": "only the unit that issued the letter may do this",
    "NOT_PROBATIONARY": "the member is already a full member",
    "NOT_VOIDABLE": "this entry cannot be voided (see the message for what to do instead)",
    "LETTER_NOT_OUTSTANDING": "the letter was already used, declined, voided or expired",
    "LETTER_NOT_EXPIRED": "the letter is still valid; wait until after valid_until",
    "LETTER_NOT_USED": "a receipt can only return for a letter that led to an attachment",
    "RECEIPT_ALREADY_RETURNED": "the receipt is on record; void that entry to correct it",
    "UNKNOWN_UNIT": "register the unit first (harbor units add)",
    "UNKNOWN_MEMBER": "look the member up by ID number, or enrol them",
    "UNKNOWN_CASE": "check the case id (harbor history MEMBER lists them)",
    "UNKNOWN_LETTER": "check the letter number",
    "UNKNOWN_ENTRY": "check the log position of the entry to void",
    "UNIT_DISSOLVED": "a dissolved unit cannot act or receive members; use its successor",
    "SELF_DISSOLUTION": "a unit cannot dissolve itself; the unit above it records it",
    "DUPLICATE_UNIT": "a unit with this code is already registered",
    "DUPLICATE_MEMBER": "this ID number is already enrolled; look the member up instead",
    "LETTER_NO_TAKEN": "this unit already used that letter number this year; take the next",
    "INVALID_DATE": "dates may not lie in the future or before the member's enrolment",
    "INVALID_INPUT": "correct the named field",
    "STALE_VERSION": "the member changed since you read it; reload and decide again",
    "IDEMPOTENCY_KEY_REUSED": "this key was used for a different command; choose a new key",
    "STORE_UNAVAILABLE": "the database could not be reached; retry with the same idempotency key",
    "UNKNOWN_TOKEN": "no live token has that id: `harbor tokens list` shows them",
}
