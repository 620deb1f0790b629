"""ROD persistence: pupils, enrolments, decisions, the outbox rows and cursors, all inside the caller's transaction.

Functions take the session of the caller's transaction and return rows or
domain types (services.rod.rules, services.rod.funding); the decisions
themselves are made by the use cases (services.rod.service).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import bindparam, delete, func, insert, text, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from services.common.clock import real_now
from services.common.identifiers import make_onderwijsnummer
from services.common.mutation import take_write_lock
from services.common.raw_insert import insert_rows
from services.common.statements import run
from services.rod import funding
from services.rod.rules import (
    LOCATION,
    LOCATION_USE,
    PROVIDER,
    BrpFacts,
    EnrolmentStatus,
    Intensity,
    Leerweg,
    OutboxEntry,
    PeriodIn,
    PupilDetails,
    SectorFields,
    StudyMode,
    Trigger,
    details_changed_notice,
    earliest_end,
    normal_postcode,
    same_pupil,
    use_key,
)
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
# Any table of ROD's: on SQLite the write lock is taken by a no-op update of it.
_LOCK_TABLE = str(RodIdempotentResponse.__tablename__)
# The tables the hot paths use through SQLAlchemy Core.
_PUPIL = RodPupil.__table__  # type: ignore[attr-defined]
_ENROLMENT = RodEnrolment.__table__  # type: ignore[attr-defined]
_PERIOD = RodEnrolmentPeriod.__table__  # type: ignore[attr-defined]
_DECISION = RodFundingDecision.__table__  # type: ignore[attr-defined]
_DOCUMENT = RodDocument.__table__  # type: ignore[attr-defined]
_RIO_END = RodRioEnd.__table__  # type: ignore[attr-defined]
_FEEDBACK = RodFeedback.__table__  # type: ignore[attr-defined]

# The registration's statements, built once (services/common/statements.py says why).
_PUPIL_FACTS = core_select(
    _PUPIL.c.id,
    _PUPIL.c.birth_date,
    _PUPIL.c.death_date,
    _PUPIL.c.emigration_date,
    _PUPIL.c.abroad_json,
    _PUPIL.c.brp_sequence,
    _PUPIL.c.given_names,
    _PUPIL.c.surname_prefix,
    _PUPIL.c.surname,
).where(_PUPIL.c.sandbox_id == bindparam("sandbox_id"), _PUPIL.c.pupil_number == bindparam("pupil_number"))
_INSERT_PUPIL = insert(_PUPIL)
_UPDATE_PUPIL_FACTS = update(_PUPIL).where(_PUPIL.c.id == bindparam("pupil_id"))
_DOCUMENT_ENROLMENT = core_select(_DOCUMENT.c.enrolment_id).where(
    _DOCUMENT.c.sandbox_id == bindparam("sandbox_id"), _DOCUMENT.c.document_id == bindparam("document_id")
)
_INSERT_DOCUMENT = insert(_DOCUMENT)
# An UPDATE's SET takes the parameters named like columns, so its WHERE names its own.
_UPDATE_DOCUMENT = update(_DOCUMENT).where(
    _DOCUMENT.c.sandbox_id == bindparam("where_sandbox_id"), _DOCUMENT.c.document_id == bindparam("where_document_id")
)
_INSERT_ENROLMENT = insert(_ENROLMENT)
_HIGHEST_ORDER = core_select(func.max(_ENROLMENT.c.registered_order)).where(
    _ENROLMENT.c.sandbox_id == bindparam("sandbox_id")
)
_DELETE_PERIODS = delete(_PERIOD).where(_PERIOD.c.enrolment_id == bindparam("enrolment_id"))
_INSERT_PERIOD = insert(_PERIOD)
_DELETE_DECISIONS = delete(_DECISION).where(_DECISION.c.enrolment_id == bindparam("enrolment_id"))
_INSERT_DECISION = insert(_DECISION)
_UPDATE_ENROLMENT = update(_ENROLMENT).where(_ENROLMENT.c.enrolment_id == bindparam("where_enrolment_id"))
_RIO_ENDS_OF_CODES = core_select(_RIO_END.c.kind, _RIO_END.c.code, _RIO_END.c.end_date).where(
    _RIO_END.c.sandbox_id == bindparam("sandbox_id"), _RIO_END.c.code.in_(bindparam("codes", expanding=True))
)
_APPEND_FEEDBACK = insert(_FEEDBACK).returning(_FEEDBACK.c.cursor)
# The bulk path's outbox cursors (append_feedbacks).
_NEXT_FEEDBACK_CURSORS = text(
    "SELECT nextval(pg_get_serial_sequence('rod_feedback', 'cursor')) FROM generate_series(1, :count)"
)
_HIGHEST_FEEDBACK_CURSOR = core_select(func.max(_FEEDBACK.c.cursor))
_ROUTED_FEEDBACK_AFTER = (
    core_select(
        _FEEDBACK.c.cursor,
        _FEEDBACK.c.sandbox_id,
        _FEEDBACK.c.institution_code,
        _FEEDBACK.c.committed_at,
        _FEEDBACK.c.message,
    )
    .where(_FEEDBACK.c.cursor > bindparam("after"))
    .order_by(_FEEDBACK.c.cursor)
    .limit(bindparam("limit"))
)


def lock_pupils(session: Session, *, sandbox_id: str, pupil_numbers: Sequence[str]) -> None:
    """Serialises work on the same pupils until this transaction ends.

    Two schools registering the same pupil at once must each see the other's
    enrolment. PostgreSQL: an advisory lock per pupil, in sorted order and
    after the idempotency key's lock, before the outbox lock, so two
    transactions never wait in a circle. SQLite: the database's write lock now.
    """
    take_write_lock(
        session, sqlite_table=_LOCK_TABLE, names=[f"rod_pupil:{sandbox_id}:{number}" for number in pupil_numbers]
    )


def lock_stream(session: Session, stream: str) -> None:
    """Serialises the handling of one peer stream ("rio", "brp") across replicas until this transaction ends.

    Taken before any pupil lock; on SQLite the database's write lock now.
    """
    take_write_lock(session, sqlite_table=_LOCK_TABLE, names=[f"rod_stream:{stream}"])


# --- pupils ---


def find_pupil(session: Session, *, sandbox_id: str, pupil_number: str) -> RodPupil | None:
    return session.exec(
        select(RodPupil).where(RodPupil.sandbox_id == sandbox_id, RodPupil.pupil_number == pupil_number)
    ).first()


def held_pupils(session: Session, *, sandbox_id: str, pupil_numbers: set[str]) -> set[str]:
    """Which of these pupil numbers ROD holds in the sandbox (one query per 500)."""
    numbers = sorted(pupil_numbers)
    held: set[str] = set()
    for at in range(0, len(numbers), 500):
        held.update(
            session.exec(
                select(RodPupil.pupil_number).where(
                    RodPupil.sandbox_id == sandbox_id, col(RodPupil.pupil_number).in_(numbers[at : at + 500])
                )
            ).all()
        )
    return held


def _details(pupil: RodPupil) -> PupilDetails | None:
    if pupil.birth_date is None:
        return None
    return PupilDetails(
        pupil.given_names,
        pupil.surname_prefix,
        pupil.surname,
        pupil.birth_date,
        pupil.sex,
        pupil.postcode,
        pupil.house_number,
        pupil.house_number_addition,
    )


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
        known = _details(pupil)
        if known is not None and same_pupil(known, details):
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


def add_pupil_without_bsn(session: Session, *, sandbox_id: str, number: str, details: PupilDetails) -> None:
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
            postcode=normal_postcode(details.postcode),
            house_number=details.house_number,
            house_number_addition=details.house_number_addition,
        )
    )
    session.flush()


@dataclass(frozen=True)
class StoredFacts:
    """What recording a person's BRP facts changed: the dates that matter for funding, the personal details."""

    dates_moved: bool = False
    # The notice for the school when BRP changed the name or the birth date (rules.details_changed_notice).
    details_notice: funding.Signal | None = None


