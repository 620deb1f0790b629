"""Persistence of BRP sync: the person copy, the applied-change log, held and rejected messages, follow indications."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, delete, func, insert, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from services.brp_sync.rules import (
    Address,
    AppliedChange,
    Correction,
    FollowIndication,
    HeldMessage,
    MaritalStatus,
    Mutatie,
    PersonState,
    RejectedMessage,
    StayAbroad,
    evolve,
    gebeurtenis_named,
)
from services.brp_sync.scenarios import ScheduledMessage, from_payload
from services.brp_sync.tables import (
    BrpAppliedChange,
    BrpFollowIndication,
    BrpHeldMessage,
    BrpIdempotentResponse,
    BrpPerson,
    BrpRejectedMessage,
    BrpScenarioSeed,
    BrpScheduledMessage,
)
from services.common.clock import real_now
from services.common.database import lock_log_for_append
from services.common.identifiers import a_nummer_for_bsn
from services.common.raw_insert import insert_rows, update_rows
from services.common.raw_select import select_in
from services.common.statements import run

# The applied-change log: its writers are serialised, its followers woken, by this name.
LOG_NAME = "brp_sync_applied_change"
# A rejected message is kept as received, up to this many bytes (enough to read any real message).
MAX_KEPT_XML_BYTES = 64 * 1024
# Rows one bulk lookup or insert names at a time (SQLite allows at most 32,766 parameters a statement).
_CHUNK = 500
_PERSON = cast(Table, BrpPerson.__table__)  # type: ignore[attr-defined]
_CHANGE = cast(Table, BrpAppliedChange.__table__)  # type: ignore[attr-defined]
_HELD = cast(Table, BrpHeldMessage.__table__)  # type: ignore[attr-defined]
_REJECTED = cast(Table, BrpRejectedMessage.__table__)  # type: ignore[attr-defined]
_FOLLOW = cast(Table, BrpFollowIndication.__table__)  # type: ignore[attr-defined]
# What a follow of a registration reads and writes, built once (services/common/statements.py says why).
_PERSON_BY_BSN = core_select(_PERSON).where(
    _PERSON.c.sandbox_id == bindparam("sandbox_id"), _PERSON.c.bsn == bindparam("bsn")
)
_FOLLOW_KEY = (
    (_FOLLOW.c.sandbox_id == bindparam("key_sandbox_id"))
    & (_FOLLOW.c.subscriber == bindparam("key_subscriber"))
    & (_FOLLOW.c.bsn == bindparam("key_bsn"))
)
_FOLLOW_END = core_select(_FOLLOW.c.end_date).where(_FOLLOW_KEY)
_INSERT_FOLLOW = insert(_FOLLOW)
_UPDATE_FOLLOW_END = update(_FOLLOW).where(_FOLLOW_KEY)
_DELETE_FOLLOW = delete(_FOLLOW).where(_FOLLOW_KEY)
# A person row as the driver-level look-up reads it (raw_select.select_in): columns by name, as state_of reads them.
_PERSON_COLUMNS = tuple(column.name for column in _PERSON.columns)
# Made from the table, so mypy cannot type it (hence the cast).
_PersonRow: Any = cast(Any, collections.namedtuple)("_PersonRow", _PERSON_COLUMNS)
# follow_many's, per chunk of a bulk registration's BSNs.
_FOLLOWS_OF = core_select(_FOLLOW.c.bsn, _FOLLOW.c.end_date).where(
    _FOLLOW.c.sandbox_id == bindparam("sandbox_id"),
    _FOLLOW.c.subscriber == bindparam("subscriber"),
    _FOLLOW.c.bsn.in_(bindparam("bsns", expanding=True)),
)
_REOPEN_FOLLOWS = (
    update(_FOLLOW)
    .where(
        _FOLLOW.c.sandbox_id == bindparam("key_sandbox_id"),
        _FOLLOW.c.subscriber == bindparam("key_subscriber"),
        _FOLLOW.c.bsn.in_(bindparam("key_bsns", expanding=True)),
    )
    .values(end_date=None)
)
_PERSONS_OF = core_select(_PERSON).where(
    _PERSON.c.sandbox_id == bindparam("sandbox_id"), _PERSON.c.bsn.in_(bindparam("bsns", expanding=True))
)
# Compact separators, as json.dumps(..., separators=(",", ":")) wrote before; one encoder, made once.
_JSON = json.JSONEncoder(separators=(",", ":"))


# ---- person rows <-> rule state ----


def state_of(row: BrpPerson | Row[Any]) -> PersonState:
    """The rule state of a person row (an ORM row, a Core row or a _PersonRow: each names the columns as
    attributes)."""
    address = None
    if row.street is not None:
        address = Address(
            street=row.street,
            house_number=row.house_number or 0,
            house_number_addition=row.house_number_addition or "",
            postcode=row.postcode or "",
            city=row.city or "",
            municipality_code=row.municipality_code or "",
        )
    return PersonState(
        bsn=row.bsn,
        given_names=row.given_names,
        surname_prefix=row.surname_prefix,
        surname=row.surname,
        birth_date=row.birth_date,
        sex=row.sex,
        address=address,
        marital_status=MaritalStatus(row.marital_status),
        partner_bsn=row.partner_bsn,
        death_date=row.death_date,
        emigration_date=row.emigration_date,
        emigration_country_code=row.emigration_country_code,
        last_sequence=row.last_sequence,
        # Rows from before issue 13 have no A-nummer stored: the sandbox's is derived from the BSN anyway.
        a_nummer=row.a_nummer or a_nummer_for_bsn(row.bsn),
        versienummer=row.versienummer,
        # Most persons have no history: skip parsing the empty list.
        abroad=_stays(json.loads(row.abroad_json)) if row.abroad_json not in ("", "[]") else (),
        corrections=_corrections(json.loads(row.corrections_json)) if row.corrections_json not in ("", "[]") else (),
    )


def _day(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _stays(rows: list[list[str | None]]) -> tuple[StayAbroad, ...]:
    return tuple(StayAbroad(country or "", _day(begin) or dt.date.min, _day(end)) for country, begin, end in rows)


def _stays_json(stays: tuple[StayAbroad, ...]) -> list[list[str | None]]:
    return [[s.country_code, s.begin.isoformat(), s.end.isoformat() if s.end else None] for s in stays]


def _corrections(rows: list[list[str]]) -> tuple[Correction, ...]:
    return tuple(
        Correction(element, previous, corrected, dt.date.fromisoformat(on), message_id)
        for element, previous, corrected, on, message_id in rows
    )


def _corrections_json(corrections: tuple[Correction, ...]) -> list[list[str]]:
    return [[c.element, c.previous, c.corrected, c.corrected_on.isoformat(), c.message_id] for c in corrections]


# The person columns that hold the state (all but the keys and `seeded`), in the order state_row gives them.
STATE_COLUMNS = (
    "given_names",
    "surname_prefix",
    "surname",
    "birth_date",
    "sex",
    "street",
    "house_number",
    "house_number_addition",
    "postcode",
    "city",
    "municipality_code",
    "marital_status",
    "partner_bsn",
    "death_date",
    "emigration_date",
    "emigration_country_code",
    "last_sequence",
    "a_nummer",
    "versienummer",
    "abroad_json",
    "corrections_json",
)


_NO_ADDRESS = (None,) * 6


def state_row(state: PersonState) -> tuple[Any, ...]:
    """The values of STATE_COLUMNS for a person, as a tuple for a driver-level write."""
    a = state.address
    return (
        state.given_names,
        state.surname_prefix,
        state.surname,
        state.birth_date,
        state.sex,
        *(
            (a.street, a.house_number, a.house_number_addition, a.postcode, a.city, a.municipality_code)
            if a
            else _NO_ADDRESS
        ),
        state.marital_status.value,
        state.partner_bsn,
        state.death_date,
        state.emigration_date,
        state.emigration_country_code,
        state.last_sequence,
        state.a_nummer or a_nummer_for_bsn(state.bsn),
        state.versienummer,
        _JSON.encode(_stays_json(state.abroad)) if state.abroad else "[]",
        _JSON.encode(_corrections_json(state.corrections)) if state.corrections else "[]",
    )


def state_values(state: PersonState) -> dict[str, Any]:
    """The person columns that hold the state (all but the keys and `seeded`), for Core inserts and updates."""
    return dict(zip(STATE_COLUMNS, state_row(state), strict=True))


def new_values(sandbox_id: str, state: PersonState, *, seeded: bool = False) -> dict[str, Any]:
    """A whole new person row as Core insert values."""
    return {"sandbox_id": sandbox_id, "bsn": state.bsn, "seeded": seeded, **state_values(state)}


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day is not None else None


def person_to_json(state: PersonState) -> str:
    """The person as the log keeps it beside each change (column person_after).

    Built field by field rather than with dataclasses.asdict, whose deep copies were a quarter of ingestion's
    time (issue 11); the keys are the dataclass's fields, the address and the history last, as before.
    """
    a = state.address
    data = {
        "bsn": state.bsn,
        "given_names": state.given_names,
        "surname_prefix": state.surname_prefix,
        "surname": state.surname,
        "birth_date": state.birth_date.isoformat(),
        "sex": state.sex,
        "marital_status": state.marital_status.value,
        "partner_bsn": state.partner_bsn,
        "death_date": _iso(state.death_date),
        "emigration_date": _iso(state.emigration_date),
        "emigration_country_code": state.emigration_country_code,
        "last_sequence": state.last_sequence,
        "a_nummer": state.a_nummer,
        "versienummer": state.versienummer,
        "address": None
        if a is None
        else {
            "street": a.street,
            "house_number": a.house_number,
            "postcode": a.postcode,
            "city": a.city,
            "municipality_code": a.municipality_code,
            "house_number_addition": a.house_number_addition,
        },
        "abroad": _stays_json(state.abroad),
        "corrections": _corrections_json(state.corrections),
    }
    return _JSON.encode(data)


def person_from_json(text: str) -> PersonState:
    data = json.loads(text)

    def day(name: str) -> dt.date | None:
        return dt.date.fromisoformat(data[name]) if data.get(name) else None

    return PersonState(
        bsn=data["bsn"],
        given_names=data["given_names"],
        surname_prefix=data["surname_prefix"],
        surname=data["surname"],
        birth_date=dt.date.fromisoformat(data["birth_date"]),
        sex=data["sex"],
        address=Address(**data["address"]) if data.get("address") else None,
        marital_status=MaritalStatus(data["marital_status"]),
        partner_bsn=data.get("partner_bsn"),
        death_date=day("death_date"),
        emigration_date=day("emigration_date"),
        emigration_country_code=data.get("emigration_country_code", ""),
        last_sequence=data["last_sequence"],
        a_nummer=data.get("a_nummer") or a_nummer_for_bsn(data["bsn"]),
        versienummer=data.get("versienummer", 0),
        # Log rows from before the history was kept have neither.
        abroad=_stays(data.get("abroad", [])),
        corrections=_corrections(data.get("corrections", [])),
    )


def _utc(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every moment stored here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _change(row: BrpAppliedChange) -> AppliedChange:
    return AppliedChange(
        cursor=row.cursor or 0,
        sandbox_id=row.sandbox_id,
        bsn=row.bsn,
        message_id=row.message_id,
        sequence=row.sequence,
        gebeurtenis=gebeurtenis_named(row.event_type),
        effective_date=row.effective_date,
        applied_at=_utc(row.applied_at),
        person=person_from_json(row.person_after),
    )


# ---- reading ----


def person(session: Session, *, sandbox_id: str, bsn: str) -> PersonState | None:
    session.flush()  # a person the ORM changed in this transaction is read as changed
    row = run(session, _PERSON_BY_BSN, {"sandbox_id": sandbox_id, "bsn": bsn}).first()
    return state_of(row) if row is not None else None


def history(session: Session, *, sandbox_id: str, bsn: str) -> list[AppliedChange]:
    rows = session.exec(
        select(BrpAppliedChange)
        .where(BrpAppliedChange.sandbox_id == sandbox_id, BrpAppliedChange.bsn == bsn)
        .order_by(col(BrpAppliedChange.cursor))
    ).all()
    return [_change(r) for r in rows]


def persons(
    session: Session,
    *,
    sandbox_id: str,
    born_on_or_after: dt.date | None,
    born_on_or_before: dt.date | None,
    only_resident: bool,
    after_bsn: str,
    limit: int,
    postcode: str = "",
    house_number: int = 0,
) -> list[PersonState]:
    query = select(BrpPerson).where(BrpPerson.sandbox_id == sandbox_id, col(BrpPerson.bsn) > after_bsn)
    if born_on_or_after is not None:
        query = query.where(col(BrpPerson.birth_date) >= born_on_or_after)
    if born_on_or_before is not None:
        query = query.where(col(BrpPerson.birth_date) <= born_on_or_before)
    if only_resident:
        query = query.where(col(BrpPerson.death_date).is_(None), col(BrpPerson.emigration_date).is_(None))
    if postcode:
        query = query.where(BrpPerson.postcode == postcode)
    if house_number:
        query = query.where(BrpPerson.house_number == house_number)
    return [state_of(r) for r in session.exec(query.order_by(col(BrpPerson.bsn)).limit(limit)).all()]


def rejected(session: Session, *, sandbox_id: str, after_id: int, limit: int) -> list[RejectedMessage]:
    rows = session.exec(
        select(BrpRejectedMessage)
        .where(BrpRejectedMessage.sandbox_id == sandbox_id, col(BrpRejectedMessage.id) > after_id)
        .order_by(col(BrpRejectedMessage.id))
        .limit(limit)
    ).all()
    return [
        RejectedMessage(
            id=r.id or 0,
            message_id=r.message_id,
            reason_code=r.reason_code,
            reason=r.reason,
            received_at=_utc(r.received_at),
            xml=r.xml,
        )
        for r in rows
    ]


def held(session: Session, *, sandbox_id: str, after_id: int, limit: int) -> list[HeldMessage]:
    rows = session.exec(
        select(BrpHeldMessage, BrpPerson.last_sequence)
        .join(
            BrpPerson,
            (col(BrpPerson.sandbox_id) == col(BrpHeldMessage.sandbox_id))
            & (col(BrpPerson.bsn) == col(BrpHeldMessage.bsn)),
            isouter=True,
        )
        .where(BrpHeldMessage.sandbox_id == sandbox_id, col(BrpHeldMessage.id) > after_id)
        .order_by(col(BrpHeldMessage.id))
        .limit(limit)
    ).all()
    return [
        HeldMessage(
            id=row.id or 0,
            message_id=row.message_id,
            bsn=row.bsn,
            sequence=row.sequence,
            waiting_for_sequence=(last or 0) + 1,
            received_at=_utc(row.received_at),
        )
        for row, last in rows
    ]


def changes_after(
    session: Session, *, sandbox_id: str | None, subscriber: str, cursor: int, limit: int
) -> list[AppliedChange]:
    """The log after `cursor`, of one sandbox (or all: None), of persons `subscriber` follows (or all: "")."""
    query = select(BrpAppliedChange).where(col(BrpAppliedChange.cursor) > cursor)
    if sandbox_id is not None:
        query = query.where(BrpAppliedChange.sandbox_id == sandbox_id)
    if subscriber:
        # An ended indication (einddatum) passes only the changes that took effect before its end.
        query = query.join(
            BrpFollowIndication,
            (col(BrpFollowIndication.sandbox_id) == col(BrpAppliedChange.sandbox_id))
            & (col(BrpFollowIndication.bsn) == col(BrpAppliedChange.bsn))
            & (col(BrpFollowIndication.subscriber) == subscriber)
            & (
                col(BrpFollowIndication.end_date).is_(None)
                | (col(BrpAppliedChange.effective_date) < col(BrpFollowIndication.end_date))
            ),
        )
    rows = session.exec(query.order_by(col(BrpAppliedChange.cursor)).limit(limit)).all()
    return [_change(r) for r in rows]


# ---- writing ----


def follow_indication(session: Session, *, sandbox_id: str, subscriber: str, bsn: str) -> FollowIndication | None:
    """The indication as it stands, or None when the subscriber does not follow the person."""
    key = {"key_sandbox_id": sandbox_id, "key_subscriber": subscriber, "key_bsn": bsn}
    existing = run(session, _FOLLOW_END, key).first()
    if existing is None:
        return None
    return FollowIndication(subscriber, bsn, following=True, end_date=existing.end_date)


def set_follow_indication(
    session: Session, *, sandbox_id: str, subscriber: str, bsn: str, follow: bool, end_date: dt.date | None
) -> FollowIndication:
    """Creates, reopens, ends (end_date) or removes (follow False) one indication; returns it as it now stands."""
    key = {"key_sandbox_id": sandbox_id, "key_subscriber": subscriber, "key_bsn": bsn}
    session.flush()  # indications the ORM wrote in this transaction (follow_many's rows are Core already)
    existing = run(session, _FOLLOW_END, key).first()
    if not follow:
        if existing is not None:
            run(session, _DELETE_FOLLOW, key)
        return FollowIndication(subscriber, bsn, following=False)
    if existing is None:
        values = {"sandbox_id": sandbox_id, "subscriber": subscriber, "bsn": bsn, "end_date": end_date}
        run(session, _INSERT_FOLLOW, {**values, "created_at": real_now()})
    elif existing.end_date != end_date:
        run(session, _UPDATE_FOLLOW_END, {**key, "end_date": end_date})
    return FollowIndication(subscriber, bsn, following=True, end_date=end_date)


def follow_many(
    session: Session, *, sandbox_id: str, subscriber: str, bsns: Sequence[str]
) -> dict[str, PersonState | None]:
    """Follows each person without an end (set_follow_indication with follow and no end_date, for each) and
    reads them in this transaction: one query per table and 500 BSNs instead of two statements per person.

    Returns the person (None when unknown) by BSN.
    """
    wanted = sorted(set(bsns))
    found: dict[str, PersonState | None] = dict.fromkeys(wanted)
    key = {"sandbox_id": sandbox_id, "subscriber": subscriber}
    for at in range(0, len(wanted), 500):
        chunk = wanted[at : at + 500]
        rows = run(session, _FOLLOWS_OF, {**key, "bsns": chunk}).all()
        held = dict(cast("list[tuple[str, dt.date | None]]", rows))
        new = [b for b in chunk if b not in held]
        if new:
            # Straight to the driver (services/common/raw_insert.py): a bulk registration's pupils are mostly new.
            now = real_now()
            insert_rows(
                session,
                _FOLLOW,
                [
                    {"sandbox_id": sandbox_id, "subscriber": subscriber, "bsn": b, "created_at": now, "end_date": None}
                    for b in new
                ],
            )
        ended = [b for b, end in held.items() if end is not None]
        if ended:
            run(
                session,
                _REOPEN_FOLLOWS,
                {"key_sandbox_id": sandbox_id, "key_subscriber": subscriber, "key_bsns": ended},
            )
        for row in run(session, _PERSONS_OF, {"sandbox_id": sandbox_id, "bsns": chunk}):
            found[row.bsn] = state_of(row)
    return found


def has_seeded_persons(session: Session, *, sandbox_id: str) -> bool:
    count = session.exec(
        select(func.count())
        .select_from(BrpPerson)
        .where(BrpPerson.sandbox_id == sandbox_id, col(BrpPerson.seeded).is_(True))
    ).one()
    return bool(count)


def add_seeded_persons(session: Session, *, sandbox_id: str, states: Iterable[PersonState]) -> int:
    """Inserts the persons whose BSN is still free in the sandbox; returns how many."""
    existing = set(session.exec(select(BrpPerson.bsn).where(BrpPerson.sandbox_id == sandbox_id)).all())
    rows = [new_values(sandbox_id, s, seeded=True) for s in states if s.bsn not in existing]
    # Straight to the driver (services/common/raw_insert.py): the national seed writes 1,300,000 persons, and
    # SQLAlchemy's per-row parameter processing was half of writing them (py-spy of the seed, issue 11).
    insert_rows(session, _PERSON, rows)
    return len(rows)


def purge(session: Session, *, sandbox_id: str) -> int:
    """Deletes every record of the sandbox (and its stored answers); returns how many records, answers not counted."""
    deleted = 0
    tables = (
        BrpScheduledMessage,
        BrpScenarioSeed,
        BrpFollowIndication,
        BrpHeldMessage,
        BrpRejectedMessage,
        BrpAppliedChange,
        BrpPerson,
    )
    for table in tables:
        result = session.execute(delete(table).where(col(table.sandbox_id) == sandbox_id))
        deleted += result.rowcount or 0  # type: ignore[attr-defined]
    session.execute(delete(BrpIdempotentResponse).where(col(BrpIdempotentResponse.sandbox_id) == sandbox_id))
    return deleted


# ---- scenario persons and their scheduled messages ----


def scenario_seed_date(session: Session, *, sandbox_id: str) -> dt.date | None:
    """The date the sandbox's scenario persons were seeded on, or None when it holds none."""
    row = session.get(BrpScenarioSeed, sandbox_id)
    return row.seed_date if row is not None else None


