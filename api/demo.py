"""The article's two cases (seed/cases.md), command by command, as `harbor demo` loads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

from domain.errors import Conflict
from domain.registry import Actor, Registry

# (code, name, kind, parent, region) — the units table of cases.md.
ARTICLE_UNITS: list[tuple[str, str, str, str | None, str]] = [
    ("sh-org-dept", "上海市委组织部", "org_department", None, "上海"),
    ("sh-univ", "某高校党委", "school", None, "上海"),
    ("sh-residence-center", "居住地街道党员服务中心", "service_center", None, "上海"),
    ("home-county", "户籍所在地县委组织部", "external", None, "外省某县"),
    ("factory-superior", "原单位上级党委", "workplace", None, "上海"),
    ("zb-factory", "原企业党组织", "workplace", "factory-superior", "上海"),
    ("daning-center", "闸北区大宁社区（街道）党员服务中心", "service_center", None, "上海·闸北"),
    ("hongkou-center", "虹口区居住地党员服务中心", "service_center", None, "上海·虹口"),
]
UNITS_REGISTERED_ON = date(1990, 1, 1)
LIU_YANG_ID_NUMBER = "110101199001010011"
OLD_COMRADE_ID_NUMBER = "310109195001010022"


@dataclass(frozen=True)
class DemoMembers:
    """The member ids the demo created."""

    liu_yang: UUID
    old_comrade: UUID


def load_units(registry: Registry, recorded_by: str) -> None:
    """Register the article's units (skipping any already there)."""
    admin = Actor("sh-org-dept", recorded_by)
    for code, name, kind, parent, region in ARTICLE_UNITS:
        actor = Actor(code, recorded_by) if code == "sh-org-dept" else admin
        try:
            registry.register_unit(
                actor,
                code=code,
                name=name,
                kind=kind,
                region=region,
                parent_unit_id=parent,
                occurred_on=UNITS_REGISTERED_ON,
            )
        except Conflict as e:
            if e.code != "DUPLICATE_UNIT":
                raise


def _as(recorded_by: str, unit: str) -> Actor:
    return Actor(unit, recorded_by)


def load_case_1(registry: Registry, recorded_by: str) -> UUID:
    """刘洋: answered first by the residence centre, referred on cold — dropped."""

    member = registry.enrol_member(
        _as(recorded_by, "sh-univ"),
        name="刘洋",
        id_number=LIU_YANG_ID_NUMBER,
        standing="probationary",
        household_region="外省某县",
        occurred_on=date(2011, 3, 1),
        probation_started_on=date(2011, 3, 1),
        developing_unit_id="sh-univ",
        idempotency_key="demo-case-1-1",
    ).member_id
    assert member is not None
    registry.receive_inquiry(
        _as(recorded_by, "sh-residence-center"),
        member,
        occurred_on=date(2011, 7, 20),
        channel="walk_in",
        summary="毕业后无固定工作，申请将组织关系转入居住地",
        prior_contacts=[
            {
                "who": "工作单位负责人",
                "answer": "单位未建立党组织，且未签订劳动合同，请到居住地党员服务中心办理",
            }
        ],
        idempotency_key="demo-case-1-2",
    )
    registry.refer_case(
        _as(recorded_by, "sh-residence-center"),
        member,
        occurred_on=date(2011, 7, 20),
        to_unit_id="home-county",
        handover="cold",
        reason="无房产证或租赁合同，建议挂靠户籍所在地",
        idempotency_key="demo-case-1-3",
    )
    registry.receive_inquiry(
        _as(recorded_by, "sh-org-dept"),
        member,
        occurred_on=date(2011, 9, 1),
        channel="letter",
        summary="致信市委书记，倾诉对党组织的向往和困惑",
        idempotency_key="demo-case-1-4",
    )
    registry.receive_dues(
        _as(recorded_by, "sh-org-dept"),
        member,
        occurred_on=date(2011, 9, 1),
        months_from="2011-07",
        months_to="2011-09",
        amount="0.60",
        idempotency_key="demo-case-1-5",
    )
    return member


