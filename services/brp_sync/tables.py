"""Tables of the brp_sync service (prefix brp_sync_); no other service reads them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from services.common.idempotency import IdempotentResponseBase


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BrpIdempotentResponse(IdempotentResponseBase, table=True):
    __tablename__ = "brp_sync_idempotent_response"


class BrpPerson(SQLModel, table=True):
    """The agency's copy of one person (persoonslijst), current values; history is the applied-change log."""

    __tablename__ = "brp_sync_person"
    __table_args__ = (Index("ix_brp_sync_person_birth", "sandbox_id", "birth_date"),)

    sandbox_id: str = Field(primary_key=True, max_length=64)
    bsn: str = Field(primary_key=True, max_length=9)
    given_names: str = Field(max_length=200)
    surname_prefix: str = Field(default="", max_length=20)
    surname: str = Field(max_length=200)
    birth_date: dt.date
    sex: str = Field(max_length=1)
    # Verblijfplaats; all None after emigration.
    street: str | None = Field(default=None, max_length=200)
    house_number: int | None = None
    house_number_addition: str | None = Field(default=None, max_length=10)
    postcode: str | None = Field(default=None, max_length=6)
    city: str | None = Field(default=None, max_length=200)
    municipality_code: str | None = Field(default=None, max_length=4)
    marital_status: str = Field(max_length=30)
    partner_bsn: str | None = Field(default=None, max_length=9)
    death_date: dt.date | None = None
    emigration_date: dt.date | None = None
    # Country moved to: a 4-digit code of BRP table 34 "Landen".
    emigration_country_code: str = Field(default="", max_length=4)
    # Volgnummer of the last message processed for this person (applied, or rejected on a rule).
    last_sequence: int = 0
    # The record's identification as BRP gives it: A-nummer (01.10) and version (versienummer, 80.10).
    a_nummer: str = Field(default="", max_length=10, sa_column_kwargs={"server_default": ""})
    versienummer: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # History kept beside the current values, as JSON (services.brp_sync.store): every stay abroad
    # [[country, first day, day back or null], ...] and every corrected value.
    abroad_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    corrections_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    # True for persons created by SeedRegister (makes seeding idempotent per sandbox).
    seeded: bool = False


class BrpAppliedChange(SQLModel, table=True):
    """Append-only log of applied messages; `cursor` is the stream's resume position."""

    __tablename__ = "brp_sync_applied_change"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "message_id", name="uq_brp_sync_applied_change_message"),
        Index("ix_brp_sync_applied_change_person", "sandbox_id", "bsn", "cursor"),
        # Never hand out a cursor twice on SQLite, even after a purge deleted the highest rows:
        # ROD follows this log across all sandboxes and has passed those numbers already.
        {"sqlite_autoincrement": True},
    )

    cursor: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64, index=True)
    bsn: str = Field(max_length=9)
    message_id: str = Field(max_length=100)
    sequence: int
    event_type: str = Field(max_length=40)
    effective_date: dt.date
    applied_at: dt.datetime = Field(default_factory=_now)
    # The person after the change, as JSON (services.brp_sync.store.person_to_json).
    person_after: str = Field(sa_column=Column(Text, nullable=False))


class BrpRejectedMessage(SQLModel, table=True):
    """A message (or whole document) refused, with the reason and the XML as received."""

    __tablename__ = "brp_sync_rejected_message"

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64, index=True)
    message_id: str = Field(default="", max_length=100)
    reason_code: str = Field(max_length=40)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    xml: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_at: dt.datetime = Field(default_factory=_now)


class BrpHeldMessage(SQLModel, table=True):
    """A valid message waiting for its predecessor (a lower volgnummer of the same person)."""

    __tablename__ = "brp_sync_held_message"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "message_id", name="uq_brp_sync_held_message_message"),
        UniqueConstraint("sandbox_id", "bsn", "sequence", name="uq_brp_sync_held_message_sequence"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64, index=True)
    message_id: str = Field(max_length=100)
    bsn: str = Field(max_length=9)
    sequence: int
    xml: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_at: dt.datetime = Field(default_factory=_now)


class BrpFollowIndication(SQLModel, table=True):
    """Volgindicatie: a subscriber (for example "rod") follows changes to one person, until its einddatum."""

    __tablename__ = "brp_sync_follow_indication"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    subscriber: str = Field(primary_key=True, max_length=100)
    bsn: str = Field(primary_key=True, max_length=9)
    created_at: dt.datetime = Field(default_factory=_now)
    # Einddatum (Haal Centraal BRP update API): changes taking effect on or after it are not sent. None: no end.
    end_date: dt.date | None = None


class BrpScenarioSeed(SQLModel, table=True):
    """A sandbox that holds the scenario persons (scenarios.toml), and the date they were seeded on."""

    __tablename__ = "brp_sync_scenario_seed"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    seed_date: dt.date


class BrpScheduledMessage(SQLModel, table=True):
    """A scenario's BRP message, sent through ingestion once the sandbox clock reaches its effective date."""

    __tablename__ = "brp_sync_scheduled_message"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "person_key", "step", name="uq_brp_sync_scheduled_message_step"),
        # The sender looks for sandboxes with messages not sent yet.
        Index("ix_brp_sync_scheduled_message_pending", "sent_at", "sandbox_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    person_key: str = Field(max_length=64)
    step: int
    bsn: str = Field(max_length=9)
    effective_date: dt.date
    event_type: str = Field(max_length=40)
    message_id: str = Field(max_length=100)
    # What the message changes (services.brp_sync.scenarios.ScheduledMessage.payload).
    payload: str = Field(sa_column=Column(Text, nullable=False))
    sent_at: dt.datetime | None = None
    # How ingestion answered: applied, rejected (with its reason code), ...
    outcome: str = Field(default="", max_length=20)
    reason_code: str = Field(default="", max_length=40)
