"""ROD persistence: pupils, enrolments, decisions and the feedback outbox, all inside the caller's transaction.

The one way a decision changes is `reevaluate_pupil`: it loads every enrolment
of a pupil, asks the pure rules (services.rod.funding) for the new decisions,
stores them, and writes a feedback row to the outbox for every enrolment whose
decision or signals changed, all in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from services._gen.registry.v1 import brp_pb2, rod_pb2
from services.common.clock import real_now
from services.common.database import lock_log_for_append
from services.common.dates import from_proto_date, to_proto_date, to_timestamp
from services.common.errors import FieldViolation
from services.common.identifiers import is_valid_bsn, make_onderwijsnummer
from services.rod import funding
from services.rod.tables import (
    ALL_SANDBOXES,
    RodDocument,
    RodEnrolment,
    RodEnrolmentPeriod,
    RodFeedback,
    RodFundingDecision,
    RodIdempotentResponse,
    RodOnderwijsnummerSerial,
    RodPupil,
    RodRioEnd,
    RodStreamCursor,
    RodSubscriberAck,
)

FEEDBACK_LOG = "rod_feedback"
# ROD's subscriber name for BRP follow indications (volgindicaties): it follows every pupil it enrols.
FOLLOWER = "rod"
ACTIVE, ENDED, DELETED = "ACTIVE", "ENDED", "DELETED"
_STATUS = {
    ACTIVE: rod_pb2.ENROLMENT_STATUS_ACTIVE,
    ENDED: rod_pb2.ENROLMENT_STATUS_ENDED,
    DELETED: rod_pb2.ENROLMENT_STATUS_DELETED,
}


def lock_pupils(session: Session, *, sandbox_id: str, pupil_numbers: Sequence[str]) -> None:
    """Serialises work on the same pupils until this transaction ends.

    Two schools registering the same pupil at once must each see the other's
    enrolment. On PostgreSQL: advisory locks per pupil, in sorted order and
    before the outbox lock, so two transactions never wait in a circle. On
    SQLite (one writer at a time): take the write lock now, so that what this
    transaction reads next cannot change before it writes.
    """
    if session.get_bind().dialect.name != "postgresql":
        session.execute(text("UPDATE rod_stream_cursor SET cursor = cursor WHERE 1 = 0"))
        return
    for number in sorted(set(pupil_numbers)):
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"rod_pupil:{sandbox_id}:{number}"}
        )


# --- pupils ---


def pupil_id(pupil_number: str) -> rod_pb2.PupilId:
    if is_valid_bsn(pupil_number):
        return rod_pb2.PupilId(bsn=pupil_number)
    return rod_pb2.PupilId(onderwijsnummer=pupil_number)


def find_pupil(session: Session, *, sandbox_id: str, pupil_number: str) -> RodPupil | None:
    return session.exec(
        select(RodPupil).where(RodPupil.sandbox_id == sandbox_id, RodPupil.pupil_number == pupil_number)
    ).first()


@dataclass(frozen=True)
class PupilDetails:
    """A pupil as a school describes them (for identification without a BSN)."""

    given_names: str
    surname_prefix: str
    surname: str
    birth_date: dt.date
    sex: int
    postcode: str
    house_number: int
    house_number_addition: str


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def find_same_pupil(session: Session, *, sandbox_id: str, details: PupilDetails) -> RodPupil | None:
    """A known pupil without BSN with the same name, birth date and address (postcode + house number)."""
    candidates = session.exec(
        select(RodPupil).where(
            RodPupil.sandbox_id == sandbox_id,
            RodPupil.birth_date == details.birth_date,
            col(RodPupil.has_bsn).is_(False),
        )
    ).all()
    for pupil in candidates:
        if (
            _norm(pupil.surname) == _norm(details.surname)
            and _norm(pupil.surname_prefix) == _norm(details.surname_prefix)
            and _norm(pupil.given_names) == _norm(details.given_names)
            and pupil.postcode.replace(" ", "").upper() == details.postcode.replace(" ", "").upper()
            and pupil.house_number == details.house_number
            and _norm(pupil.house_number_addition) == _norm(details.house_number_addition)
        ):
            return pupil
    return None


def allocate_onderwijsnummer(session: Session, *, sandbox_id: str) -> str:
    """The next free onderwijsnummer of the sandbox ("10" + serial + check digit; serials without one are skipped)."""
    counter = session.exec(
        select(RodOnderwijsnummerSerial).where(RodOnderwijsnummerSerial.sandbox_id == sandbox_id).with_for_update()
    ).first()
    if counter is None:
        counter = RodOnderwijsnummerSerial(sandbox_id=sandbox_id, next_serial=1)
    serial = counter.next_serial
    number = make_onderwijsnummer(serial)
    while number is None:
        serial += 1
        number = make_onderwijsnummer(serial)
    counter.next_serial = serial + 1
    session.add(counter)
    return number


def identify_without_bsn(session: Session, *, sandbox_id: str, details: PupilDetails) -> tuple[str, bool]:
    """(onderwijsnummer, newly assigned): the existing number of the same pupil, else a new one."""
    # One identification at a time per sandbox, so the same pupil identified twice at once gets one number.
    lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=["onderwijsnummer-allocator"])
    known = find_same_pupil(session, sandbox_id=sandbox_id, details=details)
    if known is not None:
        return known.pupil_number, False
    number = allocate_onderwijsnummer(session, sandbox_id=sandbox_id)
    session.add(
        RodPupil(
            sandbox_id=sandbox_id,
            pupil_number=number,
            has_bsn=False,
            given_names=details.given_names,
            surname_prefix=details.surname_prefix,
            surname=details.surname,
            birth_date=details.birth_date,
            sex=details.sex,
            postcode=details.postcode.replace(" ", "").upper(),
            house_number=details.house_number,
            house_number_addition=details.house_number_addition,
        )
    )
    session.flush()
    return number, True


@dataclass(frozen=True)
class BrpFacts:
    """What ROD keeps of a BRP person."""

    bsn: str
    birth_date: dt.date | None
    death_date: dt.date | None
    emigration_date: dt.date | None
    sequence: int
    given_names: str = ""
    surname_prefix: str = ""
    surname: str = ""
    sex: int = 0


def brp_facts(person: brp_pb2.Person, *, bsn: str = "", sequence: int = 0) -> BrpFacts:
    """ROD's facts of a BRP person (a change's own sequence wins when the person copy lacks one)."""
    return BrpFacts(
        bsn=bsn or person.bsn,
        birth_date=from_proto_date(person.birth_date) if person.HasField("birth_date") else None,
        death_date=from_proto_date(person.death_date) if person.HasField("death_date") else None,
        emigration_date=from_proto_date(person.emigration_date) if person.HasField("emigration_date") else None,
        sequence=max(person.last_sequence, sequence),
        given_names=person.given_names,
        surname_prefix=person.surname_prefix,
        surname=person.surname,
        sex=int(person.sex),
    )


def store_brp_facts(session: Session, *, sandbox_id: str, facts: BrpFacts, create: bool) -> bool:
    """Records BRP facts of a person; True when the dates that matter for funding changed.

    An older state (lower BRP sequence) never overwrites a newer one. With
    create=False, a person ROD holds no enrolment for is ignored.
    """
    pupil = find_pupil(session, sandbox_id=sandbox_id, pupil_number=facts.bsn)
    if pupil is None:
        if not create:
            return False
        pupil = RodPupil(sandbox_id=sandbox_id, pupil_number=facts.bsn, has_bsn=True)
    elif facts.sequence < pupil.brp_sequence:
        return False
    before = (pupil.birth_date, pupil.death_date, pupil.emigration_date)
    pupil.birth_date, pupil.death_date, pupil.emigration_date = (
        facts.birth_date,
        facts.death_date,
        facts.emigration_date,
    )
    pupil.given_names, pupil.surname_prefix, pupil.surname = facts.given_names, facts.surname_prefix, facts.surname
    pupil.sex = facts.sex
    pupil.brp_sequence = facts.sequence
    session.add(pupil)
    session.flush()
    return before != (pupil.birth_date, pupil.death_date, pupil.emigration_date)


# --- documents ---


# The enrolment id of a document ROD rejected: it is remembered (one rejected feedback per
# document) but is no duplicate, so the school may send it again once the cause is fixed.
REJECTED_DOCUMENT = ""


def document_seen(session: Session, *, sandbox_id: str, document_id: str) -> bool:
    """Whether a processed (not rejected) document with this id was received."""
    row = session.get(RodDocument, (sandbox_id, document_id))
    return row is not None and row.enrolment_id != REJECTED_DOCUMENT


def record_document(session: Session, *, sandbox_id: str, document_id: str, enrolment_id: str) -> None:
    row = session.get(RodDocument, (sandbox_id, document_id))
    if row is None:
        row = RodDocument(
            sandbox_id=sandbox_id, document_id=document_id, enrolment_id=enrolment_id, received_at=real_now()
        )
    # A rejected document sent again and now processed becomes a received one.
    row.enrolment_id = enrolment_id
    row.received_at = real_now()
    session.add(row)


# --- enrolments ---


@dataclass(frozen=True)
class PeriodIn:
    """A period as a school sent it, with the RIO offering it was checked against."""

    begin: dt.date
    end: dt.date | None
    location_code: str
    course_code: str
    year: int
    offering_id: str
    offering_end: dt.date | None


def get_enrolment(session: Session, *, sandbox_id: str, enrolment_id: str) -> RodEnrolment | None:
    enrolment = session.get(RodEnrolment, enrolment_id)
    if enrolment is None or enrolment.sandbox_id != sandbox_id:
        return None
    return enrolment


def periods_of(session: Session, enrolment_id: str) -> list[RodEnrolmentPeriod]:
    return list(
        session.exec(
            select(RodEnrolmentPeriod)
            .where(RodEnrolmentPeriod.enrolment_id == enrolment_id)
            .order_by(col(RodEnrolmentPeriod.position))
        ).all()
    )


def replace_periods(session: Session, *, enrolment: RodEnrolment, periods: Sequence[PeriodIn]) -> None:
    session.execute(delete(RodEnrolmentPeriod).where(col(RodEnrolmentPeriod.enrolment_id) == enrolment.enrolment_id))
    for position, period in enumerate(periods):
        session.add(
            RodEnrolmentPeriod(
                sandbox_id=enrolment.sandbox_id,
                enrolment_id=enrolment.enrolment_id,
                position=position,
                begin_date=period.begin,
                end_date=period.end,
                location_code=period.location_code,
                course_code=period.course_code,
                year=period.year,
                offering_id=period.offering_id,
                offering_end_date=period.offering_end,
            )
        )
    session.flush()


def next_registered_order(session: Session, *, sandbox_id: str) -> int:
    highest = session.exec(
        select(func.max(RodEnrolment.registered_order)).where(RodEnrolment.sandbox_id == sandbox_id)
    ).one()
    return int(highest or 0) + 1


def decisions_of(session: Session, enrolment_id: str) -> list[RodFundingDecision]:
    return list(
        session.exec(
            select(RodFundingDecision)
            .where(RodFundingDecision.enrolment_id == enrolment_id)
            .order_by(col(RodFundingDecision.count_date))
        ).all()
    )


def decision_message(row: RodFundingDecision, today: dt.date) -> rod_pb2.FundingDecision:
    final = row.final or funding.is_final(row.count_date, today)
    return rod_pb2.FundingDecision(
        count_date=to_proto_date(row.count_date),
        funded=row.funded,
        status=rod_pb2.FUNDING_STATUS_FINAL if final else rod_pb2.FUNDING_STATUS_PROVISIONAL,
        reason_codes=row.reason_codes.split(),
        reason=row.reason,
    )


def period_message(row: RodEnrolmentPeriod) -> rod_pb2.EnrolmentPeriod:
    return rod_pb2.EnrolmentPeriod(
        begin_date=to_proto_date(row.begin_date),
        end_date=to_proto_date(row.end_date),
        location_code=row.location_code,
        course_code=row.course_code,
        year=row.year,
    )


def signal_messages(signals_json: str) -> list[rod_pb2.Signal]:
    return [
        rod_pb2.Signal(code=s["code"], text=s["text"], parameters=s["parameters"]) for s in json.loads(signals_json)
    ]


def enrolment_message(session: Session, enrolment: RodEnrolment, today: dt.date) -> rod_pb2.Enrolment:
    return rod_pb2.Enrolment(
        enrolment_id=enrolment.enrolment_id,
        pupil=pupil_id(enrolment.pupil_number),
        institution_code=enrolment.institution_code,
        periods=[period_message(p) for p in periods_of(session, enrolment.enrolment_id)],
        sequence=enrolment.sequence,
        status=_STATUS[enrolment.status],
        funding=[decision_message(d, today) for d in decisions_of(session, enrolment.enrolment_id)],
        updated_at=to_timestamp(enrolment.updated_at),
    )


def list_enrolments(
    session: Session,
    *,
    sandbox_id: str,
    institution_code: str,
    pupil_number: str,
    active_on: dt.date | None,
    after_id: str,
    limit: int,
) -> list[RodEnrolment]:
    query = select(RodEnrolment).where(RodEnrolment.sandbox_id == sandbox_id)
    if institution_code:
        query = query.where(RodEnrolment.institution_code == institution_code)
    if pupil_number:
        query = query.where(RodEnrolment.pupil_number == pupil_number)
    if after_id:
        query = query.where(col(RodEnrolment.enrolment_id) > after_id)
    if active_on is not None:
        covering = select(RodEnrolmentPeriod.enrolment_id).where(
            RodEnrolmentPeriod.sandbox_id == sandbox_id,
            col(RodEnrolmentPeriod.begin_date) <= active_on,
            (col(RodEnrolmentPeriod.end_date).is_(None)) | (col(RodEnrolmentPeriod.end_date) >= active_on),
        )
        query = query.where(RodEnrolment.status != DELETED, col(RodEnrolment.enrolment_id).in_(covering))
    return list(session.exec(query.order_by(col(RodEnrolment.enrolment_id)).limit(limit)).all())


# --- evaluation and the outbox ---


LOCATION, PROVIDER = "location", "provider"


def store_rio_end(session: Session, *, sandbox_id: str, kind: str, code: str, end: dt.date | None) -> bool:
    """Records (or, with end None, forgets) RIO's end of a location or provider; True when it changed."""
    row = session.get(RodRioEnd, (sandbox_id, kind, code))
    if (row.end_date if row else None) == end:
        return False
    if end is None:
        session.delete(row)
    elif row is None:
        session.add(RodRioEnd(sandbox_id=sandbox_id, kind=kind, code=code, end_date=end))
    else:
        row.end_date = end
        session.add(row)
    session.flush()
    return True


