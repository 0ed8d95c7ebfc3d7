"""Commands: each made as the calling unit; the body carries only the event's own fields."""

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Body, Request, Response

from api.http import schemas as s
from api.http.deps import (
    KEYED_HEADERS,
    VERSIONED_HEADERS,
    AdminCommand,
    Caller,
    CommandContext,
    Forbidden,
    TokensDep,
    UnitCommand,
    UnitEnrolment,
    in_thread,
    unit_command,
    unit_enrolment,
)
from api.http.lean import (
    Errors,
    Handler,
    LeanRoute,
    all_optional,
    body_as,
    json_body,
    path_uuid,
    raise_if_invalid,
    run_by,
)
from api.http.metrics import METRICS
from api.http.on_loop import on_loop
from api.http.routes.reads import member_scope
from domain.errors import CODES, Conflict, HarborError, InvalidInput, NotFound, RuleRefused
from domain.receipts import Outcome

router = APIRouter(responses=s.problem_responses())

# action path → (body, Registry method, what it does)
CASE_ACTIONS: dict[str, tuple[type[s.Command], str, str]] = {
    "requirements": (s.Requirements, "notify_requirements", "一次性告知: every document needed"),
    "evidence": (s.Evidence, "record_evidence", "Record a document the member showed"),
    "archive-reviews": (s.ArchiveReview, "review_archive", "Record what the personal file showed"),
    "origin-contacts": (s.OriginContact, "contact_origin", "Record a search for the original unit"),
    "consultations": (s.Consultation, "consult_unit", "Record coordination with another unit"),
    "introductions": (s.Introduction, "issue_introduction", "Issue an introduction letter"),
    "holds": (s.Hold, "hold_transfer", "Hold the transfer under a named rule"),
    "performance-reports": (
        s.PerformanceReport,
        "send_performance_report",
        "Record the performance report sent (R4)",
    ),
    "letters": (s.Letter, "issue_letter", "Issue the transfer letter (R2, R3, R4)"),
    "letter-declines": (s.LetterDecline, "decline_letter", "拒接: refuse a letter, with a cause"),
    "letter-voids": (s.LetterVoid, "void_letter", "The issuer withdraws its letter"),
    "letter-expiries": (s.LetterRef, "expire_letter", "An expired letter came back unused"),
    "receipts": (s.LetterRef, "return_receipt", "回执: the receipt reached the issuer"),
    "referrals": (s.Referral, "refer_case", "Refer the member to another unit (R5)"),
    "referral-acceptances": (s.Command, "accept_referral", "Take a referred case on"),
    "referral-declines": (s.ReferralDecline, "decline_referral", "Refuse a referral, with a cause"),
    "attachments": (s.Attachment, "attach_member", "Take the member in (R1, R2)"),
    "withdrawals": (s.Withdrawal, "withdraw_case", "Close the case without an attachment"),
}
MEMBER_ACTIONS: dict[str, tuple[type[s.Command], str, str]] = {
    "dues": (s.Dues, "receive_dues", "党费 received for whole months"),
    "activities": (s.Activity, "attend_activity", "An activity the member attended here"),
    "contacts": (s.Contact, "make_contact", "This unit reached the member"),
    "confirmation": (s.Command, "confirm_membership", "转正: the member becomes full"),
    "probation-extensions": (s.ProbationExtension, "extend_probation", "Extend probation"),
    "voids": (s.EntryVoid, "void_entry", "Void an entry by its log position (it stays, marked)"),
}
RENAMED = {"voided": "position"}
# The 201 is FastAPI's own; a repeated Idempotency-Key answers 200 (``_result``).
REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {
        "model": s.CommandResult,
        "description": "replayed: an Idempotency-Key repeated an earlier command; its"
        " outcome again (replayed: true), nothing new stored",
    }
}
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _post(
    path: str, tag: str, headers: dict[str, Any], lean: bool = False
) -> Callable[[Endpoint], Endpoint]:
    """A command route: 201 with the outcome, the command headers documented.

    ``lean``: run by the endpoint's ``lean`` handler (api/http/lean.py).
    """

    def add(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            response_model=s.CommandResult,
            status_code=201,
        responses=REPLAYED,
            tags=[tag],
            openapi_extra=headers,
            route_class_override=LeanRoute if lean else None,
        )
        return endpoint

    return add


def _acting(caller: Caller, body: s.Command) -> None:
    if body.unit_id is not None and body.unit_id != caller.credential.unit_id:
        raise Forbidden(
            f"your token acts for {caller.credential.unit_id}, not {body.unit_id}", field="unit_id"
        )