def store_brp_facts(session: Session, *, sandbox_id: str, facts: BrpFacts, create: bool) -> StoredFacts:
    """Records BRP facts of a person; says whether the funding dates or the personal details changed.

    An older state (lower BRP sequence) never overwrites a newer one, and the
    state ROD holds (same sequence) is not written again: BRP's stream passes a
    person's earlier changes once ROD follows them (the birth of a pupil just
    registered), a quarter of the bulk path's time before (issue 11). With
    create=False, a person ROD holds no enrolment for is ignored.
    """
    return _store_brp_facts(session, sandbox_id=sandbox_id, facts=facts, create=create)[1]


def add_or_update_person(session: Session, *, sandbox_id: str, facts: BrpFacts) -> bool:
    """Records the BRP facts of a person being registered; True when ROD did not hold the pupil before."""
    return _store_brp_facts(session, sandbox_id=sandbox_id, facts=facts, create=True)[0]


def _store_brp_facts(session: Session, *, sandbox_id: str, facts: BrpFacts, create: bool) -> tuple[bool, StoredFacts]:
    """(created, what changed). Core statements: this runs once per registration and per BRP change."""
    session.flush()
    pupil = run(session, _PUPIL_FACTS, {"sandbox_id": sandbox_id, "pupil_number": facts.bsn}).first()
    # BRP is the source of the stays abroad (Person.residence_abroad): the ended ones are kept as
    # [first day, last day abroad], so a count date spent abroad stays unfunded after the return.
    abroad_json = json.dumps([[b.isoformat(), e.isoformat()] for b, e in facts.ended_stays_abroad()])
    values: dict[str, object] = {
        "birth_date": facts.birth_date,
        "death_date": facts.death_date,
        "emigration_date": facts.emigration_date,
        "given_names": facts.given_names,
        "surname_prefix": facts.surname_prefix,
        "surname": facts.surname,
        "sex": facts.sex,
        "brp_sequence": facts.sequence,
    }
    if pupil is None:
        if not create:
            return False, StoredFacts()
        values["abroad_json"] = abroad_json
        run(session, _INSERT_PUPIL, {"sandbox_id": sandbox_id, "pupil_number": facts.bsn, "has_bsn": True, **values})
        return True, StoredFacts(dates_moved=True)
    if facts.sequence <= pupil.brp_sequence:
        return False, StoredFacts()
    values["abroad_json"] = abroad_json
    run(session, _UPDATE_PUPIL_FACTS, {"pupil_id": pupil.id, **values})
    # An ORM copy of the pupil read earlier in this transaction must not hide the new facts.
    for loaded in [o for o in session.identity_map.values() if isinstance(o, RodPupil) and o.id == pupil.id]:
        session.expire(loaded)
    before = (pupil.birth_date, pupil.death_date, pupil.emigration_date, pupil.abroad_json)
    moved = before != (facts.birth_date, facts.death_date, facts.emigration_date, abroad_json)
    details = {name: getattr(pupil, name) for name in ("given_names", "surname_prefix", "surname", "birth_date")}
    return False, StoredFacts(moved, details_changed_notice(details, facts))


