"""Applicant ratings (好差评) and the follow-up of bad ones.

After a case ends with the department's decision the applicant rates the service once, on five levels (5 非常满意 …
1 非常不满意), with an optional comment; a city platform's record may carry the rating its own applicant gave
(``result.satisfaction``, schemas/case-record.v1.json) and it is stored the same way, source ``partner``. A rating
of 2 (不满意) or worse opens a follow-up for the case's department, due in 15 working days (one province's rule,
/work/shared/reference/domain-facts.md); the department records what it did, supervisors over the region see
every follow-up and which are overdue. Supervision of licensing by the people's governments and by the higher
organs: Administrative Licensing Law Arts. 10 and 60; the rating system itself: 国办发〔2019〕51号
(政务服务"好差评"制度).

Services never commit. The comment is the applicant's own text: it is stored and shown to the applicant, the
department and supervisors, never published (the disclosure shows the level only), never put in an outbox
message and never logged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from hub import refcache
from hub.auth.models import Officer
from hub.auth.service import can_oversee_region
from hub.calendar.service import load_calendar
from hub.cases import service as cases
from hub.cases.models import Case
from hub.cases.schemas import CaseRating
from hub.clock import business_date
from hub.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from hub.org import service as org
from hub.org.models import Department, Region
from hub.outbox import service as outbox
from hub.outbox.models import OutboxMessage
from hub.pagination import Page, paginate
from hub.supervision.models import Rating
from workflow.registry import get_definition

LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
COMPLETION = "completion"  # the service event rated: the case's end (办结)
# 不满意 (2) or worse is a bad rating (差评): the department must follow it up.
FOLLOW_UP_AT_OR_BELOW = 2
FOLLOW_UP_WORKING_DAYS = 15
APPLICANT, PARTNER = "applicant", "partner"
RECEIVED = "rating.received.v1"


# --- rating a case ---------------------------------------------------------------------------------


def rate(session: Session, *, case: Case, level: int, comment: str | None, now: datetime) -> Rating:
    """The applicant's rating of the case's completion; 409 before the case ended with a decision, on a case a
    partner platform handles (its applicants rate it there; the platform's record brings the rating), and on a
    second rating. Inserted with ON CONFLICT DO NOTHING, so two requests at once store one rating and the other
    gets the same 409 as a later one."""
    cases.check_system_of_record(case)
    _ensure_rateable(case)
    values = _values(session, case, level=level, comment=comment, source=APPLICANT, now=now)
    rating_id = session.execute(_insert_once(session, values)).scalar()
    if rating_id is None:
        raise already_rated(case)
    rating = session.get_one(Rating, rating_id)
    session.add(_received(case, rating, now))
    return rating


def already_rated(case: Case) -> Conflict:
    return Conflict(f"办件 {case.tracking_no} 已评价，每个办件每项服务只能评价一次 "
                    "(the case was rated already: one rating per case and service event)", type_slug="already-rated")


def _ensure_rateable(case: Case) -> None:
    """Rated once it has ended with the department's answer (办结, or 不予受理): not before, not a withdrawal."""
    ended = get_definition(case.workflow_id).is_terminal(case.state) and case.completed_at is not None
    if not ended or case.state == "withdrawn":
        raise Conflict(f"办件 {case.tracking_no} 尚未办结，办结后才能评价 (a case is rated after its completion)",
                       type_slug="case-not-completed")


def _values(session: Session, case: Case, *, level: int, comment: str | None, source: str,
            now: datetime) -> dict[str, Any]:
    follow_up = level <= FOLLOW_UP_AT_OR_BELOW
    return {
        "case_id": case.id, "service_event": COMPLETION, "level": level, "comment": comment, "source": source,
        "rated_at": now, "department_id": case.department_id, "region_code": case.region_code,
        "follow_up_status": "open" if follow_up else None,
        "follow_up_due_on": follow_up_due_on(session, now) if follow_up else None,
    }


def follow_up_due_on(session: Session, now: datetime) -> date:
    """15 working days after the day of the rating (the day itself not counted), on the hub's calendar."""
    return load_calendar(session).add_working_days(business_date(now), FOLLOW_UP_WORKING_DAYS)


def _insert_once(session: Session, values: dict[str, Any]) -> Any:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return (insert(Rating).values(**values)
            .on_conflict_do_nothing(index_elements=["case_id", "service_event"]).returning(Rating.id))


def _received(case: Case, rating: Rating, now: datetime) -> OutboxMessage:
    """``rating.received.v1``: which case, level and source, whether a follow-up is due: no comment (the
    applicant's free text) and no personal data."""
    payload: dict[str, Any] = {
        "tracking_no": case.tracking_no, "item_code": case.item.code, "department": case.department.key,
        "region": case.region_code, "service_event": rating.service_event, "level": rating.level,
        "level_label": LEVELS[rating.level], "source": rating.source,
        "follow_up_due_on": rating.follow_up_due_on.isoformat() if rating.follow_up_due_on else None,
    }
    if case.origin_partner:
        payload["origin_partner"] = case.origin_partner
    return outbox.message(event_type=RECEIVED, region_code=case.region_code, payload=payload, occurred_at=now,
                          correlation_id=case.tracking_no)


# --- ratings in partner records --------------------------------------------------------------------

_PARTNER_KEY = "hub.supervision.partner_ratings"


def record_partner_rating(session: Session, *, case: Case, level: int, now: datetime, new_case: bool) -> (
        OutboxMessage | None):
    """The rating a partner platform's record carries (``result.satisfaction``), stored with source ``partner``.

    The platform is the case's system of record and sends its whole case again with each change, so a later
    record's level replaces the one held (a bad one opens the follow-up then); only the first is announced. Its
    outbox message is returned for the caller to write with the record's own (hub/exchange/service.py batches
    them). No query for a case the record itself opened, and none that flushes: a batch of records is flushed
    once (the new rating goes in with its case, after it)."""
    held = _partner_rating_held(session, case, new_case=new_case)
    if held is not None:
        if held.level != level:
            _relevel(session, held, level, now)
        return None
    rating = Rating(**_values(session, case, level=level, comment=None, source=PARTNER, now=now))
    rating.case = case  # its id once the case is flushed
    session.add(rating)
    session.info.setdefault(_PARTNER_KEY, {})[id(case)] = rating
    return _received(case, rating, now)


def prefetch_partner_ratings(session: Session, case_ids: Sequence[int]) -> None:
    """Read the completion ratings of ``case_ids`` in one query, for ``record_partner_rating`` to find there
    instead of one query per record (a batch of partner records: hub/exchange/service.py); until
    ``forget_prefetched_ratings``."""
    known: dict[int, Rating | None] = dict.fromkeys(case_ids)
    if known:
        with session.no_autoflush:
            for rating in session.scalars(select(Rating).where(Rating.case_id.in_(list(known)),
                                                               Rating.service_event == COMPLETION)):
                known[rating.case_id] = rating
    session.info[_PREFETCHED_KEY] = known


def forget_prefetched_ratings(session: Session) -> None:
    session.info.pop(_PREFETCHED_KEY, None)


_PREFETCHED_KEY = "hub.supervision.partner_ratings_prefetched"


def _partner_rating_held(session: Session, case: Case, *, new_case: bool) -> Rating | None:
    pending = session.info.get(_PARTNER_KEY, {}).get(id(case))
    if pending is not None and pending in session and pending.case is case:
        return pending  # this transaction's, not flushed yet (or its savepoint was not rolled back)
    if new_case or case.id is None:
        return None
    known = session.info.get(_PREFETCHED_KEY)
    if known is not None and case.id in known and (known[case.id] is None or known[case.id] in session):
        return known[case.id]  # read with the batch's other look-ups, before anything of it was written
    with session.no_autoflush:
        return session.scalar(select(Rating).where(Rating.case_id == case.id, Rating.service_event == COMPLETION))


def _relevel(session: Session, rating: Rating, level: int, now: datetime) -> None:
    rating.level = level
    if level <= FOLLOW_UP_AT_OR_BELOW and rating.follow_up_status is None:
        rating.follow_up_status = "open"
        rating.follow_up_due_on = follow_up_due_on(session, now)


# --- views -------------------------------------------------------------------------------------------


def case_rating(rating: Rating) -> CaseRating:
    return CaseRating(
        service_event=rating.service_event, level=rating.level, level_label=LEVELS[rating.level],
        comment=rating.comment, source=rating.source,  # type: ignore[arg-type]
        rated_at=rating.rated_at, follow_up_status=rating.follow_up_status,  # type: ignore[arg-type]
        follow_up_due_on=rating.follow_up_due_on,
    )


def rating_of(session: Session, case: Case) -> Rating | None:
    if case.id is None:
        return None
    return session.scalar(select(Rating).where(Rating.case_id == case.id, Rating.service_event == COMPLETION))


def is_overdue(rating: Rating, today: date) -> bool:
    """An open follow-up past its day, or one recorded after it."""
    if rating.follow_up_due_on is None:
        return False
    if rating.follow_up_status == "done" and rating.followed_up_at is not None:
        return business_date(rating.followed_up_at) > rating.follow_up_due_on
    return today > rating.follow_up_due_on


# --- follow-ups ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FollowUp:
    """A bad rating's follow-up with what a list shows beside it."""

    rating: Rating
    tracking_no: str
    item_name: str
    department: Department
    overdue: bool


def record_follow_up(session: Session, *, rating_id: int, officer: Officer, note: str, now: datetime) -> FollowUp:
    """The department's follow-up of a bad rating: what it found and did (回访整改). Any officer of the case's
    department; for anyone else, and for a rating without a follow-up, the same 404 as an unknown id. A second
    record: 409."""
    rating = session.get(Rating, rating_id)
    if rating is None or rating.follow_up_status is None or rating.department_id != officer.department_id:
        raise follow_up_not_found(rating_id)
    if rating.follow_up_status == "done":
        raise _follow_up_done(rating_id)
    # Only while still open: of two officers recording at once, one gets the 409.
    changed = session.execute(
        update(Rating).where(Rating.id == rating_id, Rating.follow_up_status == "open")
        .values(follow_up_status="done", follow_up_note=note, followed_up_by=officer.username, followed_up_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.expire(rating)
    if not changed:
        raise _follow_up_done(rating_id)
    return _follow_ups(session, [rating], business_date(now))[0]


def _follow_up_done(rating_id: int) -> Conflict:
    return Conflict(f"差评 {rating_id} 已办理回访整改 (the follow-up was recorded already)", type_slug="follow-up-done")


def follow_up_not_found(rating_id: int) -> NotFound:
    return NotFound(f"差评回访 {rating_id} 不存在 (unknown follow-up)")


def list_follow_ups(
    session: Session, *, officer: Officer, region: str | None, department: str | None, status: str | None,
    overdue: bool | None, today: date, offset: int, limit: int,
) -> Page[FollowUp]:
    """Follow-ups of bad ratings, the nearest due first. A supervisor sees those of his region and below
    (``region``: one of them, with its own descendants); a department's officer those of his department."""
    query = select(Rating).where(Rating.follow_up_status.is_not(None))
    query = _scoped(session, query, officer=officer, region=region)
    if department is not None:
        query = query.where(Rating.department_id == _department_id(session, department))
    if status is not None:
        query = query.where(Rating.follow_up_status == status)
    if overdue is True:
        query = query.where(Rating.follow_up_status == "open", Rating.follow_up_due_on < today)
    elif overdue is False:
        query = query.where((Rating.follow_up_status == "done") | (Rating.follow_up_due_on >= today))
    page = paginate(session, query, order_by=[Rating.follow_up_due_on, Rating.id], offset=offset, limit=limit)
    return Page(page.total, page.offset, page.limit, _follow_ups(session, page.rows, today))


def _scoped(session: Session, query: Select[tuple[Rating]], *, officer: Officer, region: str | None) -> Any:
    if "supervisor" not in officer.roles:
        if region is not None and region != officer.region_code:
            raise Forbidden("只有监察人员可以按地区查看差评回访 (only supervisors list follow-ups by region)")
        return query.where(Rating.department_id == officer.department_id)
    wanted = region or officer.region_code
    if session.get(Region, wanted) is None:
        raise ValidationFailed([FieldError("region", "region_exists", f"行政区划 {wanted} 不存在 (unknown region)")])
    if not can_oversee_region(session, officer, wanted):
        raise Forbidden(f"无权查看行政区划 {wanted} 的差评回访 (outside the supervisor's region)")
    return query.where(Rating.region_code.in_(region_and_below(session, wanted)))


def region_and_below(session: Session, code: str) -> list[str]:
    """The region and every region below it, from the cached region tree (hub/refcache.py)."""
    parents = refcache.lookup(session, refcache.REGIONS, "parents",
                              lambda: dict(session.execute(select(Region.code, Region.parent_code)).all()))
    return sorted(child for child in parents if org.is_within(session, region_code=child, ancestor=code))


def _department_id(session: Session, key: str) -> int:
    try:
        return org.department_by_key(session, key).id
    except NotFound as exc:
        raise ValidationFailed([FieldError("department", "department_exists", exc.detail)]) from exc


def _follow_ups(session: Session, ratings: Sequence[Rating], today: date) -> list[FollowUp]:
    """Each rating with its case's number and item and its department: one query for the page."""
    ids = {rating.case_id for rating in ratings}
    rows = {case.id: case for case in session.scalars(select(Case).where(Case.id.in_(ids)))} if ids else {}
    return [FollowUp(rating, rows[rating.case_id].tracking_no, rows[rating.case_id].item.name,
                     rows[rating.case_id].department, is_overdue(rating, today)) for rating in ratings]

