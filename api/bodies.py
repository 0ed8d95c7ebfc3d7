"""Commands' fields checked as the HTTP API checks its request bodies.

The import and the command line decide through the same Registry methods as the
HTTP API; each action's fields go through that action's request body first, so
that a field the API refuses (too long, an amount with three decimals, an unknown
choice) is refused the same way whichever way it comes.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import Field, TypeAdapter, ValidationError

from api.http import schemas
from domain.errors import InvalidInput

# action → the HTTP API's body for it: a line's fields are checked as a request's are.
BODIES: dict[str, type[schemas.Command]] = {
    "unit": schemas.UnitRegistration,
    "unit-rename": schemas.UnitRename,
    "unit-dissolve": schemas.UnitDissolution,
    "enrol": schemas.Enrolment,
    "inquiry": schemas.Inquiry,
    "requirements": schemas.Requirements,
    "evidence": schemas.Evidence,
    "archive-review": schemas.ArchiveReview,
    "origin-contact": schemas.OriginContact,
    "consult": schemas.Consultation,
    "introduce": schemas.Introduction,
    "hold": schemas.Hold,
    "report": schemas.PerformanceReport,
    "letter": schemas.Letter,
    "letter-decline": schemas.LetterDecline,
    "letter-void": schemas.LetterVoid,
    "letter-expire": schemas.LetterRef,
    "receipt": schemas.LetterRef,
    "refer": schemas.Referral,
    "referral-accept": schemas.Command,
    "referral-decline": schemas.ReferralDecline,
    "attach": schemas.Attachment,
    "withdraw": schemas.Withdrawal,
    "dues": schemas.Dues,
    "activity": schemas.Activity,
    "contact": schemas.Contact,
    "confirm": schemas.Command,
    "extend-probation": schemas.ProbationExtension,
}
# What a line may carry besides its body: where the HTTP API takes them from the path
# (the case), a header (If-Match) or the URL (the unit renamed or dissolved).
EXTRAS: dict[str, TypeAdapter[Any]] = {
    "case_id": TypeAdapter(UUID | None),  # null: the open case, as when left out
    "expected_version": TypeAdapter(Annotated[int, Field(ge=0, le=2**62)] | None),
    "code": TypeAdapter(schemas.Code),
}


def checked(action: str, fields: dict[str, Any], what: str = "line") -> dict[str, Any]:
    """The fields of an import line or a command line (``what``) as the Registry method's
    arguments, each of the type it takes.

    The action's own fields are validated by the HTTP API's body for it (the same names,
    types, bounds and choices); they may also carry a member action's
    ``expected_version``, a case action's ``case_id`` and a unit change's ``code``.
    """
    model = BODIES[action]
    own = {k: v for k, v in fields.items() if k in model.model_fields}
    try:
        kwargs = schemas.plain(model.model_validate(own))
    except ValidationError as e:
        raise _invalid(action, e, None, what) from None
    for name in sorted(fields.keys() - own.keys()):
        try:
            kwargs[name] = EXTRAS[name].validate_python(fields[name])
        except ValidationError as e:
            raise _invalid(action, e, name, what) from None
    return kwargs


def _invalid(
    action: str, error: ValidationError, extra: str | None, what: str
) -> InvalidInput:
    """The first thing pydantic found wrong, as a refusal that names the field."""
    found = error.errors(include_url=False)[0]
    where = [str(part) for part in found.get("loc", ())]
    field = where[0] if where else extra
    path = ".".join(([extra] if extra else []) + where) or field
    if found["type"] == "missing":
        article = "an" if action[:1] in ("a", "e", "i", "o") else "a"  # a unit, an inquiry
        return InvalidInput(f"{article} {action} {what} needs {path}", field=field)
    shown = repr(found.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return InvalidInput(f"{path}: {found['msg']} (got {shown})", field=field)
