"""Queries: members, histories, cases, queues, scorecards, findings (also as CSV)."""

import contextlib
import re
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from api.http import schemas as s
from api.http.deps import (
    AuditCaller,
    Caller,
    CaughtUp,
    Forbidden,
    KnownQuery,
    ModelsDep,
    ReaderCaller,
    RegistryDep,
    caught_up,
    reader,
    refuse_unknown_query,
)
from api.http.lean import (
    Errors,
    LeanRoute,
    path_uuid,
    query_date,
    query_position,
    raise_if_invalid,
    run_by,
)
from api.http.read_members import ReadMembers
from api.spreadsheet import (
    FINDING_COLUMNS,
    QUEUE_COLUMNS,
    ROSTER_COLUMNS,
    SCORECARD_COLUMNS,
    csv_text,
)
from domain.errors import InvalidInput, NotFound
from domain.member_state import Case, MemberState
from domain.registry import Registry
from projections.history import member_history
from projections.history import member_status as status_as_it_stood
from projections.history import roster as roster_as_it_stood
from projections.judgements import DUE_WITHIN_DAYS, DUE_WITHIN_MAX
from projections.queries import (
    MAX_OFFSET,
    MEMBER_STATUS_SQL,
    ROSTER_LIMIT,
    ROSTER_PAGE,
    ReadModels,
)
from store.async_reads import AsyncReads

MEMBER_STATUS_PG_SQL = MEMBER_STATUS_SQL.replace("?", "%s")

# Unknown parameters first: refused before any wait for min_position.
router = APIRouter(dependencies=[KnownQuery, CaughtUp], responses=s.problem_responses())

OnQuery = Annotated[
    s.Day | None,
    Query(description="judge time-dependent rules on this date (default: today, Asia/Shanghai)"),
]


def may_read_member(registry: Registry, caller: Caller, member_id: UUID) -> None:
    """A unit reads members it holds, members on the way to it, and cases it took part in."""
    if caller.role == "unit":
        may_read_state(caller, registry.member(member_id).state, registry)


def may_read_state(caller: Caller, state: MemberState, registry: Registry | None = None) -> None:
    """``may_read_member`` for a member already loaded: the status (holder, status, open
    case) is for every unit that may read anything of the member — a unit that took part
    in one of its cases included, so that it can see where the member went. Without the
    registry, the parent or successor of a dissolved holder is not recognised (it takes a
    unit's read): Forbidden then means "ask again with it"."""
    member_scope(caller, state, registry)


def member_scope(
    caller: Caller, state: MemberState, registry: Registry | None = None
) -> tuple[UUID, ...] | None:
    """What of a member the caller reads: None for all of it, else only these cases.

    A unit reads the whole member (every case, every trail entry) while it holds the
    member or the member is in transit to it (the outstanding letter's addressee), or
    when it stands in for a dissolved holder as its parent or successor — the units R2
    lets issue the orphaned member's letter, who must see them to do it; a unit that only
    took part in cases reads those cases and nothing else of the member (DESIGN.md
    "Security"). Auditors read everything. Forbidden when the unit may read nothing of
    the member.
    """
    if caller.role != "unit":
        return None
    unit = caller.credential.unit_id
    if unit in (state.holder_unit_id, state.in_transit_to):
        return None
    if registry is not None and stands_in_for_holder(registry, unit, state):
        return None
    cases = tuple(case_id for case_id, case in state.cases.items() if took_part(unit, case))
    if not cases:
        raise Forbidden(
            f"{unit} neither holds this member, nor receives them, nor took part"
            " in their cases; record an inquiry first if they came to you"
        )
    return cases


def stands_in_for_holder(registry: Registry, unit_id: str, state: MemberState) -> bool:
    """The member's holder is dissolved and ``unit_id`` is its parent or successor (R2, R8)."""
    if state.holder_unit_id is None:
        return False
    try:
        holder = registry.unit(state.holder_unit_id, "holder_unit_id")
    except NotFound:
        return False
    return holder.dissolved_on is not None and unit_id in (
        holder.parent_unit_id,
        holder.successor_unit_id,
    )