def rio_end(session: Session, *, sandbox_id: str, kind: str, code: str) -> dt.date | None:
    row = session.get(RodRioEnd, (sandbox_id, kind, code))
    return row.end_date if row else None


def pupils_at(session: Session, *, sandbox_id: str, kind: str, code: str) -> list[str]:
    """The pupils with an enrolment taught at a location, or at a school (institution code)."""
    query = select(RodEnrolment.pupil_number).where(RodEnrolment.sandbox_id == sandbox_id)
    if kind == LOCATION:
        at = select(RodEnrolmentPeriod.enrolment_id).where(
            RodEnrolmentPeriod.sandbox_id == sandbox_id, RodEnrolmentPeriod.location_code == code
        )
        query = query.where(col(RodEnrolment.enrolment_id).in_(at))
    else:
        query = query.where(RodEnrolment.institution_code == code)
    return sorted(set(session.exec(query).all()))


def _rio_ends(session: Session, sandbox_id: str, kind: str, codes: set[str]) -> dict[str, dt.date]:
    if not codes:
        return {}
    rows = session.exec(
        select(RodRioEnd).where(
            RodRioEnd.sandbox_id == sandbox_id, RodRioEnd.kind == kind, col(RodRioEnd.code).in_(sorted(codes))
        )
    ).all()
    return {row.code: row.end_date for row in rows}