def enrolment_ends(session: Session, *, sandbox_id: str, pupil_number: str) -> list[tuple[bool, dt.date | None]]:
    """(deleted, last end or None while open) of each enrolment of a pupil, in one query: what rules.follow_end
    needs."""
    rows = session.exec(
        select(RodEnrolment.enrolment_id, RodEnrolment.status, col(RodEnrolmentPeriod.end_date))
        .join(
            RodEnrolmentPeriod,
            col(RodEnrolmentPeriod.enrolment_id) == col(RodEnrolment.enrolment_id),
            isouter=True,
        )
        .where(RodEnrolment.sandbox_id == sandbox_id, RodEnrolment.pupil_number == pupil_number)
    ).all()
    deleted: dict[str, bool] = {}
    ends: dict[str, list[dt.date | None]] = {}
    for enrolment_id, status, end in rows:
        deleted[enrolment_id] = status == EnrolmentStatus.DELETED
        ends.setdefault(enrolment_id, []).append(end)
    # An enrolment is open while any of its periods is (or it has none).
    return [
        (deleted[e], None if any(end is None for end in ends[e]) else max(end for end in ends[e] if end is not None))
        for e in deleted
    ]


# --- documents ---


# The enrolment id of a document ROD rejected: it is remembered (one rejected feedback per
# document) but is no duplicate, so the school may send it again once the cause is fixed.
REJECTED_DOCUMENT = ""


def _document_enrolment(session: Session, *, sandbox_id: str, document_id: str) -> str | None:
    return run(session, _DOCUMENT_ENROLMENT, {"sandbox_id": sandbox_id, "document_id": document_id}).scalar()


def document_seen(session: Session, *, sandbox_id: str, document_id: str) -> bool:
    """Whether a processed (not rejected) document with this id was received."""
    found = _document_enrolment(session, sandbox_id=sandbox_id, document_id=document_id)
    return found is not None and found != REJECTED_DOCUMENT


def document_known(session: Session, *, sandbox_id: str, document_id: str) -> bool:
    """Whether a document with this id was received at all (processed or rejected)."""
    return _document_enrolment(session, sandbox_id=sandbox_id, document_id=document_id) is not None


def record_document(session: Session, *, sandbox_id: str, document_id: str, enrolment_id: str) -> None:
    """Remembers a document; a rejected document sent again and now processed becomes a received one."""
    known = _document_enrolment(session, sandbox_id=sandbox_id, document_id=document_id) is not None
    values = {"enrolment_id": enrolment_id, "received_at": real_now()}
    if known:
        run(session, _UPDATE_DOCUMENT, {"where_sandbox_id": sandbox_id, "where_document_id": document_id, **values})
    else:
        run(session, _INSERT_DOCUMENT, {"sandbox_id": sandbox_id, "document_id": document_id, **values})


# --- enrolments ---


def get_enrolment(session: Session, *, sandbox_id: str, enrolment_id: str) -> RodEnrolment | None:
    enrolment = session.get(RodEnrolment, enrolment_id)
    if enrolment is None or enrolment.sandbox_id != sandbox_id:
        return None
    return enrolment


def add_enrolment(
    session: Session,
    *,
    enrolment_id: str,
    sandbox_id: str,
    pupil_number: str,
    institution_code: str,
    sector: funding.Sector,
    sequence: int,
    status: EnrolmentStatus,
    first_enrolment: bool = False,
) -> EnrolmentRow:
    """A new enrolment, last in the sandbox's registration order (Core: one INSERT, no ORM object)."""
    now = real_now()
    row = EnrolmentRow(
        enrolment_id=enrolment_id,
        sandbox_id=sandbox_id,
        pupil_number=pupil_number,
        institution_code=institution_code,
        sector=sector.value,
        sequence=sequence,
        status=status.value,
        registered_order=next_registered_order(session, sandbox_id=sandbox_id),
        signals_json="[]",
        first_enrolment=first_enrolment,
        updated_at=now,
    )
    run(session, _INSERT_ENROLMENT, {**dataclasses.asdict(row), "registered_at": now})
    return row


def save_enrolment(
    session: Session,
    enrolment: RodEnrolment,
    *,
    sequence: int,
    status: EnrolmentStatus,
    first_enrolment: bool | None = None,
) -> None:
    if first_enrolment is not None:
        enrolment.first_enrolment = first_enrolment
    enrolment.sequence = sequence
    enrolment.status = status.value
    enrolment.updated_at = real_now()
    session.add(enrolment)


def periods_of(session: Session, enrolment_id: str) -> list[RodEnrolmentPeriod]:
    return list(
        session.exec(
            select(RodEnrolmentPeriod)
            .where(RodEnrolmentPeriod.enrolment_id == enrolment_id)
            .order_by(col(RodEnrolmentPeriod.position))
        ).all()
    )


def replace_periods(session: Session, *, enrolment: RodEnrolment | EnrolmentRow, periods: Sequence[PeriodIn]) -> None:
    run(session, _DELETE_PERIODS, {"enrolment_id": enrolment.enrolment_id})
    if not periods:
        return
    run(
        session,
        _INSERT_PERIOD,
        [
            {
                "sandbox_id": enrolment.sandbox_id,
                "enrolment_id": enrolment.enrolment_id,
                "position": position,
                "begin_date": period.begin,
                "end_date": period.end,
                "location_code": period.location_code,
                "course_code": period.course_code,
                "year": period.year,
                "offering_id": period.offering_id,
                "offering_end_date": period.offering_end,
            }
            for position, period in enumerate(periods)
        ],
    )