def took_part(unit_id: str, case: Case) -> bool:
    """A unit took part in a case when it acted in it, a referral was addressed to it or
    it was consulted (asked to coordinate, it needs to see what it is asked about)."""
    return (
        unit_id in case.participants
        or unit_id in case.consulted
        or any(r.to_unit_id == unit_id for r in case.referrals)
    )


def limit_history(found: dict[str, Any], cases: tuple[UUID, ...] | None) -> dict[str, Any]:
    """A member's history cut down to ``cases`` (None: left whole).

    Only those cases, their trail entries and their findings are kept: entries outside
    any case (enrolment, dues, contacts, activities not in a case) and other cases are
    left out. ``limited_to_cases`` says which cases the answer was limited to (null when
    it is the whole history). Replayed to an earlier date or position, the member's
    standing, holder and letter in transit then are left out too (null): asked date by
    date, they would tell the holders and letters of every other case.
    """
    if cases is None:
        return {**found, "limited_to_cases": None}
    kept = [str(c) for c in cases]
    keep = set(kept)
    replayed = any(found.get(k) is not None for k in ("as_of", "as_recorded", "position"))
    hidden = ("standing", "holder_unit_id", "since", "in_transit_to") if replayed else ()
    return {
        **found,
        **dict.fromkeys(hidden),
        "cases": [c for c in found["cases"] if c["case_id"] in keep],
        "trail": [t for t in found["trail"] if t["case_id"] in keep],
        "findings": [f for f in found["findings"] if f["case_id"] in keep],
        "limited_to_cases": kept,
    }


def may_read_unit(registry: Registry, caller: Caller, unit_id: str) -> None:
    """A unit reads its own and its sub-units' queues and scorecards, and those of a
    dissolved unit it succeeded (what was left waiting there is now its business)."""
    if caller.role != "unit" or unit_id == caller.credential.unit_id:
        return
    seen: set[str] = set()
    code: str | None = unit_id
    while code is not None and code not in seen:
        seen.add(code)
        unit = registry.unit(code)
        if unit.dissolved_on is not None and unit.successor_unit_id == caller.credential.unit_id:
            return
        code = unit.parent_unit_id
        if code == caller.credential.unit_id:
            return
    raise Forbidden(
        f"{caller.credential.unit_id} may read only its own and its sub-units'"
        " queues and scorecards, and those of a dissolved unit it succeeded"
    )


def _wants_csv(request: Request) -> bool:
    """CSV only when the client prefers text/csv to application/json (a tie stays JSON)."""
    accept = request.headers.get("accept", "")
    csv_q = accept_quality(accept, "text/csv")
    return csv_q > 0 and csv_q > accept_quality(accept, "application/json")


_Q = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def accept_quality(accept: str, media: str) -> float:
    """The q an Accept header gives ``media``, from its most specific matching range
    (RFC 9110 §12.5.1: text/csv before text/* before */*; case-insensitive); 0 if none."""
    wanted = media.lower()
    ranges = (wanted, wanted.split("/")[0] + "/*", "*/*")
    best: tuple[int, float] | None = None  # (rank in ``ranges``, q)
    for part in accept.split(","):
        kind, *params = part.split(";")
        kind = kind.strip().lower()
        if kind not in ranges:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                found = _Q.fullmatch(value.strip())
                q = float(found.group()) if found else 0.0  # a malformed q accepts nothing
        rank = ranges.index(kind)
        if best is None or rank < best[0]:
            best = (rank, q)
    return best[1] if best else 0.0


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Response:
    return Response(csv_text(rows, columns), media_type="text/csv; charset=utf-8")


def _mask(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1)