def add_scenarios(
    session: Session, *, sandbox_id: str, seed_date: dt.date, messages: Iterable[tuple[ScheduledMessage, str]]
) -> None:
    """Records the seed date and each scheduled message with its message id."""
    session.add(BrpScenarioSeed(sandbox_id=sandbox_id, seed_date=seed_date))
    for message, message_id in messages:
        session.add(
            BrpScheduledMessage(
                sandbox_id=sandbox_id,
                person_key=message.person_key,
                step=message.step,
                bsn=message.bsn,
                effective_date=message.effective_date,
                event_type=message.event.value,
                message_id=message_id,
                payload=message.payload(),
            )
        )


@dataclasses.dataclass(frozen=True)
class StoredSchedule:
    """A scheduled message as stored: the message, its id, and whether (and how) it was sent."""

    id: int
    message: ScheduledMessage
    message_id: str
    sent_at: dt.datetime | None
    outcome: str
    reason_code: str


def _scheduled(row: BrpScheduledMessage) -> StoredSchedule:
    assert row.id is not None
    message = from_payload(
        person_key=row.person_key,
        step=row.step,
        bsn=row.bsn,
        effective_date=row.effective_date,
        event=row.event_type,
        payload=row.payload,
    )
    sent = _utc(row.sent_at) if row.sent_at is not None else None
    return StoredSchedule(row.id, message, row.message_id, sent, row.outcome, row.reason_code)