def _earliest_end(**ends: dt.date | None) -> tuple[dt.date | None, str]:
    """The earliest of the named RIO ends and the record it belongs to (the offering's on a tie)."""
    known = [(day, record) for record, day in ends.items() if day is not None]
    if not known:
        return None, "offering"
    return min(known, key=lambda end: end[0])


def _facts(
    enrolment: RodEnrolment,
    periods: Sequence[RodEnrolmentPeriod],
    location_ends: dict[str, dt.date],
    provider_ends: dict[str, dt.date],
) -> funding.EnrolmentFacts:
    # An ended location or school ends every offering taught there: the earliest end counts.
    school_end = provider_ends.get(enrolment.institution_code)
    return funding.EnrolmentFacts(
        enrolment_id=enrolment.enrolment_id,
        institution_code=enrolment.institution_code,
        sector=funding.Sector(enrolment.sector),
        periods=tuple(
            funding.Period(
                p.begin_date,
                p.end_date,
                *_earliest_end(
                    offering=p.offering_end_date, location=location_ends.get(p.location_code), school=school_end
                ),
            )
            for p in periods
        ),
        registered_order=enrolment.registered_order,
        deleted=enrolment.status == DELETED,
    )


def _stored_decision(row: RodFundingDecision) -> funding.Decision:
    return funding.Decision(row.count_date, row.funded, row.final, tuple(row.reason_codes.split()), row.reason)