@router.get("/members", response_model=list[s.MemberMatch], tags=["members"])
def find_members(
    q: Annotated[str, Query(min_length=1, max_length=100, description="ID number, or a name")],
    caller: ReaderCaller,
    registry: RegistryDep,
    models: ModelsDep,
) -> list[s.MemberMatch]:
    """Look a member up by ID number (hashed the same way) or name: id and masked name only."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in q):
        raise InvalidInput("q contains control characters", field="q")
    matches: dict[str, str] = {}
    try:
        member_id = registry.member_id_for(q)
    except InvalidInput:
        member_id = None
    if member_id is not None:
        with contextlib.suppress(NotFound):
            matches[str(member_id)] = registry.member(member_id).state.name
    for found_id, name in models.members_named(q):
        matches[found_id] = name
    return [s.MemberMatch(member_id=k, name=_mask(v)) for k, v in matches.items()]


_STATUS_JSON: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


async def _member_status_lean(request: Request) -> Response:
    """``member_status`` without FastAPI's per-request machinery (api/http/lean.py)."""
    refuse_unknown_query(request)  # the router's first dependency
    errors: Errors = []
    min_position = query_position(request, "min_position", errors)
    if min_position is not None:  # the router's dependency, which runs first
        await caught_up(request, min_position)
    caller = await reader(request)
    member_id = path_uuid(request, "member_id", errors)
    on = query_date(request, "on", errors)
    raise_if_invalid(errors)
    status = await _member_status_now(request, member_id, caller, on)
    return Response(_STATUS_JSON.dump_json(status), media_type="application/json")


@run_by(_member_status_lean)
async def member_status(
    request: Request, member_id: UUID, caller: ReaderCaller, on: OnQuery = None
) -> dict[str, Any]:
    """Holder, status (attached / in_transit / held / orphaned), open case, ledger colour."""
    return await _member_status_now(request, member_id, caller, on)


router.add_api_route(
    "/members/{member_id}",
    member_status,
    methods=["GET"],
    tags=["members"],
    route_class_override=LeanRoute,
)


async def _member_status_now(
    request: Request, member_id: UUID, caller: Caller, on: date | None
) -> dict[str, Any]:
    # The busiest read takes the registry and read models from the app, not as dependencies
    # (each costs CPU on every request; see api/http/deps.py).
    registry: Registry = request.app.state.registry
    models: ReadModels = request.app.state.models
    reads: AsyncReads | None = getattr(request.app.state, "async_reads", None)
    if reads is None or (on is not None and on < registry.clock()):
        # SQLite, or an earlier day (the stream folded up to it): from a request thread,
        # like every other read.
        return await run_in_threadpool(_member_status, registry, caller, member_id, models, on)
    # PostgreSQL: awaited on the event loop, the most frequent read answers without
    # waiting for a request thread (store/async_reads.py).
    if caller.role == "unit":  # the stream's news (who may read) and the status, at once
        known: ReadMembers = request.app.state.read_members
        stored, rows = await reads.tail_and_rows(
            member_id, known.version(member_id), MEMBER_STATUS_PG_SQL, (str(member_id),)
        )
        state = known.advance(member_id, stored).state
        try:
            may_read_state(caller, state)
        except Forbidden:
            # Perhaps the parent or successor of a dissolved holder: that takes the holder's
            # record, which may need a read, so it is asked from a request thread.
            await run_in_threadpool(may_read_state, caller, state, registry)
    else:
        rows = await reads.rows(MEMBER_STATUS_PG_SQL, (str(member_id),))
    return models.status_from_rows(member_id, rows, on)


def _member_status(
    registry: Registry, caller: Caller, member_id: UUID, models: ReadModels, on: date | None
) -> dict[str, Any]:
    may_read_member(registry, caller, member_id)
    return status_as_it_stood(registry, models, member_id, on)