def _result(outcome: Outcome, response: Response, command: str) -> s.CommandResult:
    response.status_code = 200 if outcome.replayed else 201
    if not outcome.replayed:
        METRICS.command(command)
    return s.CommandResult(**{k: v for k, v in outcome.__dict__.items()})


def _response(outcome: Outcome, command: str) -> Response:
    """``_result`` as the response itself (the lean routes, api/http/lean.py)."""
    if not outcome.replayed:
        METRICS.command(command)
    result = s.CommandResult(**{k: v for k, v in outcome.__dict__.items()})
    return Response(
        result.model_dump_json(by_alias=True),
        status_code=200 if outcome.replayed else 201,
        media_type="application/json",
    )


async def _command(
    context: CommandContext, method: str, body: s.Command, *args: Any, **kwargs: Any
) -> Outcome:
    """Run a Registry command on the loop (its waits in a thread), as the caller, with the
    body's fields."""
    _acting(context.caller, body)
    fields = {RENAMED.get(k, k): v for k, v in s.plain(body).items()}
    call = partial(
        getattr(context.registry, method),
        context.caller.actor,
        *args,
        occurred_on=body.occurred_on,
        idempotency_key=context.idempotency_key,
        **fields,
        **kwargs,
    )
    try:
        outcome: Outcome = await on_loop(call)
    except (RuleRefused, Conflict, NotFound, InvalidInput) as refusal:
        if args and _tells_of_the_member(refusal) and not await in_thread(
            partial(_may_read, context, args[0], kwargs.get("case_id"))
        ):
            raise _without_details(refusal, context.caller.credential.unit_id) from None
        raise
    return outcome


def _tells_of_the_member(refusal: HarborError) -> bool:
    """A refusal whose message describes the member's record (holder, letters, dates,
    versions), not only the request's own fields."""
    if isinstance(refusal, InvalidInput):
        # "... before the member's enrolment on ...", "letter N was issued on ...": the
        # body's own fields are checked before the domain sees them.
        return refusal.code == "INVALID_DATE" or refusal.field == "occurred_on"
    if isinstance(refusal, NotFound):
        return refusal.field not in (None, "member_id")
    return True


def _may_read(context: CommandContext, member_id: Any, case_id: Any) -> bool:
    """Whether the caller may read what a refusal on this member (and case) would tell."""
    if context.caller.role != "unit":
        return True
    try:
        state = context.registry.member(member_id).state
    except HarborError:
        return True  # no such member: the refusal tells nothing of one
    try:
        cases = member_scope(context.caller, state, context.registry)
    except Forbidden:
        return False
    return cases is None or (case_id or state.open_case_id) in cases


def _without_details(refusal: HarborError, unit: str) -> HarborError:
    """The refusal as a unit that may not read the member is told it: the code, the field
    and what to do, without the record's details (DESIGN.md "Security")."""
    advice = CODES.get(refusal.code, "the command was refused")
    return type(refusal)(
        f"{advice}. {unit} may not read this member, so the details are not shown; ask the"
        " unit holding the member or an auditor, or record an inquiry if the member came to"
        " you",
        code=refusal.code,
        field=refusal.field,
    )


def _lean(
    model: type[s.Command],
    method: str,
    context_of: Callable[[Request], Awaitable[CommandContext]],
    *,
    member: bool = True,
    case: bool = False,
) -> Handler:
    """A command route's lean handler (api/http/lean.py): the member (and case) from the
    path, the body as ``model``, then ``method`` as the caller, as its endpoint does."""

    async def lean(request: Request) -> Response:
        data = await json_body(request)
        context = await context_of(request)
        errors: Errors = []
        args = [path_uuid(request, "member_id", errors)] if member else []
        kwargs: dict[str, Any] = {"case_id": path_uuid(request, "case_id", errors)} if case else {}
        body = body_as(model, data, errors)
        raise_if_invalid(errors, data)
        if member:
            kwargs["expected_version"] = context.expected_version
        return _response(await _command(context, method, body, *args, **kwargs), method)

    return lean


def body_of(model: type[s.Command]) -> Any:
    """The body parameter's type: a body with no required field may be left out (``{}``)."""
    if all_optional(model):
        return Annotated[model, Body(default_factory=model)]
    return model