def end_last_period(session: Session, period: RodEnrolmentPeriod, *, end: dt.date) -> None:
    """Sets the last period's end; an offering end on or after it no longer matters."""
    period.end_date = end
    if period.offering_end_date is not None and period.offering_end_date >= end:
        period.offering_end_date = None
    session.add(period)


def next_registered_order(session: Session, *, sandbox_id: str) -> int:
    highest = run(session, _HIGHEST_ORDER, {"sandbox_id": sandbox_id}).scalar()
    return int(highest or 0) + 1


def decisions_of(session: Session, enrolment_id: str) -> list[funding.Decision]:
    return [decision for _, decision in _decisions_core(session, [enrolment_id])]


def signals_of(enrolment: RodEnrolment | EnrolmentRow) -> tuple[funding.Signal, ...]:
    """The signals of the enrolment's current evaluation."""
    return tuple(
        funding.Signal(s["code"], s["text"], tuple(s["parameters"].items())) for s in json.loads(enrolment.signals_json)
    )


def _signals_json(signals: Sequence[funding.Signal]) -> str:
    return json.dumps(
        [{"code": s.code, "text": s.text, "parameters": dict(s.parameters)} for s in signals], sort_keys=True
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
        query = query.where(
            RodEnrolment.status != EnrolmentStatus.DELETED.value, col(RodEnrolment.enrolment_id).in_(covering)
        )
    return list(session.exec(query.order_by(col(RodEnrolment.enrolment_id)).limit(limit)).all())


# --- what a pupil's evaluation needs, and what it decided ---


@dataclass(frozen=True)
class EnrolmentRow:
    """An enrolment as the funding rules and the feedback need it: a plain row, not an ORM object.

    The hot paths (registration, re-evaluation) read and write with SQLAlchemy
    Core: the ORM's unit of work and identity map were most of a registration's
    CPU (py-spy, issue 11).
    """

    enrolment_id: str
    sandbox_id: str
    pupil_number: str
    institution_code: str
    sector: str
    sequence: int
    status: str
    registered_order: int
    signals_json: str
    first_enrolment: bool
    updated_at: dt.datetime


@dataclass(frozen=True)
class PupilFile:
    """Everything the funding rules need of one pupil, read in one go."""

    enrolments: list[EnrolmentRow]
    person: funding.PersonFacts
    facts: list[funding.EnrolmentFacts]
    previous: dict[str, list[funding.Decision]]


def pupil_file(session: Session, *, sandbox_id: str, pupil_number: str) -> PupilFile:
    return pupil_files(session, sandbox_id=sandbox_id, pupil_numbers=[pupil_number])[pupil_number]


def _in_chunks(numbers: Sequence[str], size: int = 500) -> list[list[str]]:
    ordered = sorted(set(numbers))
    return [ordered[at : at + size] for at in range(0, len(ordered), size)]


def pupil_files(session: Session, *, sandbox_id: str, pupil_numbers: Sequence[str]) -> dict[str, PupilFile]:
    """The files of several pupils, read with a few Core queries per 500 pupils rather than several per pupil."""
    # Core statements do not autoflush: pending ORM changes of this transaction must be visible to them.
    session.flush()
    files: dict[str, PupilFile] = {}
    for numbers in _in_chunks(pupil_numbers):
        pupils = {
            row.pupil_number: row
            for row in session.execute(
                core_select(
                    _PUPIL.c.pupil_number,
                    _PUPIL.c.birth_date,
                    _PUPIL.c.death_date,
                    _PUPIL.c.emigration_date,
                    _PUPIL.c.abroad_json,
                ).where(_PUPIL.c.sandbox_id == sandbox_id, _PUPIL.c.pupil_number.in_(numbers))
            )
        }
        # Sorted here, not by ORDER BY: given that, SQLite would walk the registration-order index of the
        # whole sandbox instead of looking the pupils up (a cost that grows with the enrolments held).
        enrolments = sorted(
            (
                EnrolmentRow(*row)
                for row in session.execute(
                    core_select(
                        _ENROLMENT.c.enrolment_id,
                        _ENROLMENT.c.sandbox_id,
                        _ENROLMENT.c.pupil_number,
                        _ENROLMENT.c.institution_code,
                        _ENROLMENT.c.sector,
                        _ENROLMENT.c.sequence,
                        _ENROLMENT.c.status,
                        _ENROLMENT.c.registered_order,
                        _ENROLMENT.c.signals_json,
                        _ENROLMENT.c.first_enrolment,
                        _ENROLMENT.c.updated_at,
                    ).where(_ENROLMENT.c.sandbox_id == sandbox_id, _ENROLMENT.c.pupil_number.in_(numbers))
                )
            ),
            key=lambda e: e.registered_order,
        )
        ids = [e.enrolment_id for e in enrolments]
        periods: dict[str, list[_PeriodRow]] = {eid: [] for eid in ids}
        stored: dict[str, list[funding.Decision]] = {eid: [] for eid in ids}
        for chunk in _in_chunks(ids):
            for row in session.execute(
                core_select(
                    _PERIOD.c.enrolment_id,
                    _PERIOD.c.begin_date,
                    _PERIOD.c.end_date,
                    _PERIOD.c.location_code,
                    _PERIOD.c.course_code,
                    _PERIOD.c.offering_end_date,
                )
                .where(_PERIOD.c.enrolment_id.in_(chunk))
                .order_by(_PERIOD.c.position)
            ):
                periods[row.enrolment_id].append(row)
            for enrolment_id, decision in _decisions_core(session, chunk):
                stored[enrolment_id].append(decision)
        # The pairs taught, not every location with every school: 500 pupils at 500 schools made 250,000
        # codes, past SQLite's limit of bound variables (rio_ends_for).
        rio_ends = rio_ends_for(
            session,
            sandbox_id,
            taught={(p.location_code, e.institution_code) for e in enrolments for p in periods[e.enrolment_id]},
        )
        by_pupil: dict[str, list[EnrolmentRow]] = {number: [] for number in numbers}
        for enrolment in enrolments:
            by_pupil[enrolment.pupil_number].append(enrolment)
        for number in numbers:
            pupil = pupils.get(number)
            mine = by_pupil[number]
            files[number] = PupilFile(
                enrolments=mine,
                person=_person(pupil),
                facts=[_facts(e, periods[e.enrolment_id], rio_ends) for e in mine],
                previous={e.enrolment_id: stored[e.enrolment_id] for e in mine},
            )
    return files


class _PeriodRow(Protocol):
    begin_date: dt.date
    end_date: dt.date | None
    location_code: str
    course_code: str
    offering_end_date: dt.date | None


class _PupilDates(Protocol):
    birth_date: dt.date | None
    death_date: dt.date | None
    emigration_date: dt.date | None
    abroad_json: str


def _decisions_core(session: Session, enrolment_ids: Sequence[str]) -> list[tuple[str, funding.Decision]]:
    rows = session.execute(
        core_select(
            _DECISION.c.enrolment_id,
            _DECISION.c.count_date,
            _DECISION.c.funded,
            _DECISION.c.final,
            _DECISION.c.reason_codes,
            _DECISION.c.reason,
        )
        .where(_DECISION.c.enrolment_id.in_(list(enrolment_ids)))
        .order_by(_DECISION.c.count_date)
    )
    return [(row[0], funding.Decision(row[1], row[2], row[3], tuple(row[4].split()), row[5])) for row in rows]


@dataclass
class _NewPeriod:
    begin_date: dt.date
    end_date: dt.date | None
    location_code: str
    course_code: str
    offering_end_date: dt.date | None


def new_pupil_file(
    session: Session, *, enrolment: EnrolmentRow, periods: Sequence[PeriodIn], facts: BrpFacts | None
) -> PupilFile:
    """The file of a pupil this transaction created with this one enrolment, from what it wrote.

    No other enrolment, period or decision of the pupil can exist (the pupil's
    row is new, under its lock), so only RIO's ends are read.
    """
    taught = {(p.location_code, enrolment.institution_code) for p in periods}
    rio_ends = rio_ends_for(session, enrolment.sandbox_id, taught=taught)
    return file_of_new_pupil(enrolment, periods, facts, rio_ends)


@dataclass(frozen=True)
class RioEnds:
    """RIO's ends that bear on some enrolments: of locations, of schools, of a board's use of a location."""

    locations: dict[str, dt.date]
    providers: dict[str, dt.date]
    # By use_key(location code, institution code).
    uses: dict[str, dt.date]


def _person(pupil: _PupilDates | None) -> funding.PersonFacts:
    return funding.PersonFacts(
        birth_date=pupil.birth_date if pupil else None,
        death_date=pupil.death_date if pupil else None,
        emigration_date=pupil.emigration_date if pupil else None,
        abroad_before=tuple(
            (dt.date.fromisoformat(left), dt.date.fromisoformat(back))
            for left, back in (json.loads(pupil.abroad_json) if pupil else [])
        ),
    )


def _facts(enrolment: EnrolmentRow, periods: Sequence[_PeriodRow], ends: RioEnds) -> funding.EnrolmentFacts:
    # An ended location, school or use of the location by the school's board ends every offering taught
    # there: the earliest end counts.
    school_end = ends.providers.get(enrolment.institution_code)
    return funding.EnrolmentFacts(
        enrolment_id=enrolment.enrolment_id,
        institution_code=enrolment.institution_code,
        sector=funding.Sector(enrolment.sector),
        periods=tuple(
            funding.Period(
                p.begin_date,
                p.end_date,
                *earliest_end(
                    offering=p.offering_end_date,
                    location=ends.locations.get(p.location_code),
                    school=school_end,
                    location_use=ends.uses.get(use_key(p.location_code, enrolment.institution_code)),
                ),
                course_code=p.course_code,
            )
            for p in periods
        ),
        registered_order=enrolment.registered_order,
        deleted=enrolment.status == EnrolmentStatus.DELETED.value,
        first_enrolment=enrolment.first_enrolment,
    )


def save_evaluation(session: Session, enrolment: EnrolmentRow, evaluation: funding.Evaluation) -> None:
    """Replaces an enrolment's stored decisions and signals by a new evaluation's (Core: no ORM objects)."""
    run(session, _DELETE_DECISIONS, {"enrolment_id": enrolment.enrolment_id})
    if evaluation.decisions:
        run(
            session,
            _INSERT_DECISION,
            [
                {
                    "enrolment_id": enrolment.enrolment_id,
                    "count_date": decision.count_date,
                    "sandbox_id": enrolment.sandbox_id,
                    "institution_code": enrolment.institution_code,
                    "funded": decision.funded,
                    "final": decision.final,
                    "reason_codes": " ".join(decision.reason_codes),
                    "reason": decision.reason,
                }
                for decision in evaluation.decisions
            ],
        )
    signals = _signals_json(evaluation.signals)
    if signals != enrolment.signals_json:
        run(session, _UPDATE_ENROLMENT, {"where_enrolment_id": enrolment.enrolment_id, "signals_json": signals})


def signals_changed(enrolment: EnrolmentRow, evaluation: funding.Evaluation) -> bool:
    return _signals_json(evaluation.signals) != enrolment.signals_json


# --- RIO's ends of locations and schools ---


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


def rio_ends(session: Session, sandbox_id: str, kind: str, codes: set[str]) -> dict[str, dt.date]:
    if not codes:
        return {}
    rows = session.exec(
        select(RodRioEnd).where(
            RodRioEnd.sandbox_id == sandbox_id, RodRioEnd.kind == kind, col(RodRioEnd.code).in_(sorted(codes))
        )
    ).all()
    return {row.code: row.end_date for row in rows}


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


def pupils_at_schools(
    session: Session, *, sandbox_id: str, location_code: str, institution_codes: Sequence[str]
) -> list[str]:
    """The pupils with an enrolment at one of these schools taught (in some period) at the location."""
    if not institution_codes:
        return []
    at = select(RodEnrolmentPeriod.enrolment_id).where(
        RodEnrolmentPeriod.sandbox_id == sandbox_id, RodEnrolmentPeriod.location_code == location_code
    )
    query = select(RodEnrolment.pupil_number).where(
        RodEnrolment.sandbox_id == sandbox_id,
        col(RodEnrolment.institution_code).in_(sorted(institution_codes)),
        col(RodEnrolment.enrolment_id).in_(at),
    )
    return sorted(set(session.exec(query).all()))


def offering_taught(session: Session, *, sandbox_id: str, offering_id: str) -> bool:
    """Whether any period of the sandbox is taught in this RIO offering."""
    found = session.exec(
        select(RodEnrolmentPeriod.id).where(
            RodEnrolmentPeriod.sandbox_id == sandbox_id, RodEnrolmentPeriod.offering_id == offering_id
        )
    ).first()
    return found is not None


def periods_in_offering(session: Session, *, sandbox_id: str, offering_id: str) -> list[RodEnrolmentPeriod]:
    return list(
        session.exec(
            select(RodEnrolmentPeriod).where(
                RodEnrolmentPeriod.sandbox_id == sandbox_id, RodEnrolmentPeriod.offering_id == offering_id
            )
        ).all()
    )


def pupils_of_enrolments(session: Session, enrolment_ids: Sequence[str]) -> dict[str, str]:
    """enrolment id -> pupil number, for the enrolments that exist."""
    if not enrolment_ids:
        return {}
    rows = session.exec(
        select(RodEnrolment.enrolment_id, RodEnrolment.pupil_number).where(
            col(RodEnrolment.enrolment_id).in_(sorted(set(enrolment_ids)))
        )
    ).all()
    return dict(rows)


# --- the feedback outbox ---


def append_feedback(
    session: Session,
    *,
    sandbox_id: str,
    institution_code: str,
    enrolment_id: str,
    cause_id: str,
    trigger: Trigger,
    payload: bytes,
) -> int:
    """Inserts one outbox row (the caller holds the log's append lock); returns its cursor."""
    cursor = run(
        session,
        _APPEND_FEEDBACK,
        {
            "sandbox_id": sandbox_id,
            "institution_code": institution_code,
            "enrolment_id": enrolment_id,
            "cause_id": cause_id,
            "trigger": int(trigger),
            "committed_at": real_now(),
            "message": payload,
        },
    ).scalar_one()
    return int(cursor)


@dataclass(frozen=True)
class RoutedFeedback:
    """An outbox row with what the fan-out routes it by."""

    sandbox_id: str
    institution_code: str
    entry: OutboxEntry


def newest_feedback_cursor(session: Session) -> int:
    """The newest cursor of the whole outbox (every sandbox), 0 when empty."""
    return int(session.execute(core_select(func.max(_FEEDBACK.c.cursor))).scalar() or 0)


def routed_feedback_after(session: Session, *, after: int, limit: int) -> list[RoutedFeedback]:
    """The outbox rows of every sandbox after a cursor, in cursor order (SQLAlchemy Core: no ORM objects)."""
    rows = run(session, _ROUTED_FEEDBACK_AFTER, {"after": after, "limit": limit}).all()
    return [RoutedFeedback(row[1], row[2], OutboxEntry(row[0], row[3], row[4])) for row in rows]


def _entry(row: RodFeedback) -> OutboxEntry:
    return OutboxEntry(row.cursor or 0, row.committed_at, row.message)


def feedback_after(
    session: Session, *, sandbox_id: str | None, institution_codes: Sequence[str], after: int, limit: int = 500
) -> list[OutboxEntry]:
    """Feedback after a cursor, in cursor order, for some schools (all when empty) of one sandbox (all when None)."""
    query = select(RodFeedback).where(col(RodFeedback.cursor) > after)
    if sandbox_id is not None:
        query = query.where(RodFeedback.sandbox_id == sandbox_id)
    if institution_codes:
        query = query.where(col(RodFeedback.institution_code).in_(list(institution_codes)))
    return [_entry(row) for row in session.exec(query.order_by(col(RodFeedback.cursor)).limit(limit)).all()]


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
) -> list[OutboxEntry]:
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
    return [_entry(row) for row in session.exec(query.order_by(col(RodFeedback.cursor)).limit(limit)).all()]