@router.get("/members/{member_id}/history", tags=["members"])
def history(
    member_id: UUID,
    caller: ReaderCaller,
    registry: RegistryDep,
    as_of: Annotated[s.Day | None, Query(description="what had happened by then")] = None,
    as_recorded: Annotated[s.Day | None, Query(description="what the registry knew then")] = None,
    position: Annotated[
        int | None, Query(ge=0, le=2**62, description="what the registry knew at this log position")
    ] = None,
) -> dict[str, Any]:
    """The member's trail, cases and findings — now, as of a date, or as recorded.

    A unit that holds the member, or to which the member is in transit, reads all of it;
    a unit that only took part in some of the member's cases reads those cases, their
    trail entries and findings only, and ``limited_to_cases`` lists them (null for a
    whole history).
    """
    cases = (
        member_scope(caller, registry.member(member_id).state, registry)
        if caller.role == "unit"
        else None
    )
    found = member_history(
        registry, member_id, as_of=as_of, as_recorded=as_recorded, position=position
    )
    return limit_history(found, cases)


@router.get("/cases/{case_id}", tags=["cases"])
def case(
    case_id: UUID,
    caller: ReaderCaller,
    registry: RegistryDep,
    models: ModelsDep,
    on: OnQuery = None,
) -> dict[str, Any]:
    """The audit trail of one case: first responder, path, referrals, outcome."""
    data = models.case(case_id, on)
    if caller.role == "unit":
        unit = caller.credential.unit_id
        involved = set(data["participants"]) | {r["to"] for r in data["referrals"]}
        if unit not in involved:
            cases = member_scope(caller, registry.member(UUID(data["member_id"])).state, registry)
            if cases is not None and case_id not in cases:
                raise Forbidden(
                    f"{unit} took no part in case {case_id}, and neither holds its member"
                    " nor receives them: a unit reads only the cases it took part in, and"
                    " every case of the members it holds or receives; ask the holding unit"
                    " or an auditor"
                )
    return data


@router.get("/units/{unit_id}/queue", tags=["units"])
def queue(
    unit_id: str,
    caller: ReaderCaller,
    registry: RegistryDep,
    models: ModelsDep,
    request: Request,
    on: OnQuery = None,
    within: Annotated[
        int,
        Query(
            ge=0,
            le=DUE_WITHIN_MAX,
            description="预警: list the breaches against this unit that begin within this"
            f" many days unless someone acts (0: none; default {DUE_WITHIN_DAYS})",
        ),
    ] = DUE_WITHIN_DAYS,
) -> Any:
    """待办 (waiting for this unit), 未办结 (waiting for the other side), first-responder
    cases, and 预警 (``due_soon``: breaches against it that begin within ``within`` days
    unless someone acts, soonest first, each with what it can still do)."""
    unit_id = registry.unit(unit_id).code  # the code as stored: " x" reads x
    may_read_unit(registry, caller, unit_id)
    # Every member in a unit's own queue is one it may read (it holds them, receives them
    # or took part in their case); a parent reading a sub-unit's queue is not, so no names.
    names = caller.role != "unit" or unit_id == caller.credential.unit_id
    data = models.unit_queue(unit_id, on, names=names, within=within)
    if _wants_csv(request):
        rows = [
            {"queue": name, **item}
            for name in ("todo", "waiting_on_others", "first_responder_cases", "due_soon")
            for item in data[name]
        ]
        return _csv(rows, QUEUE_COLUMNS)
    return data