def _signals_json(signals: Sequence[funding.Signal]) -> str:
    return json.dumps(
        [{"code": s.code, "text": s.text, "parameters": dict(s.parameters)} for s in signals], sort_keys=True
    )


@dataclass(frozen=True)
class Cause:
    """What made ROD re-evaluate: the trigger for the enrolment the cause concerns, and for the others."""

    trigger: rod_pb2.FeedbackTrigger.ValueType
    # FeedbackCause.id: the school's document, the BRP message, "rio:<cursor>" or "teldatum:<date>".
    cause_id: str = ""
    enrolment_id: str = ""
    document_id: str = ""


def reevaluate_pupil(session: Session, *, sandbox_id: str, pupil_number: str, today: dt.date, cause: Cause) -> int:
    """Re-decides every enrolment of a pupil and writes feedback for each one that changed.

    The enrolment named by the cause always gets feedback (the school's own
    message was processed). Returns the cursor of that feedback, or 0.
    """
    lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[pupil_number])
    pupil = find_pupil(session, sandbox_id=sandbox_id, pupil_number=pupil_number)
    person = funding.PersonFacts(
        birth_date=pupil.birth_date if pupil else None,
        death_date=pupil.death_date if pupil else None,
        emigration_date=pupil.emigration_date if pupil else None,
    )
    enrolments = list(
        session.exec(
            select(RodEnrolment)
            .where(RodEnrolment.sandbox_id == sandbox_id, RodEnrolment.pupil_number == pupil_number)
            .order_by(col(RodEnrolment.registered_order))
        ).all()
    )
    ids = [e.enrolment_id for e in enrolments]
    periods: dict[str, list[RodEnrolmentPeriod]] = {eid: [] for eid in ids}
    for row in session.exec(
        select(RodEnrolmentPeriod)
        .where(col(RodEnrolmentPeriod.enrolment_id).in_(ids))
        .order_by(col(RodEnrolmentPeriod.position))
    ).all():
        periods[row.enrolment_id].append(row)
    stored: dict[str, list[RodFundingDecision]] = {eid: [] for eid in ids}
    for decision in session.exec(
        select(RodFundingDecision)
        .where(col(RodFundingDecision.enrolment_id).in_(ids))
        .order_by(col(RodFundingDecision.count_date))
    ).all():
        stored[decision.enrolment_id].append(decision)
    location_ends = _rio_ends(
        session, sandbox_id, LOCATION, {p.location_code for rows in periods.values() for p in rows}
    )
    provider_ends = _rio_ends(session, sandbox_id, PROVIDER, {e.institution_code for e in enrolments})
    facts = [_facts(e, periods[e.enrolment_id], location_ends, provider_ends) for e in enrolments]
    previous = {eid: [_stored_decision(r) for r in rows] for eid, rows in stored.items()}
    evaluations = funding.evaluate_pupil(facts, person, previous, today)
    cause_cursor = 0
    for enrolment in enrolments:
        evaluation = evaluations[enrolment.enrolment_id]
        signals = _signals_json(evaluation.signals)
        old = previous[enrolment.enrolment_id]
        changed = list(evaluation.decisions) != old or signals != enrolment.signals_json
        is_cause = enrolment.enrolment_id == cause.enrolment_id
        if not changed and not is_cause:
            continue
        if changed:
            _store_decisions(session, enrolment, stored[enrolment.enrolment_id], evaluation.decisions)
            enrolment.signals_json = signals
            session.add(enrolment)
        trigger = cause.trigger
        if not is_cause and trigger == rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE:
            trigger = rod_pb2.FEEDBACK_TRIGGER_OTHER_ENROLMENT
        cursor = append_feedback(
            session,
            enrolment=enrolment,
            evaluation=evaluation,
            trigger=trigger,
            cause_id=cause.cause_id or cause.document_id,
            document_id=cause.document_id if is_cause else "",
            today=today,
        )
        if is_cause:
            cause_cursor = cursor
    return cause_cursor