def newest_cursor(session: Session, *, sandbox_id: str) -> int:
    """The cursor of the sandbox's newest feedback, 0 when it has none."""
    newest = session.exec(select(func.max(RodFeedback.cursor)).where(RodFeedback.sandbox_id == sandbox_id)).one()
    return int(newest or 0)


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


def school_sector(session: Session, *, sandbox_id: str, institution_code: str) -> funding.Sector | None:
    """The sector of a school ROD holds enrolments of (from RIO at registration), or None."""
    sector = session.exec(
        select(RodEnrolment.sector)
        .where(RodEnrolment.sandbox_id == sandbox_id, RodEnrolment.institution_code == institution_code)
        .limit(1)
    ).first()
    return funding.Sector(sector) if sector else None


def sandboxes_with_enrolments(session: Session) -> list[str]:
    """The sandboxes holding enrolments: one index lookup per sandbox, however many enrolments they hold.

    SELECT DISTINCT would read the whole index every sweep; this walks it
    from one sandbox id to the next (a "loose index scan", on SQLite and PostgreSQL).
    """
    rows = session.execute(
        text(
            "WITH RECURSIVE sandboxes(id) AS ("
            " SELECT (SELECT min(sandbox_id) FROM rod_enrolment)"
            " UNION ALL"
            " SELECT (SELECT min(sandbox_id) FROM rod_enrolment WHERE sandbox_id > sandboxes.id)"
            " FROM sandboxes WHERE sandboxes.id IS NOT NULL"
            ") SELECT id FROM sandboxes WHERE id IS NOT NULL"
        )
    ).all()
    return [row[0] for row in rows]


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


