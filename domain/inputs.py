"""Turning what clients send (strings, dicts) into domain values, or refusals naming the field."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from uuid import UUID

from domain.errors import Conflict, InvalidInput
from domain.values import PriorContact


def as_uuid(value: UUID | str, field: str) -> UUID:
    """A UUID from a client's string, or a refusal naming the field."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{field} must be a UUID (got {value!r})", field=field) from None


def as_optional_uuid(value: UUID | str | None, field: str) -> UUID | None:
    """Like ``as_uuid``; None stays None."""
    return None if value is None else as_uuid(value, field)


def as_decimal(value: Decimal | str | int, field: str) -> Decimal:
    """A non-negative decimal amount, or a refusal naming the field."""
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(
            f"{field} must be a decimal number (got {value!r})", field=field
        ) from None
    if not result.is_finite() or result < 0:
        raise InvalidInput(f"{field} must be a non-negative number", field=field)
    if int(result.as_tuple().exponent) > 0:  # 1e3: kept and shown as 1000, not 1E+3
        result = result.quantize(Decimal(1))
    return result


def as_prior_contact(value: PriorContact | dict[str, str], index: int) -> PriorContact:
    """A prior contact from ``{who, answer}``."""
    if isinstance(value, PriorContact):
        return value
    if not isinstance(value, dict) or set(value) - {"who", "answer"}:
        raise InvalidInput("a prior contact is {who, answer}", field=f"prior_contacts[{index}]")
    return PriorContact(who=value.get("who", ""), answer=value.get("answer", ""))


def letter_no_taken(issuer: str, year: int, number: str) -> Conflict:
    """The LETTER_NO_TAKEN refusal."""
    return Conflict(
        f"{issuer} already used letter number {number} in {year}; take the next number",
        code="LETTER_NO_TAKEN",
        field="letter_no",
    )