def _store_decisions(
    session: Session,
    enrolment: RodEnrolment,
    rows: Sequence[RodFundingDecision],
    decisions: Sequence[funding.Decision],
) -> None:
    for row in rows:
        session.delete(row)
    session.flush()
    for decision in decisions:
        session.add(
            RodFundingDecision(
                enrolment_id=enrolment.enrolment_id,
                count_date=decision.count_date,
                sandbox_id=enrolment.sandbox_id,
                institution_code=enrolment.institution_code,
                funded=decision.funded,
                final=decision.final,
                reason_codes=" ".join(decision.reason_codes),
                reason=decision.reason,
            )
        )


def outcome_of(evaluation: funding.Evaluation) -> rod_pb2.FeedbackOutcome.ValueType:
    return (
        rod_pb2.FEEDBACK_OUTCOME_APPROVED_WITH_SIGNAL if evaluation.has_signals else rod_pb2.FEEDBACK_OUTCOME_APPROVED
    )


def funding_messages(decisions: Sequence[funding.Decision]) -> list[rod_pb2.FundingDecision]:
    return [
        rod_pb2.FundingDecision(
            count_date=to_proto_date(d.count_date),
            funded=d.funded,
            status=rod_pb2.FUNDING_STATUS_FINAL if d.final else rod_pb2.FUNDING_STATUS_PROVISIONAL,
            reason_codes=list(d.reason_codes),
            reason=d.reason,
        )
        for d in decisions
    ]