def scheduled_messages(session: Session, *, sandbox_id: str) -> list[StoredSchedule]:
    rows = session.exec(
        select(BrpScheduledMessage)
        .where(BrpScheduledMessage.sandbox_id == sandbox_id)
        .order_by(col(BrpScheduledMessage.effective_date), col(BrpScheduledMessage.id))
    ).all()
    return [_scheduled(row) for row in rows]


def sandboxes_with_unsent_messages(session: Session) -> list[str]:
    return list(
        session.exec(
            select(BrpScheduledMessage.sandbox_id).where(col(BrpScheduledMessage.sent_at).is_(None)).distinct()
        ).all()
    )


def due_messages(session: Session, *, sandbox_id: str, today: dt.date) -> list[StoredSchedule]:
    """The unsent messages whose date has come, oldest first."""
    rows = session.exec(
        select(BrpScheduledMessage)
        .where(
            BrpScheduledMessage.sandbox_id == sandbox_id,
            col(BrpScheduledMessage.sent_at).is_(None),
            col(BrpScheduledMessage.effective_date) <= today,
        )
        .order_by(col(BrpScheduledMessage.effective_date), col(BrpScheduledMessage.id))
    ).all()
    return [_scheduled(row) for row in rows]


def mark_sent(session: Session, *, schedule_id: int, sent_at: dt.datetime, outcome: str, reason_code: str) -> None:
    row = session.get(BrpScheduledMessage, schedule_id)
    if row is not None:
        row.sent_at, row.outcome, row.reason_code = sent_at, outcome, reason_code
        session.add(row)


