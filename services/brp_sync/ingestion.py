"""Ingestion of BRP documents into the person copy: validate, deduplicate, order per person, apply, log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from lxml import etree
from sqlmodel import Session, col, select

from services.brp_sync import messages, rules
from services.brp_sync.parsing import parse_document
from services.brp_sync.rules import Address, MaritalStatus, PersonState, RuleViolationError, SequenceDecision
from services.brp_sync.tables import BrpAppliedChange, BrpHeldMessage, BrpPerson, BrpRejectedMessage
from services.common.database import lock_log_for_append
from services.common.identifiers import is_valid_bsn

LOG_NAME = "brp_sync_applied_change"
# A rejected message is kept as received, up to this many bytes (enough to read any real message).
MAX_KEPT_XML_BYTES = 64 * 1024


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    HELD = "held"
    REJECTED = "rejected"


@dataclass
class MessageResult:
    index: int
    message_id: str
    outcome: Outcome
    reason_code: str = ""
    reason: str = ""
    released: list[str] = field(default_factory=list)


# ---- person rows <-> rule state ----


def state_of(row: BrpPerson) -> PersonState:
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
    )


def write_state(row: BrpPerson, state: PersonState) -> None:
    a = state.address
    row.given_names = state.given_names
    row.surname_prefix = state.surname_prefix
    row.surname = state.surname
    row.birth_date = state.birth_date
    row.sex = state.sex
    row.street = a.street if a else None
    row.house_number = a.house_number if a else None
    row.house_number_addition = a.house_number_addition if a else None
    row.postcode = a.postcode if a else None
    row.city = a.city if a else None
    row.municipality_code = a.municipality_code if a else None
    row.marital_status = state.marital_status.value
    row.partner_bsn = state.partner_bsn
    row.death_date = state.death_date
    row.emigration_date = state.emigration_date
    row.emigration_country_code = state.emigration_country_code
    row.last_sequence = state.last_sequence


def new_row(sandbox_id: str, state: PersonState, *, seeded: bool = False) -> BrpPerson:
    row = BrpPerson(
        sandbox_id=sandbox_id,
        bsn=state.bsn,
        given_names="",
        surname="",
        birth_date=state.birth_date,
        sex=state.sex,
        marital_status=state.marital_status.value,
        seeded=seeded,
    )
    write_state(row, state)
    return row


def person_to_json(state: PersonState) -> str:
    def plain(value: object) -> object:
        return value.isoformat() if isinstance(value, dt.date) else value

    data = {k: plain(v) for k, v in dataclasses.asdict(state).items() if k != "address"}
    data["address"] = dataclasses.asdict(state.address) if state.address else None
    return json.dumps(data, separators=(",", ":"))


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
    )


# ---- ingestion ----


class _Batch:
    """One document's ingestion inside one transaction, with what it looked up in bulk."""

    def __init__(self, session: Session, sandbox_id: str, received_at: dt.datetime) -> None:
        self.session = session
        self.sandbox_id = sandbox_id
        self.received_at = received_at
        self.applied_count = 0
        self.seen_ids: set[str] = set()
        self.held_bsns: set[str] = set()
        # Strong references: the session's identity map holds rows only weakly.
        self.persons: dict[str, BrpPerson] = {}

    def prefetch(self, elements: Sequence[etree._Element]) -> None:
        ids = {messages.peek_id(e) for e in elements} - {""}
        bsns = {_peek_bsn(e) for e in elements} - {""}
        s, sid = self.session, self.sandbox_id
        for chunk in _chunks(sorted(ids)):
            self.seen_ids |= set(
                s.exec(
                    select(BrpAppliedChange.message_id).where(
                        BrpAppliedChange.sandbox_id == sid, col(BrpAppliedChange.message_id).in_(chunk)
                    )
                ).all()
            )
            self.seen_ids |= set(
                s.exec(
                    select(BrpHeldMessage.message_id).where(
                        BrpHeldMessage.sandbox_id == sid, col(BrpHeldMessage.message_id).in_(chunk)
                    )
                ).all()
            )
        for chunk in _chunks(sorted(bsns)):
            rows = s.exec(select(BrpPerson).where(BrpPerson.sandbox_id == sid, col(BrpPerson.bsn).in_(chunk))).all()
            self.persons.update((row.bsn, row) for row in rows)
            self.held_bsns |= set(
                s.exec(
                    select(BrpHeldMessage.bsn).where(
                        BrpHeldMessage.sandbox_id == sid, col(BrpHeldMessage.bsn).in_(chunk)
                    )
                ).all()
            )

    def reject(self, index: int, message_id: str, code: str, reason: str, xml: bytes) -> MessageResult:
        self.session.add(
            BrpRejectedMessage(
                sandbox_id=self.sandbox_id,
                message_id=message_id,
                reason_code=code,
                reason=reason,
                xml=xml[:MAX_KEPT_XML_BYTES],
                received_at=self.received_at,
            )
        )
        return MessageResult(index, message_id, Outcome.REJECTED, code, reason)

    def ingest(self, index: int, element: etree._Element) -> MessageResult:
        message_id = messages.peek_id(element)
        raw = messages.raw_xml(element)
        if element.tag != messages.MESSAGE:
            return self.reject(index, message_id, "XSD_INVALID", f"element {element.tag} is not a Mutatie", raw)
        errors = messages.schema_errors(element)
        if errors:
            return self.reject(index, message_id, "XSD_INVALID", "; ".join(errors[:5]), raw)
        mutatie = messages.decode(element)
        if not is_valid_bsn(mutatie.bsn):
            return self.reject(
                index, message_id, "INVALID_BSN", f"Burgerservicenummer {mutatie.bsn} fails the 11-proof", raw
            )
        partner = mutatie.huwelijk.partner_bsn if mutatie.huwelijk else None
        if partner is not None and not is_valid_bsn(partner):
            return self.reject(
                index, message_id, "INVALID_BSN", f"PartnerBurgerservicenummer {partner} fails the 11-proof", raw
            )
        if message_id in self.seen_ids:
            return MessageResult(index, message_id, Outcome.DUPLICATE)
        self.seen_ids.add(message_id)
        row = self.persons.get(mutatie.bsn)
        last = row.last_sequence if row is not None else 0
        decision = rules.sequence_decision(last, mutatie.volgnummer)
        if decision is SequenceDecision.STALE:
            return self.reject(
                index,
                message_id,
                "STALE_SEQUENCE",
                f"Volgnummer {mutatie.volgnummer} of BSN {mutatie.bsn} was already processed (last is {last})",
                raw,
            )
        if decision is SequenceDecision.HOLD:
            return self.hold(index, mutatie, raw)
        result = self.process(index, mutatie, row, raw)
        after = self.persons.get(mutatie.bsn)
        if after is not None and after.last_sequence == mutatie.volgnummer:
            # The number was consumed (applied, or rejected on a rule): successors waiting for it may follow.
            result.released = self.release(mutatie.bsn, mutatie.volgnummer)
        return result

    def hold(self, index: int, mutatie: messages.Mutatie, raw: bytes) -> MessageResult:
        s = self.session
        taken = s.exec(
            select(BrpHeldMessage.message_id).where(
                BrpHeldMessage.sandbox_id == self.sandbox_id,
                BrpHeldMessage.bsn == mutatie.bsn,
                BrpHeldMessage.sequence == mutatie.volgnummer,
            )
        ).first()
        if taken is not None:
            return self.reject(
                index,
                mutatie.bericht_id,
                "DUPLICATE_SEQUENCE",
                f"message {taken} already waits with Volgnummer {mutatie.volgnummer} for BSN {mutatie.bsn}",
                raw,
            )
        s.add(
            BrpHeldMessage(
                sandbox_id=self.sandbox_id,
                message_id=mutatie.bericht_id,
                bsn=mutatie.bsn,
                sequence=mutatie.volgnummer,
                xml=raw,
                received_at=self.received_at,
            )
        )
        self.held_bsns.add(mutatie.bsn)
        return MessageResult(index, mutatie.bericht_id, Outcome.HELD)

    def process(self, index: int, mutatie: messages.Mutatie, row: BrpPerson | None, raw: bytes) -> MessageResult:
        try:
            after = rules.apply(state_of(row) if row is not None else None, mutatie)
        except RuleViolationError as violation:
            if row is not None:
                # The register processed this number (with an error): later messages must not wait for it.
                row.last_sequence = mutatie.volgnummer
                self.session.add(row)
            return self.reject(index, mutatie.bericht_id, violation.code, violation.reason, raw)
        if row is None:
            row = new_row(self.sandbox_id, after)
            self.persons[row.bsn] = row
        else:
            write_state(row, after)
        self.session.add(row)
        self.session.add(
            BrpAppliedChange(
                sandbox_id=self.sandbox_id,
                bsn=mutatie.bsn,
                message_id=mutatie.bericht_id,
                sequence=mutatie.volgnummer,
                event_type=mutatie.gebeurtenis.value,
                effective_date=mutatie.datum_ingang,
                applied_at=self.received_at,
                person_after=person_to_json(after),
            )
        )
        self.applied_count += 1
        return MessageResult(index, mutatie.bericht_id, Outcome.APPLIED)

    def release(self, bsn: str, sequence: int) -> list[str]:
        """Applies held messages of the person that now follow on, in order, while the chain is unbroken."""
        released: list[str] = []
        if bsn not in self.held_bsns:
            return released
        s = self.session
        while True:
            held = s.exec(
                select(BrpHeldMessage).where(
                    BrpHeldMessage.sandbox_id == self.sandbox_id,
                    BrpHeldMessage.bsn == bsn,
                    BrpHeldMessage.sequence == sequence + 1,
                )
            ).first()
            if held is None:
                return released
            s.delete(held)
            element = parse_document(held.xml)
            mutatie = messages.decode(element)
            row = self.persons.get(bsn)
            result = self.process(-1, mutatie, row, held.xml)
            if result.outcome is Outcome.APPLIED:
                released.append(held.message_id)
            sequence += 1


