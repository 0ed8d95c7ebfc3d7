"""Request and response bodies, named by role. Unknown fields are refused; strings are bounded."""

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Short = Annotated[str, Field(min_length=1, max_length=200)]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2024-03"])]

_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE_FORMAT = "date_format"  # the error type problems.py words as "<field> must be ..."


def day_only(value: Any) -> Any:
    """Pass a date or a "YYYY-MM-DD" string on; refuse everything else pydantic would read as
    a date (a number of seconds, a datetime, "20240101")."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value  # from Python: the importer converts its lines' dates first
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        return value
    shown = repr(value)
    raise PydanticCustomError(
        DATE_FORMAT,
        "must be a date YYYY-MM-DD (got {got})",
        {"got": shown if len(shown) <= 60 else shown[:57] + "..."},
    )


# A business date: lax pydantic would store 1699920000 or "2024-01-01T00:00:00" as one.
Day = Annotated[date, BeforeValidator(day_only)]

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


def example(**fields: Any) -> ConfigDict:
    """A body's example for the OpenAPI document (tests/test_http_review.py checks it)."""
    return ConfigDict(json_schema_extra={"examples": [fields]})


class Command(BaseModel):
    """Fields every command body may carry (all a confirmation or acceptance takes)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"occurred_on": "2024-05-08"}]}
    )

    occurred_on: Day | None = Field(
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
    model_config = example(
        code="daning-center",
        name="闸北区大宁社区（街道）党员服务中心",
        kind="service_center",
        region="上海·闸北",
        parent_unit_id="sh-org-dept",
    )

    code: Code = Field(examples=["daning-center"])
    name: Short = Field(examples=["闸北区大宁社区（街道）党员服务中心"])
    kind: Literal["workplace", "service_center", "school", "org_department", "external"]
    region: Short = Field(examples=["上海·闸北"])
    parent_unit_id: Code | None = None


class UnitRename(Command):
    model_config = example(name="静安区大宁路街道党群服务中心", occurred_on="2015-11-04")

    name: Short


class UnitDissolution(Command):
    model_config = example(successor_unit_id="jingan-center", occurred_on="2015-11-04")

    successor_unit_id: Code | None = None


class Enrolment(Command):
    model_config = example(
        name="张三",
        id_number="310109195001010022",
        standing="probationary",
        household_region="上海·虹口",
        probation_started_on="2024-01-10",
        developing_unit_id="sh-univ",
    )

    name: Annotated[str, Field(min_length=1, max_length=100)] = Field(examples=["张三"])
    id_number: Annotated[str, Field(min_length=18, max_length=18)] = Field(
        examples=["310109195001010022"],
        description="resident ID number; only a keyed hash is stored",
    )
    standing: Literal["probationary", "full"]
    household_region: Short = Field(examples=["上海·虹口"])
    probation_started_on: Day | None = None
    developing_unit_id: Code | None = None
    holder_unit_id: Code | None = None


class PriorContact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    who: Short
    answer: Text


class Inquiry(Command):
    model_config = example(
        channel="walk_in",
        summary="毕业后无固定工作，申请将组织关系转入居住地",
        prior_contacts=[{"who": "原单位人事", "answer": "单位没有党组织"}],
    )

    channel: Channel
    summary: Text = Field(examples=["毕业后无固定工作，申请将组织关系转入居住地"])
    prior_contacts: Annotated[list[PriorContact], Field(max_length=20)] = []


class Requirements(Command):
    model_config = example(documents=["租赁合同", "介绍信"])

    documents: Annotated[list[Short], Field(min_length=1, max_length=50)]


class Evidence(Command):
    model_config = example(kind="lease", reference="租赁合同 2024-17", valid_until="2030-01-01")

    kind: EvidenceKind
    reference: Short
    valid_until: Day | None = None


class ArchiveReview(Command):
    model_config = example(finding="档案齐全，入党材料完整")

    finding: Text


class OriginContact(Command):
    model_config = example(outcome="reached", contacted_unit_id="sh-univ")

    outcome: ContactOutcome
    contacted_unit_id: Code | None = None
    contacted_name: Short | None = None


class Consultation(Command):
    model_config = example(consulted_unit_id="hongkou-center", note="通报情况，请协助核实居住地")

    consulted_unit_id: Code
    note: Text


class Introduction(Command):
    model_config = example(purpose="查阅个人档案", to_name="区档案管理部门")

    purpose: Text
    to_unit_id: Code | None = None
    to_name: Short | None = None


class Hold(Command):
    model_config = example(rule="R3", note="等待回执", until="2030-04-01")

    rule: Annotated[str, Field(min_length=1, max_length=50)] = Field(examples=["R3"])
    note: Text
    until: Day | None = None


class PerformanceReport(Command):
    model_config = example(
        to_unit_id="sh-residence-center", covering_from="2024-01-10", covering_to="2024-03-20"
    )

    to_unit_id: Code
    covering_from: Day
    covering_to: Day


class Letter(Command):
    model_config = example(
        letter_no="2024-001",
        to_unit_id="sh-residence-center",
        dues_paid_through="2024-02",
        valid_until="2030-04-30",
    )

    letter_no: Annotated[str, Field(min_length=1, max_length=50)] = Field(examples=["2006-001"])
    to_unit_id: Code
    dues_paid_through: Month
    valid_until: Day | None = None
    special_circumstances: Text | None = None


class LetterDecline(Command):
    model_config = example(
        letter_no="2024-001", reason_code="no_residence_evidence", note="未见居住证明"
    )

    letter_no: Annotated[str, Field(min_length=1, max_length=50)]
    reason_code: DeclineReason
    note: Text | None = None


class LetterVoid(Command):
    model_config = example(letter_no="2024-002", reason="介绍信遗失")

    letter_no: Annotated[str, Field(min_length=1, max_length=50)]
    reason: Text


class LetterRef(Command):
    model_config = example(letter_no="2024-003")

    letter_no: Annotated[str, Field(min_length=1, max_length=50)]


class Referral(Command):
    model_config = example(
        to_unit_id="sh-residence-center", handover="warm", reason="现居住地在该中心辖区"
    )

    to_unit_id: Code
    handover: Handover
    reason: Text


class ReferralDecline(Command):
    model_config = example(reason_code="not_our_area", note="已搬离本辖区")

    reason_code: DeclineReason
    note: Text | None = None


class Attachment(Command):
    model_config = example(basis="residence", letter_no="2024-004")

    basis: Basis
    letter_no: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    override_reason: Text | None = None


class Withdrawal(Command):
    model_config = example(reason="本人撤回申请")

    reason: Text


class Dues(Command):
    model_config = example(months_from="2024-05", months_to="2024-07", amount="4.50")

    months_from: Month
    months_to: Month
    amount: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class Activity(Command):
    model_config = example(kind="组织生活会")

    kind: Short = Field(examples=["组织生活会"])


class Contact(Command):
    model_config = example(channel="phone", note="通知参加组织生活")

    channel: Channel
    note: Text


class ProbationExtension(Command):
    model_config = example(months=6)

    months: Annotated[int, Field(strict=True, ge=1, le=12)]


class EntryVoid(Command):
    model_config = example(voided=42, reason="记错了日期")

    voided: Annotated[int, Field(strict=True, ge=1, le=2**62)] = Field(
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


class Me(BaseModel):
    unit_id: str
    unit_name: str | None = Field(description="None when the unit is no longer registered")
    role: Literal["unit", "auditor", "admin"]
    holder: str
    expires_on: date | None = Field(description="the last day the token acts")


class MemberMatch(BaseModel):
    member_id: str
    name: str = Field(description="masked")


class TokenIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_id: Code
    role: Literal["unit", "auditor", "admin"]
    holder: Short
    expires_on: Day | None = None


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
    current_version: int | None = Field(
        None, description="STALE_VERSION: the version the member is at now (send it as If-Match)"
    )


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