def append_feedback(
    session: Session,
    *,
    enrolment: RodEnrolment,
    evaluation: funding.Evaluation,
    trigger: rod_pb2.FeedbackTrigger.ValueType,
    cause_id: str,
    document_id: str,
    today: dt.date,
) -> int:
    """Writes one feedback to the outbox in this transaction; returns its cursor."""
    lock_log_for_append(session, FEEDBACK_LOG)
    message = rod_pb2.Feedback(
        institution_code=enrolment.institution_code,
        enrolment_id=enrolment.enrolment_id,
        pupil=pupil_id(enrolment.pupil_number),
        outcome=outcome_of(evaluation),
        trigger=trigger,
        funding=funding_messages(evaluation.decisions),
        signals=[rod_pb2.Signal(code=s.code, text=s.text, parameters=dict(s.parameters)) for s in evaluation.signals],
        document_id=document_id,
        cause=rod_pb2.FeedbackCause(trigger=trigger, id=cause_id),
    )
    row = RodFeedback(
        sandbox_id=enrolment.sandbox_id,
        institution_code=enrolment.institution_code,
        enrolment_id=enrolment.enrolment_id,
        cause_id=cause_id,
        trigger=trigger,
        committed_at=real_now(),
        message=message.SerializeToString(),
    )
    session.add(row)
    session.flush()
    assert row.cursor is not None
    return row.cursor