# --- sector fields and the reason an enrolment ended ---


def store_sector_fields(session: Session, enrolment: RodEnrolment | EnrolmentRow, fields: SectorFields) -> None:
    """Records the enrolment's sector fields (mbo leerweg and intensity, ho mode of study) as the school sent them."""
    values = {
        "leerweg": fields.leerweg.value if fields.leerweg else "",
        "intensity": fields.intensity.value if fields.intensity else "",
        "study_mode": fields.study_mode.value if fields.study_mode else "",
    }
    if isinstance(enrolment, EnrolmentRow):
        # A new enrolment (Core row) holds empty fields already: only an mbo or ho school's message writes them.
        if any(values.values()):
            run(session, _UPDATE_ENROLMENT, {"where_enrolment_id": enrolment.enrolment_id, **values})
        return
    for name, value in values.items():
        setattr(enrolment, name, value)
    session.add(enrolment)


def store_end_reason(session: Session, enrolment: RodEnrolment, reason: str) -> None:
    enrolment.end_reason = reason
    session.add(enrolment)


def sector_fields_of(enrolment: RodEnrolment) -> SectorFields:
    return SectorFields(
        leerweg=Leerweg(enrolment.leerweg) if enrolment.leerweg else None,
        intensity=Intensity(enrolment.intensity) if enrolment.intensity else None,
        study_mode=StudyMode(enrolment.study_mode) if enrolment.study_mode else None,
    )