def _case_route(path: str, model: type[s.Command], method: str, summary: str) -> None:
    async def endpoint(
        member_id: UUID,
        case_id: UUID,
        body: body_of(model),  # type: ignore[valid-type]
        context: UnitCommand,
        response: Response,
    ) -> s.CommandResult:
        outcome = await _command(
            context,
            method,
            body,
            member_id,
            case_id=case_id,
            expected_version=context.expected_version,
        )
        return _result(outcome, response, method)

    endpoint.__doc__ = summary
    run_by(_lean(model, method, unit_command, case=True))(endpoint)
    router.add_api_route(
        f"/members/{{member_id}}/cases/{{case_id}}/{path}",
        endpoint,
        methods=["POST"],
        response_model=s.CommandResult,
        status_code=201,
        responses=REPLAYED,
        summary=summary,
        name=method,
        tags=["case actions"],
        openapi_extra=VERSIONED_HEADERS,
        route_class_override=LeanRoute,
    )


def _member_route(path: str, model: type[s.Command], method: str, summary: str) -> None:
    async def endpoint(
        member_id: UUID,
        body: body_of(model),  # type: ignore[valid-type]
        context: UnitCommand,
        response: Response,
    ) -> s.CommandResult:
        outcome = await _command(
            context, method, body, member_id, expected_version=context.expected_version
        )
        return _result(outcome, response, method)

    endpoint.__doc__ = summary
    run_by(_lean(model, method, unit_command))(endpoint)
    router.add_api_route(
        f"/members/{{member_id}}/{path}",
        endpoint,
        methods=["POST"],
        response_model=s.CommandResult,
        status_code=201,
        responses=REPLAYED,
        summary=summary,
        name=method,
        tags=["member actions"],
        openapi_extra=VERSIONED_HEADERS,
        route_class_override=LeanRoute,
    )


@_post("/units", "units", KEYED_HEADERS)
async def register_unit(
    body: s.UnitRegistration, context: AdminCommand, response: Response
) -> s.CommandResult:
    """Register a unit (admin)."""
    outcome = await _command(context, "register_unit", body)
    return _result(outcome, response, "register_unit")


@_post("/units/{unit_id}/rename", "units", KEYED_HEADERS)
async def rename_unit(
    unit_id: str, body: s.UnitRename, context: AdminCommand, response: Response
) -> s.CommandResult:
    """Record a unit's new name (admin)."""
    outcome = await _command(context, "rename_unit", body, unit_id)
    return _result(outcome, response, "rename_unit")


@_post("/units/{unit_id}/dissolution", "units", KEYED_HEADERS)
async def dissolve_unit(
    unit_id: str,
    body: Annotated[s.UnitDissolution, Body(default_factory=s.UnitDissolution)],
    context: AdminCommand,
    tokens: TokensDep,
    response: Response,
) -> s.CommandResult:
    """Record that a unit no longer exists; its tokens are revoked (admin)."""
    outcome = await _command(context, "dissolve_unit", body, unit_id)
    # The unit as the domain named it: a path with spaces around the code is the same unit.
    await in_thread(partial(tokens.revoke_unit, outcome.unit_id or unit_id))
    return _result(outcome, response, "dissolve_unit")


@_post("/members", "members", KEYED_HEADERS, lean=True)
@run_by(_lean(s.Enrolment, "enrol_member", unit_enrolment, member=False))
async def enrol_member(
    body: s.Enrolment, context: UnitEnrolment, response: Response
) -> s.CommandResult:
    """Enrol a member (409 DUPLICATE_MEMBER for a known ID number)."""
    outcome = await _command(context, "enrol_member", body)
    return _result(outcome, response, "enrol_member")


@_post("/members/{member_id}/inquiries", "members", VERSIONED_HEADERS, lean=True)
@run_by(_lean(s.Inquiry, "receive_inquiry", unit_command))
async def receive_inquiry(
    member_id: UUID, body: s.Inquiry, context: UnitCommand, response: Response
) -> s.CommandResult:
    """The member came forward here: returns the case (new, or the open one) and its first
    responder. Any unit may record an inquiry — first-inquiry responsibility never stops at a
    permission screen."""
    outcome = await _command(
        context, "receive_inquiry", body, member_id, expected_version=context.expected_version
    )
    return _result(outcome, response, "receive_inquiry")


for _path, (_model, _method, _summary) in CASE_ACTIONS.items():
    _case_route(_path, _model, _method, _summary)
for _path, (_model, _method, _summary) in MEMBER_ACTIONS.items():
    _member_route(_path, _model, _method, _summary)