def load_case_2(registry: Registry, recorded_by: str) -> UUID:
    """The old comrade at the Daning centre: answered first and seen through."""

    member = registry.enrol_member(
        _as(recorded_by, "zb-factory"),
        name="老同志",
        id_number=OLD_COMRADE_ID_NUMBER,
        standing="full",
        household_region="上海·虹口",
        occurred_on=date(1990, 6, 1),
        idempotency_key="demo-case-2-1",
    ).member_id
    assert member is not None
    registry.receive_dues(
        _as(recorded_by, "zb-factory"),
        member,
        occurred_on=date(2004, 3, 15),
        months_from="2003-04",
        months_to="2004-03",
        amount="24.00",
        idempotency_key="demo-case-2-2",
    )
    registry.dissolve_unit(
        _as(recorded_by, "sh-org-dept"),
        "zb-factory",
        occurred_on=date(2004, 3, 31),
        idempotency_key="demo-case-2-3",
    )
    registry.receive_inquiry(
        _as(recorded_by, "daning-center"),
        member,
        occurred_on=date(2006, 5, 8),
        channel="walk_in",
        summary="称自己是党员，居住在虹口区，企业关闭回家两年多，无人通知参加组织活动",
        idempotency_key="demo-case-2-4",
    )
    registry.issue_introduction(
        _as(recorded_by, "daning-center"),
        member,
        occurred_on=date(2006, 5, 8),
        to_name="档案管理部门",
        purpose="查阅个人档案",
        idempotency_key="demo-case-2-5",
    )
    registry.review_archive(
        _as(recorded_by, "daning-center"),
        member,
        occurred_on=date(2006, 5, 10),
        finding="确认在原单位入党，未见组织关系转移证明",
        idempotency_key="demo-case-2-6",
    )
    registry.consult_unit(
        _as(recorded_by, "daning-center"),
        member,
        occurred_on=date(2006, 5, 11),
        consulted_unit_id="hongkou-center",
        note="通报情况，希望引起重视和配合",
        idempotency_key="demo-case-2-7",
    )
    registry.contact_origin(
        _as(recorded_by, "daning-center"),
        member,
        occurred_on=date(2006, 5, 20),
        contacted_unit_id="factory-superior",
        outcome="found_superior",
        idempotency_key="demo-case-2-8",
    )
    registry.issue_letter(
        _as(recorded_by, "factory-superior"),
        member,
        occurred_on=date(2006, 6, 1),
        letter_no="2006-001",
        to_unit_id="daning-center",
        valid_until=date(2006, 8, 30),
        dues_paid_through="2004-03",
        idempotency_key="demo-case-2-9",
    )
    registry.attach_member(
        _as(recorded_by, "daning-center"),
        member,
        occurred_on=date(2006, 6, 5),
        basis="other",
        letter_no="2006-001",
        override_reason="本人主动要求转入大宁社区党员服务中心",
        idempotency_key="demo-case-2-10",
    )
    registry.return_receipt(
        _as(recorded_by, "factory-superior"),
        member,
        occurred_on=date(2006, 6, 15),
        letter_no="2006-001",
        idempotency_key="demo-case-2-11",
    )
    registry.attend_activity(
        _as(recorded_by, "daning-center"),
        member,
        occurred_on=date(2006, 6, 20),
        kind="组织生活会",
        idempotency_key="demo-case-2-12",
    )
    return member


def load_article_cases(registry: Registry, recorded_by: str = "demo") -> DemoMembers:
    """Units and both cases; safe to run twice (idempotency keys make reruns add nothing)."""
    load_units(registry, recorded_by)
    return DemoMembers(load_case_1(registry, recorded_by), load_case_2(registry, recorded_by))