def append_rejection(
    session: Session,
    *,
    sandbox_id: str,
    document_id: str,
    institution_code: str,
    enrolment_id: str,
    pupil: rod_pb2.PupilId | None,
    violations: Sequence[FieldViolation],
) -> int:
    """Writes the REJECTED feedback of a school's refused message; returns its cursor, or 0 when none is due.

    One per document id: a document already received (processed or rejected)
    gets none. For a message about an enrolment, the enrolment names the school
    and the pupil; without one (registration) the message does.
    """
    # Serialises two refusals of the same document, so only one writes its feedback.
    lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[f"document:{document_id}"])
    if session.get(RodDocument, (sandbox_id, document_id)) is not None:
        return 0
    if enrolment_id:
        enrolment = get_enrolment(session, sandbox_id=sandbox_id, enrolment_id=enrolment_id)
        if enrolment is None:
            return 0
        institution_code, pupil = enrolment.institution_code, pupil_id(enrolment.pupil_number)
    record_document(session, sandbox_id=sandbox_id, document_id=document_id, enrolment_id=REJECTED_DOCUMENT)
    lock_log_for_append(session, FEEDBACK_LOG)
    message = rod_pb2.Feedback(
        institution_code=institution_code,
        enrolment_id=enrolment_id,
        pupil=pupil,
        outcome=rod_pb2.FEEDBACK_OUTCOME_REJECTED,
        trigger=rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE,
        signals=[rod_pb2.Signal(code=v.code, text=v.description, parameters={"field": v.field}) for v in violations],
        document_id=document_id,
        cause=rod_pb2.FeedbackCause(trigger=rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE, id=document_id),
    )
    row = RodFeedback(
        sandbox_id=sandbox_id,
        institution_code=institution_code,
        enrolment_id=enrolment_id,
        cause_id=document_id,
        trigger=rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE,
        committed_at=real_now(),
        message=message.SerializeToString(),
    )
    session.add(row)
    session.flush()
    assert row.cursor is not None
    return row.cursor


def feedback_message(row: RodFeedback) -> rod_pb2.Feedback:
    message = rod_pb2.Feedback.FromString(row.message)
    message.cursor = row.cursor or 0
    message.committed_at.CopyFrom(to_timestamp(row.committed_at))
    return message


def read_feedback(
    session: Session, *, sandbox_id: str | None, institution_codes: Sequence[str], after: int, limit: int = 500
) -> list[rod_pb2.Feedback]:
    """Feedback after a cursor, in cursor order, for some schools (all when empty) of one sandbox (all when None)."""
    query = select(RodFeedback).where(col(RodFeedback.cursor) > after)
    if sandbox_id is not None:
        query = query.where(RodFeedback.sandbox_id == sandbox_id)
    if institution_codes:
        query = query.where(col(RodFeedback.institution_code).in_(list(institution_codes)))
    rows = session.exec(query.order_by(col(RodFeedback.cursor)).limit(limit)).all()
    return [feedback_message(row) for row in rows]


def list_feedback(
    session: Session,
    *,
    sandbox_id: str,
    cause_id: str,
    trigger: int,
    institution_code: str,
    enrolment_id: str,
    after: int,
    limit: int,
) -> list[rod_pb2.Feedback]:
    """Feedback of one sandbox matching the filters (empty means any), after a cursor, in cursor order."""
    query = select(RodFeedback).where(RodFeedback.sandbox_id == sandbox_id, col(RodFeedback.cursor) > after)
    if cause_id:
        query = query.where(RodFeedback.cause_id == cause_id)
    if trigger:
        query = query.where(RodFeedback.trigger == trigger)
    if institution_code:
        query = query.where(RodFeedback.institution_code == institution_code)
    if enrolment_id:
        query = query.where(RodFeedback.enrolment_id == enrolment_id)
    rows = session.exec(query.order_by(col(RodFeedback.cursor)).limit(limit)).all()
    return [feedback_message(row) for row in rows]