@router.get("/units/{unit_id}/members", tags=["units"])
def roster(
    unit_id: str,
    caller: ReaderCaller,
    registry: RegistryDep,
    models: ModelsDep,
    request: Request,
    on: OnQuery = None,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=ROSTER_LIMIT,
            description=f"members per page (default {ROSTER_PAGE}; as CSV, all)",
        ),
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="members to skip (the page's start)")
    ] = 0,
    after: Annotated[
        str | None,
        Query(
            max_length=4096,
            description="the page after this cursor: the `next_after` of the page before"
            " (pages that do not shift when members join or leave meanwhile; not with offset)",
        ),
    ] = None,
) -> Any:
    """在册: who is attached here — the members this unit holds, and those with a letter on
    the way to it (``relation`` held / arriving), by name, each with status and colour.
    As CSV (``Accept: text/csv``) the whole roster unless ``limit`` is given: a
    spreadsheet wants them all."""
    listed = registry.unit(unit_id)
    unit_id = listed.code  # the code as stored: " x" reads x
    if caller.role == "unit" and unit_id != caller.credential.unit_id:
        # DESIGN.md "Security": a unit reads the members it holds and receives; a parent
        # reads its sub-units' queues and scorecards, not their members.
        raise Forbidden(
            f"{caller.credential.unit_id} may list only its own members; "
            + (
                f"{unit_id} is dissolved, and the members it held are on the rosters of its"
                " parent and its successor (relation orphaned)"
                if listed.dissolved_on is not None
                else f"ask {unit_id} or an auditor"
            )
        )
    csv = _wants_csv(request)
    page = limit if limit is not None or csv else ROSTER_PAGE
    data = roster_as_it_stood(
        registry, models, unit_id, on, limit=page, offset=offset, after=after
    )
    if not csv:
        return data
    response = _csv(data["members"], ROSTER_COLUMNS)
    if data["next_after"] is not None:
        # A CSV body has no room for the cursor: the next page's address goes in a Link
        # header (RFC 8288), as paged APIs give it, with this page's other parameters.
        query = {k: v for k, v in request.query_params.items() if k not in ("after", "offset")}
        following = request.url.replace_query_params(**query, after=data["next_after"])
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return response


@router.get("/units/{unit_id}/scorecard", tags=["units"])
def scorecard(
    unit_id: str,
    caller: ReaderCaller,
    registry: RegistryDep,
    models: ModelsDep,
    request: Request,
    on: OnQuery = None,
) -> Any:
    """Answered first, seen through (句号), dropped (逗号), median days to attachment."""
    unit_id = registry.unit(unit_id).code  # the code as stored: " x" reads x
    may_read_unit(registry, caller, unit_id)
    cards = [c.as_dict() for c in models.scorecards(unit_id, on)]
    return _csv(cards, SCORECARD_COLUMNS) if _wants_csv(request) else cards[0]


@router.get("/scorecards", tags=["units"])
def scorecards(
    caller: ReaderCaller,
    registry: RegistryDep,
    models: ModelsDep,
    request: Request,
    on: OnQuery = None,
) -> Any:
    """Every unit's scorecard (a unit sees its own and its sub-units')."""
    cards = [c.as_dict() for c in models.scorecards(None, on)]
    if caller.role == "unit":
        allowed = []
        for card in cards:
            try:
                may_read_unit(registry, caller, card["unit_id"])
            except (Forbidden, NotFound):
                continue
            allowed.append(card)
        cards = allowed
    return _csv(cards, SCORECARD_COLUMNS) if _wants_csv(request) else cards


@router.get("/compliance/findings", tags=["compliance"])
def findings(
    caller: AuditCaller,
    registry: RegistryDep,
    models: ModelsDep,
    request: Request,
    rule: Annotated[str | None, Query(pattern=r"^R[1-9]$")] = None,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[str | None, Query(pattern=r"^(override|breach)$")] = None,
    open: Annotated[bool, Query(description="only unresolved findings")] = False,
    resolved: Annotated[bool, Query(description="only resolved findings")] = False,
    on: OnQuery = None,
) -> Any:
    """Compliance findings (rule, severity, member and its name, case, unit, since,
    resolved), judged on a date."""
    if open and resolved:
        raise InvalidInput("ask for open or for resolved findings, not both", field="resolved")
    if unit is not None:
        unit = registry.unit(unit, "unit").code  # the code as stored: " x" reads x
    found = models.findings(
        on=on, rule=rule, unit_id=unit, severity=severity, open_only=open, resolved_only=resolved
    )
    names = models.member_names({f.member_id for f in found})  # auditors read every member
    rows = [{**f.as_dict(), "member_name": names.get(f.member_id)} for f in found]
    return _csv(rows, FINDING_COLUMNS) if _wants_csv(request) else rows