def add_rejected(
    session: Session,
    *,
    sandbox_id: str,
    message_id: str,
    code: str,
    reason: str,
    xml: bytes,
    received_at: dt.datetime,
) -> None:
    """Keeps a refused message (or document) with its reason and its first bytes (it may be huge or hostile)."""
    session.add(
        BrpRejectedMessage(
            sandbox_id=sandbox_id,
            message_id=message_id,
            reason_code=code,
            reason=reason,
            xml=xml[:MAX_KEPT_XML_BYTES],
            received_at=received_at,
        )
    )


class DocumentStore:
    """The reads and writes of one document's ingestion, in one transaction.

    It looks up the document's message ids and persons in bulk first, keeps
    each person's state in memory while the document's messages change it (so
    every later message of the person sees the last one), and writes once at
    the end (`flush`): the persons, the log in message order, the rejected
    messages, each as one driver-level executemany or COPY (raw_insert). Building
    an ORM row per message was a third of ingestion's time, SQLAlchemy's per-row
    parameter processing later a fifth (issue 11). Held messages, rare,
    go through the session at once (a later message of the document may
    release them).
    """

    def __init__(self, session: Session, *, sandbox_id: str, received_at: dt.datetime) -> None:
        self.session = session
        self.sandbox_id = sandbox_id
        self.received_at = received_at
        self._persons: dict[str, PersonState] = {}
        # Persons that have a row already (updated at flush); the others are inserted.
        self._stored: set[str] = set()
        # Persons changed by this document, in the order first changed.
        self._dirty: dict[str, None] = {}
        self._changes: list[dict[str, Any]] = []
        self._rejected: list[dict[str, Any]] = []
        self._held_bsns: set[str] = set()

    def lock_log(self) -> None:
        """Serialises writers of the applied-change log (stream order) and makes the duplicate and
        sequence checks race-free between concurrent documents."""
        lock_log_for_append(self.session, LOG_NAME)

    def prefetch(self, message_ids: Iterable[str], bsns: Iterable[str]) -> set[str]:
        """Reads the named persons and which of them wait for a message; returns the ids already seen."""
        s, key = self.session, {"sandbox_id": self.sandbox_id}
        seen: set[str] = set()
        for chunk in _chunks(sorted(set(message_ids) - {""})):
            for table in (_CHANGE, _HELD):
                seen.update(
                    r[0] for r in select_in(s, table, ("message_id",), equal=key, column="message_id", values=chunk)
                )
        for chunk in _chunks(sorted(set(bsns) - {""})):
            for values in select_in(s, _PERSON, _PERSON_COLUMNS, equal=key, column="bsn", values=chunk):
                row = _PersonRow._make(values)
                self._persons[row.bsn] = state_of(row)
                self._stored.add(row.bsn)
            self._held_bsns.update(r[0] for r in select_in(s, _HELD, ("bsn",), equal=key, column="bsn", values=chunk))
        return seen

    def last_sequence(self, bsn: str) -> int:
        state = self._persons.get(bsn)
        return state.last_sequence if state is not None else 0

    def person(self, bsn: str) -> PersonState | None:
        return self._persons.get(bsn)

    def consume_sequence(self, bsn: str, sequence: int) -> None:
        """Records that the person's message `sequence` was processed, though it changed nothing."""
        state = self._persons.get(bsn)
        if state is not None:
            self._persons[bsn] = evolve(state, last_sequence=sequence)
            self._dirty[bsn] = None

    def apply(self, mutatie: Mutatie, after: PersonState) -> None:
        """Keeps the person after the change and appends the change to the log (both written at flush)."""
        self._persons[after.bsn] = after
        self._dirty[after.bsn] = None
        self._changes.append(
            {
                "sandbox_id": self.sandbox_id,
                "bsn": mutatie.bsn,
                "message_id": mutatie.bericht_id,
                "sequence": mutatie.volgnummer,
                "event_type": mutatie.gebeurtenis.value,
                "effective_date": mutatie.datum_ingang,
                "applied_at": self.received_at,
                "person_after": person_to_json(after),
            }
        )

    def reject(self, message_id: str, code: str, reason: str, xml: bytes) -> None:
        self._rejected.append(
            {
                "sandbox_id": self.sandbox_id,
                "message_id": message_id,
                "reason_code": code,
                "reason": reason,
                "xml": xml[:MAX_KEPT_XML_BYTES],
                "received_at": self.received_at,
            }
        )

    def flush(self) -> None:
        """Writes what the document changed: persons, then the log in message order, then the rejected."""
        s, sid = self.session, self.sandbox_id
        new = [new_values(sid, self._persons[b]) for b in self._dirty if b not in self._stored]
        changed = [(*state_row(self._persons[b]), sid, b) for b in self._dirty if b in self._stored]
        for table, rows in ((_PERSON, new), (_CHANGE, self._changes), (_REJECTED, self._rejected)):
            insert_rows(s, table, rows)
        update_rows(s, _PERSON, columns=STATE_COLUMNS, key=("sandbox_id", "bsn"), rows=changed)
        self._stored.update(self._dirty)
        self._dirty.clear()
        self._changes.clear()
        self._rejected.clear()

    def held_with_sequence(self, bsn: str, sequence: int) -> str | None:
        """The id of the message already waiting with this person's volgnummer, if any."""
        return self.session.exec(
            select(BrpHeldMessage.message_id).where(
                BrpHeldMessage.sandbox_id == self.sandbox_id,
                BrpHeldMessage.bsn == bsn,
                BrpHeldMessage.sequence == sequence,
            )
        ).first()

    def hold(self, mutatie: Mutatie, xml: bytes) -> None:
        self.session.add(
            BrpHeldMessage(
                sandbox_id=self.sandbox_id,
                message_id=mutatie.bericht_id,
                bsn=mutatie.bsn,
                sequence=mutatie.volgnummer,
                xml=xml,
                received_at=self.received_at,
            )
        )
        self._held_bsns.add(mutatie.bsn)

    def take_held(self, bsn: str, sequence: int) -> tuple[str, bytes] | None:
        """Removes and returns (message id, XML) of the person's message waiting with this volgnummer."""
        if bsn not in self._held_bsns:
            return None
        row = self.session.exec(
            select(BrpHeldMessage).where(
                BrpHeldMessage.sandbox_id == self.sandbox_id,
                BrpHeldMessage.bsn == bsn,
                BrpHeldMessage.sequence == sequence,
            )
        ).first()
        if row is None:
            return None
        self.session.delete(row)
        return row.message_id, row.xml


def _chunks(values: Sequence[str], size: int = _CHUNK) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]