# --- the bulk path: pupils new to ROD, written per table in one statement ---


def documents_received(session: Session, *, sandbox_id: str, document_ids: Sequence[str]) -> dict[str, str]:
    """The enrolment id (REJECTED_DOCUMENT for a rejected one) of each of these documents ROD received, one
    query per 500."""
    ids = sorted(set(document_ids))
    found: dict[str, str] = {}
    for at in range(0, len(ids), 500):
        rows = session.execute(
            core_select(_DOCUMENT.c.document_id, _DOCUMENT.c.enrolment_id).where(
                _DOCUMENT.c.sandbox_id == sandbox_id, _DOCUMENT.c.document_id.in_(ids[at : at + 500])
            )
        )
        found.update({document_id: enrolment_id for document_id, enrolment_id in rows})
    return found


@dataclass(frozen=True)
class NewPupilEnrolment:
    """One accepted item of a batch whose pupil (with a BSN) ROD does not hold: what its rows are written from."""

    enrolment: EnrolmentRow
    facts: BrpFacts
    periods: Sequence[PeriodIn]
    fields: SectorFields
    document_id: str


def rio_ends_for(session: Session, sandbox_id: str, *, taught: set[tuple[str, str]]) -> RioEnds:
    """RIO's ends that bear on a batch's periods, given as (location code, institution code) pairs: of the
    locations, of the schools, and of each school's use of its location, one query per 500 codes.

    Only the uses of the pairs taught are asked, not every location with every school: a
    national seed's batch names 1,000 schools, each at its own location, and the million use keys of all
    pairs exceeded SQLite's limit of bound variables (`too many SQL variables`) and were slow anyway."""
    locations = {location for location, _ in taught}
    providers = {provider for _, provider in taught}
    uses = {use_key(location, provider) for location, provider in taught}
    codes = sorted(locations | providers | uses)
    wanted = {LOCATION: locations, PROVIDER: providers, LOCATION_USE: uses}
    ends: dict[str, dict[str, dt.date]] = {LOCATION: {}, PROVIDER: {}, LOCATION_USE: {}}
    for at in range(0, len(codes), 500):
        rows = run(session, _RIO_ENDS_OF_CODES, {"sandbox_id": sandbox_id, "codes": codes[at : at + 500]}).all()
        for kind, code, end in cast("list[tuple[str, str, dt.date]]", rows):
            if code in wanted.get(kind, set()):
                ends[kind][code] = end
    return RioEnds(ends[LOCATION], ends[PROVIDER], ends[LOCATION_USE])


