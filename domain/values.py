"""Value types of the domain: the closed vocabularies of DESIGN.md and small values."""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import TypeVar

from domain.errors import InvalidInput

E = TypeVar("E", bound=Enum)


class UnitKind(Enum):
    WORKPLACE = "workplace"
    SERVICE_CENTER = "service_center"
    SCHOOL = "school"
    ORG_DEPARTMENT = "org_department"
    EXTERNAL = "external"


class Standing(Enum):
    PROBATIONARY = "probationary"
    FULL = "full"


class Channel(Enum):
    WALK_IN = "walk_in"
    PHONE = "phone"
    LETTER = "letter"
    ONLINE = "online"


class EvidenceKind(Enum):
    LABOUR_CONTRACT = "labour_contract"
    EMPLOYMENT_PROOF = "employment_proof"
    LEASE = "lease"
    PROPERTY_CERTIFICATE = "property_certificate"
    HOUSEHOLD_REGISTRATION = "household_registration"


class ContactOutcome(Enum):
    REACHED = "reached"
    UNREACHABLE = "unreachable"
    FOUND_SUPERIOR = "found_superior"
    NO_RECORD = "no_record"


class Handover(Enum):
    WARM = "warm"
    COLD = "cold"


class Basis(Enum):
    """Attachment basis, in the article's order of preference (highest first)."""

    WORKPLACE = "workplace"
    RESIDENCE = "residence"
    HOUSEHOLD = "household"
    OTHER = "other"

    @property
    def rank(self) -> int:
        """0 for the most preferred basis."""
        return list(Basis).index(self)


class DeclineReason(Enum):
    NOT_OUR_AREA = "not_our_area"
    NO_RESIDENCE_EVIDENCE = "no_residence_evidence"
    NO_EMPLOYMENT_EVIDENCE = "no_employment_evidence"
    MEMBER_UNREACHABLE = "member_unreachable"
    OTHER = "other"


ALL_ENUMS: tuple[type[Enum], ...] = (
    UnitKind,
    Standing,
    Channel,
    EvidenceKind,
    ContactOutcome,
    Handover,
    Basis,
    DeclineReason,
)


def parse_enum(enum_type: type[E], value: object, field: str) -> E:
    """Turn a client's string into a member of ``enum_type`` or refuse naming the field."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise InvalidInput(
            f"{field} must be one of: {allowed} (got {value!r})", field=field
        ) from None


# The registry's calendar: no record lies outside these years (and date arithmetic
# near date.max would overflow).
FIRST_YEAR = 1900
LAST_YEAR = 2999
LAST_DAY = date(LAST_YEAR, 12, 31)

_YM = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, order=True)
class YearMonth:
    """A calendar month (YYYY-MM), as party dues are counted."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str, field: str = "month") -> YearMonth:
        """Parse ``YYYY-MM`` or refuse naming the field."""
        m = _YM.match(text) if isinstance(text, str) else None
        if not m:
            raise InvalidInput(
                f"{field} must be a month written YYYY-MM (got {text!r})", field=field
            )
        year = int(m.group(1))
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise InvalidInput(
                f"{field} must lie between {FIRST_YEAR} and {LAST_YEAR} (got {text!r})", field=field
            )
        return cls(year, int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def last_day(self) -> date:
        """The last day of this month."""
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def first_day(self) -> date:
        """The first day of this month."""
        return date(self.year, self.month, 1)


@dataclass(frozen=True)
class PriorContact:
    """Someone the member asked before this unit, and what they answered."""

    who: str
    answer: str


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, clamped to the month's last day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9X]$")  # ASCII: \d would take any script's digits


def normalise_id_number(raw: str) -> str:
    """A resident ID number in canonical form (18 characters, capital X) or a refusal.

    Full-width digits and Ｘ, as Chinese input methods type them, are the same number
    (NFKC folds them to ASCII); digits of other scripts are refused.
    """
    text = unicodedata.normalize("NFKC", raw or "").strip().upper()
    if not _ID_NUMBER.match(text):
        raise InvalidInput(
            "id_number must be an 18-character resident ID number: 17 digits then a digit or X",
            field="id_number",
        )
    return text


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def require_text(value: str | None, field: str, *, max_length: int = 2000) -> str:
    """A non-blank string of bounded length, stripped, or a refusal naming the field."""
    text = (value or "").strip() if isinstance(value, str | None) else None
    if not text:
        raise InvalidInput(f"{field} is required and may not be blank", field=field)
    if len(text) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters", field=field)
    if _CONTROL.search(text):
        # Control characters (NUL above all) have no place in a record and cannot be
        # stored in PostgreSQL text columns of the read models.
        raise InvalidInput(f"{field} contains control characters", field=field)
    return text


def optional_text(value: str | None, field: str, *, max_length: int = 2000) -> str | None:
    """Like ``require_text`` but blank means None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return require_text(value, field, max_length=max_length)