# --- subscribers ---


def acknowledged(session: Session, *, sandbox_id: str, subscriber: str) -> int:
    row = session.get(RodSubscriberAck, (sandbox_id, subscriber))
    return row.cursor if row else 0


def acknowledge(session: Session, *, sandbox_id: str, subscriber: str, cursor: int) -> int:
    """Moves the subscriber's acknowledged cursor forward (never back); returns it."""
    row = session.get(RodSubscriberAck, (sandbox_id, subscriber))
    if row is None:
        row = RodSubscriberAck(sandbox_id=sandbox_id, subscriber=subscriber, cursor=cursor, updated_at=real_now())
    else:
        row.cursor = max(row.cursor, cursor)
        row.updated_at = real_now()
    session.add(row)
    return row.cursor


# --- funding counts ---


def funded_enrolment_ids(session: Session, *, sandbox_id: str, institution_code: str, count_date: dt.date) -> list[str]:
    return list(
        session.exec(
            select(RodFundingDecision.enrolment_id)
            .where(
                RodFundingDecision.sandbox_id == sandbox_id,
                RodFundingDecision.institution_code == institution_code,
                RodFundingDecision.count_date == count_date,
                col(RodFundingDecision.funded).is_(True),
            )
            .order_by(col(RodFundingDecision.enrolment_id))
        ).all()
    )


# --- peer stream cursors ---


def stream_cursor(session: Session, stream: str) -> int:
    row = session.get(RodStreamCursor, (ALL_SANDBOXES, stream))
    return row.cursor if row else 0


def store_stream_cursor(session: Session, stream: str, cursor: int) -> None:
    row = session.get(RodStreamCursor, (ALL_SANDBOXES, stream))
    if row is None:
        row = RodStreamCursor(sandbox_id=ALL_SANDBOXES, stream=stream, cursor=cursor)
    row.cursor = max(row.cursor, cursor)
    session.add(row)


def sandboxes_with_enrolments(session: Session) -> list[str]:
    return list(session.exec(select(RodEnrolment.sandbox_id).distinct()).all())


def pupils_of_sandbox(session: Session, *, sandbox_id: str) -> list[str]:
    return sorted(
        session.exec(select(RodEnrolment.pupil_number).where(RodEnrolment.sandbox_id == sandbox_id).distinct()).all()
    )


COUNT_DATE_SWEEP = "count_dates"


def swept_on(session: Session, *, sandbox_id: str) -> dt.date | None:
    """The sandbox date on which count dates were last re-evaluated."""
    row = session.get(RodStreamCursor, (sandbox_id, COUNT_DATE_SWEEP))
    return dt.date.fromordinal(row.cursor) if row and row.cursor else None


def store_swept_on(session: Session, *, sandbox_id: str, day: dt.date) -> None:
    row = session.get(RodStreamCursor, (sandbox_id, COUNT_DATE_SWEEP))
    if row is None:
        row = RodStreamCursor(sandbox_id=sandbox_id, stream=COUNT_DATE_SWEEP)
    # Set, not max: a vendor may move the sandbox clock back.
    row.cursor = day.toordinal()
    session.add(row)


def purge(session: Session, *, sandbox_id: str) -> int:
    deleted = 0
    for table in (
        RodFeedback,
        RodFundingDecision,
        RodEnrolmentPeriod,
        RodEnrolment,
        RodDocument,
        RodPupil,
        RodOnderwijsnummerSerial,
        RodSubscriberAck,
        RodIdempotentResponse,
        RodStreamCursor,
        RodRioEnd,
    ):
        result = session.execute(delete(table).where(col(table.sandbox_id) == sandbox_id))
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted
