"""Tables of the rod service (prefix rod_); no other service reads them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Column, Index, LargeBinary, String, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from services.common.idempotency import IdempotentResponseBase

# Sandbox id of rows that belong to every sandbox at once: the cursors of the
# RIO and BRP change streams, which cover all sandboxes.
ALL_SANDBOXES = "*"


class RodIdempotentResponse(IdempotentResponseBase, table=True):
    __tablename__ = "rod_idempotent_response"


class RodPupil(SQLModel, table=True):
    """ROD's copy of a pupil (onderwijsdeelnemer): a BSN from BRP, or an onderwijsnummer ROD assigned.

    For a BSN the dates come from BRP (GetPerson at registration, then the BRP
    change stream); for an onderwijsnummer from the school's pupil details.
    """

    __tablename__ = "rod_pupil"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "pupil_number"),
        Index("ix_rod_pupil_identity", "sandbox_id", "birth_date", "surname"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    # The BSN or onderwijsnummer (the two never collide: see services.common.identifiers).
    pupil_number: str = Field(max_length=9)
    has_bsn: bool
    given_names: str = Field(default="", max_length=200)
    surname_prefix: str = Field(default="", max_length=50)
    surname: str = Field(default="", max_length=200)
    birth_date: dt.date | None = None
    sex: int = 0
    postcode: str = Field(default="", max_length=6)
    house_number: int = 0
    house_number_addition: str = Field(default="", max_length=20)
    death_date: dt.date | None = None
    emigration_date: dt.date | None = None
    # Earlier stays abroad that ended with a return, as JSON [[departure, last day abroad], ...]: history is kept.
    abroad_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    # BRP's per-person sequence of the facts held, so an older state never overwrites a newer one.
    brp_sequence: int = 0


class RodOnderwijsnummerSerial(SQLModel, table=True):
    """The next onderwijsnummer serial to try, per sandbox."""

    __tablename__ = "rod_onderwijsnummer_serial"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    next_serial: int = 0


class RodEnrolment(SQLModel, table=True):
    """One enrolment (inschrijving) in its current state (stand)."""

    __tablename__ = "rod_enrolment"
    __table_args__ = (
        Index("ix_rod_enrolment_school", "sandbox_id", "institution_code"),
        Index("ix_rod_enrolment_pupil", "sandbox_id", "pupil_number"),
        # The next registration order is max() + 1 under the write lock: an index keeps it one lookup.
        Index("ix_rod_enrolment_order", "sandbox_id", "registered_order"),
    )

    enrolment_id: str = Field(primary_key=True, max_length=36)
    sandbox_id: str = Field(max_length=64)
    pupil_number: str = Field(max_length=9)
    institution_code: str = Field(max_length=4)
    # Sector of the provider, from RIO (PO, VO, MBO, HO).
    sector: str = Field(max_length=3)
    sequence: int
    # ACTIVE, ENDED or DELETED.
    status: str = Field(max_length=10)
    # Registration order within the sandbox: earlier registrations win a double enrolment.
    registered_order: int
    registered_at: dt.datetime
    updated_at: dt.datetime
    # Signals of the current evaluation, as JSON [{code, text, parameters}].
    signals_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    # Ho: the school's "eerste inschrijving" flag (DUO's JK rule compares it across enrolments).
    first_enrolment: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    # Mbo: leerweg (BOL, BBL) and intensity (VT, DT); ho: mode of study (VOLTIJD, DEELTIJD, DUAAL); "" elsewhere.
    leerweg: str = Field(default="", sa_column=Column(String(3), nullable=False, server_default=""))
    intensity: str = Field(default="", sa_column=Column(String(2), nullable=False, server_default=""))
    study_mode: str = Field(default="", sa_column=Column(String(10), nullable=False, server_default=""))
    # Reden uitschrijving sent with EndEnrolment; "" while active or when none was given.
    end_reason: str = Field(default="", sa_column=Column(String(20), nullable=False, server_default=""))


class RodEnrolmentPeriod(SQLModel, table=True):
    """One period (inschrijvingsperiode) of an enrolment, with the RIO offering it was checked against."""

    __tablename__ = "rod_enrolment_period"
    __table_args__ = (
        Index("ix_rod_period_enrolment", "enrolment_id"),
        Index("ix_rod_period_offering", "sandbox_id", "offering_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    enrolment_id: str = Field(max_length=36)
    position: int
    begin_date: dt.date
    end_date: dt.date | None = None
    location_code: str = Field(max_length=20)
    course_code: str = Field(max_length=20)
    year: int = 0
    offering_id: str = Field(default="", max_length=64)
    # Set when RIO ends the offering (from the RIO change stream).
    offering_end_date: dt.date | None = None


class RodFundingDecision(SQLModel, table=True):
    """The current funding decision of an enrolment on one count date (teldatum)."""

    __tablename__ = "rod_funding_decision"
    __table_args__ = (Index("ix_rod_decision_count", "sandbox_id", "institution_code", "count_date", "funded"),)

    enrolment_id: str = Field(primary_key=True, max_length=36)
    count_date: dt.date = Field(primary_key=True)
    sandbox_id: str = Field(max_length=64)
    institution_code: str = Field(max_length=4)
    funded: bool
    final: bool
    # Space-separated reason codes.
    reason_codes: str = Field(max_length=200)
    reason: str = Field(sa_column=Column(Text, nullable=False))


class RodDocument(SQLModel, table=True):
    """Every document id (UUID) a school sent: a repeated id is refused as a duplicate."""

    __tablename__ = "rod_document"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    document_id: str = Field(primary_key=True, max_length=36)
    enrolment_id: str = Field(max_length=36)
    received_at: dt.datetime


class RodFeedback(SQLModel, table=True):
    """The transactional feedback outbox (terugkoppeling): written in the decision's transaction, read by streams.

    `cursor` is the stream position; `message` is the serialized registry.v1.Feedback
    without cursor and committed_at, which the reader fills in.
    """

    __tablename__ = "rod_feedback"
    __table_args__ = (
        Index("ix_rod_feedback_school", "sandbox_id", "institution_code", "cursor"),
        Index("ix_rod_feedback_cause", "sandbox_id", "cause_id", "cursor"),
        # Never hand out a cursor twice on SQLite, even after a reset deleted the highest rows:
        # followers and resuming schools have passed those numbers already.
        {"sqlite_autoincrement": True},
    )

    cursor: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    institution_code: str = Field(max_length=4)
    enrolment_id: str = Field(max_length=36)
    # FeedbackCause.id and .trigger, as columns so ListFeedback can find all feedback of one cause.
    cause_id: str = Field(default="", max_length=120)
    trigger: int = 0
    committed_at: dt.datetime
    message: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class RodSubscriberAck(SQLModel, table=True):
    """The highest feedback cursor a subscriber acknowledged (scoped by the school acting, if any)."""

    __tablename__ = "rod_subscriber_ack"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    subscriber: str = Field(primary_key=True, max_length=210)
    cursor: int = 0
    updated_at: dt.datetime


class RodStreamCursor(SQLModel, table=True):
    """Where ROD's re-evaluation stands in a peer's change stream ("rio" or "brp"), across all sandboxes."""

    __tablename__ = "rod_stream_cursor"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    stream: str = Field(primary_key=True, max_length=20)
    cursor: int = 0


class RodRioEnd(SQLModel, table=True):
    """ROD's copy of the end date RIO gave a location (by location code) or a provider (by institution code).

    A period taught at an ended location, or at an ended school, is treated as
    an ended offering from that date on (reason OFFERING_ENDED).
    """

    __tablename__ = "rod_rio_end"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    # "location" or "provider".
    kind: str = Field(primary_key=True, max_length=10)
    # The location code, or the provider's institution code (BRIN).
    code: str = Field(primary_key=True, max_length=20)
    end_date: dt.date