def _peek_bsn(element: etree._Element) -> str:
    found = element.find(f"{{{messages.NAMESPACE}}}Burgerservicenummer")
    return (found.text or "").strip()[:9] if found is not None else ""


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def ingest_document(
    session: Session, *, sandbox_id: str, root: etree._Element, received_at: dt.datetime
) -> tuple[list[MessageResult], int]:
    """Validates and applies every message of a parsed document in this transaction.

    Returns one result per message and how many changes were appended to the
    log (released held messages included). Each message is judged on its own,
    so a bad one never stops a good one next to it.
    """
    # Serialises writers of the applied-change log (stream order) and makes the duplicate and
    # sequence checks below race-free between concurrent submissions.
    lock_log_for_append(session, LOG_NAME)
    elements = [child for child in root if isinstance(child.tag, str)] if root.tag == messages.BATCH else [root]
    batch = _Batch(session, sandbox_id, received_at)
    batch.prefetch(elements)
    results = [batch.ingest(index, element) for index, element in enumerate(elements)]
    return results, batch.applied_count


def record_refused_document(
    session: Session, *, sandbox_id: str, data: bytes, code: str, reason: str, received_at: dt.datetime
) -> None:
    """Keeps a refused document's reason and its first bytes (never more: it may be huge or hostile)."""
    session.add(
        BrpRejectedMessage(
            sandbox_id=sandbox_id,
            message_id="",
            reason_code=code,
            reason=reason,
            xml=data[:MAX_KEPT_XML_BYTES],
            received_at=received_at,
        )
    )