def file_of_new_pupil(
    enrolment: EnrolmentRow,
    periods: Sequence[PeriodIn],
    facts: BrpFacts | None,
    rio_ends: RioEnds,
) -> PupilFile:
    """The file of a pupil new to ROD with this one enrolment, from what is being written (nothing read)."""
    rows = [_NewPeriod(p.begin, p.end, p.location_code, p.course_code, p.offering_end) for p in periods]
    person = funding.PersonFacts(
        birth_date=facts.birth_date if facts else None,
        death_date=facts.death_date if facts else None,
        emigration_date=facts.emigration_date if facts else None,
        abroad_before=tuple(facts.ended_stays_abroad()) if facts else (),
    )
    return PupilFile(
        enrolments=[enrolment],
        person=person,
        facts=[_facts(enrolment, rows, rio_ends)],
        previous={enrolment.enrolment_id: []},
    )


def write_new_pupils(
    session: Session, items: Sequence[NewPupilEnrolment], evaluations: Sequence[funding.Evaluation]
) -> None:
    """Writes the pupils, enrolments (with their decided signals), periods, decisions and documents of a run of
    a batch, one driver-level bulk insert per table (`insert_rows`: executemany on SQLite, COPY on
    PostgreSQL): the rows the single path writes one statement at a time. The caller holds the pupils' locks
    and checked that none is held."""
    now = real_now()
    pupils: list[dict[str, object]] = []
    enrolments: list[dict[str, object]] = []
    periods: list[dict[str, object]] = []
    decisions: list[dict[str, object]] = []
    documents: list[dict[str, object]] = []
    for item, evaluation in zip(items, evaluations, strict=True):
        row, facts = item.enrolment, item.facts
        pupils.append(
            {
                "sandbox_id": row.sandbox_id,
                "pupil_number": facts.bsn,
                "has_bsn": True,
                "birth_date": facts.birth_date,
                "death_date": facts.death_date,
                "emigration_date": facts.emigration_date,
                "given_names": facts.given_names,
                "surname_prefix": facts.surname_prefix,
                "surname": facts.surname,
                "sex": facts.sex,
                "brp_sequence": facts.sequence,
                "abroad_json": json.dumps([[b.isoformat(), e.isoformat()] for b, e in facts.ended_stays_abroad()])
                if facts.abroad
                else "[]",
            }
        )
        enrolments.append(
            {
                # Not dataclasses.asdict: its deep copy was a tenth of the bulk path's CPU (py-spy).
                "enrolment_id": row.enrolment_id,
                "sandbox_id": row.sandbox_id,
                "pupil_number": row.pupil_number,
                "institution_code": row.institution_code,
                "sector": row.sector,
                "sequence": row.sequence,
                "status": row.status,
                "registered_order": row.registered_order,
                "first_enrolment": row.first_enrolment,
                "updated_at": row.updated_at,
                "signals_json": _signals_json(evaluation.signals),
                "registered_at": now,
                "leerweg": item.fields.leerweg.value if item.fields.leerweg else "",
                "intensity": item.fields.intensity.value if item.fields.intensity else "",
                "study_mode": item.fields.study_mode.value if item.fields.study_mode else "",
            }
        )
        periods.extend(
            {
                "sandbox_id": row.sandbox_id,
                "enrolment_id": row.enrolment_id,
                "position": position,
                "begin_date": period.begin,
                "end_date": period.end,
                "location_code": period.location_code,
                "course_code": period.course_code,
                "year": period.year,
                "offering_id": period.offering_id,
                "offering_end_date": period.offering_end,
            }
            for position, period in enumerate(item.periods)
        )
        decisions.extend(
            {
                "enrolment_id": row.enrolment_id,
                "count_date": decision.count_date,
                "sandbox_id": row.sandbox_id,
                "institution_code": row.institution_code,
                "funded": decision.funded,
                "final": decision.final,
                "reason_codes": " ".join(decision.reason_codes),
                "reason": decision.reason,
            }
            for decision in evaluation.decisions
        )
        documents.append(
            {
                "sandbox_id": row.sandbox_id,
                "document_id": item.document_id,
                "enrolment_id": row.enrolment_id,
                "received_at": now,
            }
        )
    for table, rows in (
        (_PUPIL, pupils),
        (_ENROLMENT, enrolments),
        (_PERIOD, periods),
        (_DECISION, decisions),
        (_DOCUMENT, documents),
    ):
        insert_rows(session, table, rows)


def append_feedbacks(session: Session, rows: Sequence[dict[str, object]]) -> list[int]:
    """Inserts outbox rows (the caller holds the log's append lock) in one driver-level bulk insert; their
    cursors, in the rows' order, so feedback keeps the batch's order.

    The cursors are known without RETURNING (whose per-row processing in SQLAlchemy was a tenth of the bulk
    path, py-spy, issue 11): PostgreSQL hands out the batch's numbers from the column's sequence first, in
    one statement, and the rows are copied with them; SQLite (one writer, `AUTOINCREMENT`) numbers the rows
    of one statement consecutively after the highest ever, so they end at the highest cursor after it."""
    if not rows:
        return []
    now = real_now()
    if session.get_bind().dialect.name == "postgresql":
        numbers = sorted(int(n) for n in run(session, _NEXT_FEEDBACK_CURSORS, {"count": len(rows)}).scalars())
        insert_rows(
            session,
            _FEEDBACK,
            [{"cursor": n, **row, "committed_at": now} for n, row in zip(numbers, rows, strict=True)],
        )
        return numbers
    insert_rows(session, _FEEDBACK, [{**row, "committed_at": now} for row in rows])
    last = int(run(session, _HIGHEST_FEEDBACK_CURSOR).scalar_one())
    return list(range(last - len(rows) + 1, last + 1))
