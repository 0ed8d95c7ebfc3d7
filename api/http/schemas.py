"""Request and response bodies, named by role. Unknown fields are refused; strings are bounded."""

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Short = Annotated[str, Field(min_length=1, max_length=200)]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2024-03"])]

Channel = Literal["walk_in", "phone", "letter", "online"]
EvidenceKind = Literal[
    "labour_contract", "employment_proof", "lease", "property_certificate", "household_registration"
]
ContactOutcome = Literal["reached", "unreachable", "found_superior", "no_record"]
Handover = Literal["warm", "cold"]
Basis = Literal["workplace", "residence", "household", "other"]
DeclineReason = Literal[
    "not_our_area", "no_residence_evidence", "no_employment_evidence", "member_unreachable", "other"
]


class Command(BaseModel):
    """Fields every command body may carry."""

    model_config = ConfigDict(extra="forbid")

    occurred_on: date | None = Field(
        None,
        description="business date (default: today, Asia/Shanghai); past dates record"
        " paper records, future dates are refused",
    )
    unit_id: Code | None = Field(
        None,
        description="the acting unit; it always comes from your credential — if you"
        " send it, it must be your own unit (otherwise 403)",
    )


class UnitRegistration(Command):
    code: Code = Field(examples=["daning-center"])
    name: Short = Field(examples=["闸北区大宁社区（街道）党员服务中心"])
    kind: Literal["workplace", "service_center", "school", "org_department", "external"]
    region: Short = Field(examples=["上海·闸北"])
    parent_unit_id: Code | None = None


class UnitRename(Command):
    name: Short


class UnitDissolution(Command):
    successor_unit_id: Code | None = None


class Enrolment(Command):
    name: Annotated[str, Field(min_length=1, max_length=100)] = Field(examples=["张三"])
    id_number: Annotated[str, Field(min_length=18, max_length=18)] = Field(
        examples=["310109195001010022"],
        description="resident ID number; only a keyed hash is stored",
    )
    standing: Literal["probationary", "full"]
    household_region: Short = Field(examples=["上海·虹口"])
    probation_started_on: date | None = None
    developing_unit_id: Code | None = None
    holder_unit_id: Code | None = None


class PriorContact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    who: Short
    answer: Text


class Inquiry(Command):
    channel: Channel
    summary: Text = Field(examples=["毕业后无固定工作，申请将组织关系转入居住地"])
    prior_contacts: Annotated[list[PriorContact], Field(max_length=20)] = []


class Requirements(Command):
    documents: Annotated[list[Short], Field(min_length=1, max_length=50)]


class Evidence(Command):
    kind: EvidenceKind
    reference: Short
    valid_until: date | None = None


class ArchiveReview(Command):
    finding: Text


class OriginContact(Command):
    outcome: ContactOutcome
    contacted_unit_id: Code | None = None
    contacted_name: Short | None = None


class Consultation(Command):
    consulted_unit_id: Code
    note: Text


class Introduction(Command):
    purpose: Text
    to_unit_id: Code | None = None
    to_name: Short | None = None


class Hold(Command):
    rule: Annotated[str, Field(min_length=1, max_length=50)] = Field(examples=["R3"])
    note: Text
    until: date | None = None


class PerformanceReport(Command):
    to_unit_id: Code
    covering_from: date
    covering_to: date


class Letter(Command):
    letter_no: Annotated[str, Field(min_length=1, max_length=50)] = Field(examples=["2006-001"])
    to_unit_id: Code
    dues_paid_through: Month
    valid_until: date | None = None
    special_circumstances: Text | None = None


class LetterDecline(Command):
    letter_no: Annotated[str, Field(min_length=1, max_length=50)]
    reason_code: DeclineReason
    note: Text | None = None


class LetterVoid(Command):
    letter_no: Annotated[str, Field(min_length=1, max_length=50)]
    reason: Text


class LetterRef(Command):
    letter_no: Annotated[str, Field(min_length=1, max_length=50)]


class Referral(Command):
    to_unit_id: Code
    handover: Handover
    reason: Text


class ReferralDecline(Command):
    reason_code: DeclineReason
    note: Text | None = None


class Attachment(Command):
    basis: Basis
    letter_no: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    override_reason: Text | None = None


class Withdrawal(Command):
    reason: Text


class Dues(Command):
    months_from: Month
    months_to: Month
    amount: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class Activity(Command):
    kind: Short = Field(examples=["组织生活会"])


class Contact(Command):
    channel: Channel
    note: Text


class ProbationExtension(Command):
    months: Annotated[int, Field(ge=1, le=12)]


class EntryVoid(Command):
    voided: Annotated[int, Field(ge=1, le=2**62)] = Field(
        description="log position of the entry to void"
    )
    reason: Text


class CommandResult(BaseModel):
    """What a recorded command returns."""

    position: int | None = Field(
        description="log position of the command's last event;"
        " pass it as min_position to read your own write"
    )
    member_id: UUID | None = None
    case_id: UUID | None = None
    version: int | None = Field(None, description="the stream version now (for If-Match)")
    first_responder: str | None = None
    unit_id: str | None = None
    replayed: bool = Field(
        False,
        description="true when an Idempotency-Key repeated an"
        " earlier command: nothing new was stored",
    )


class MemberMatch(BaseModel):
    member_id: str
    name: str = Field(description="masked")


class TokenIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_id: Code
    role: Literal["unit", "auditor", "admin"]
    holder: Short
    expires_on: date | None = None


def plain(model: BaseModel) -> dict[str, Any]:
    """The body's fields as keyword arguments (without the credential-owned ones)."""
    return model.model_dump(exclude={"unit_id", "occurred_on"})


class Problem(BaseModel):
    """An error (RFC 9457 problem details); `code` is stable, `field` names the culprit."""

    type: str = Field(examples=["urn:harbor:problem:R2_NOT_HOLDER"])
    title: str
    status: int
    code: str = Field(examples=["R2_NOT_HOLDER"])
    detail: str
    field: str | None = None
    instance: str
    errors: list[dict[str, Any]] | None = None


def problem_responses() -> dict[int | str, dict[str, Any]]:
    """The error responses every operation may give, as problem+json."""
    described = {
        401: "no valid token",
        403: "the token's unit or role may not do this",
        404: "unknown member, case or unit",
        409: "a rule refuses it, or the member moved",
        413: "body too large",
        422: "malformed or invalid input",
        503: "store unreachable or projections behind: retry",
    }
    return {
        status: {"description": text, "model": Problem, "content": {"application/problem+json": {}}}
        for status, text in described.items()
    }
