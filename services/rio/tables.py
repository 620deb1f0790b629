"""Tables of the rio service (prefix rio_); no other service reads them.

Every record carries its validity period (begindatum, einddatum inclusive and
nullable) and, where it has versions, a version number: a change never
overwrites history. Indexes serve the lookups ROD makes for every enrolment
(institution code, location code, course code, offering on a date).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from services.common.idempotency import IdempotentResponseBase


class RioBoard(SQLModel, table=True):
    """Onderwijsbestuur: the legal body that owns providers and locations."""

    __tablename__ = "rio_board"
    __table_args__ = (UniqueConstraint("sandbox_id", "board_code", name="uq_rio_board_code"),)

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    board_code: str = Field(max_length=7)
    name: str = Field(max_length=200)
    kvk_number: str = Field(default="", max_length=8)
    begin_date: dt.date
    end_date: dt.date | None = None


class RioProvider(SQLModel, table=True):
    """One version of an onderwijsaanbieder (a school as an organisation)."""

    __tablename__ = "rio_provider"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "provider_code", "version", name="uq_rio_provider_version"),
        Index("ix_rio_provider_institution", "sandbox_id", "institution_code", "begin_date"),
        Index("ix_rio_provider_board", "sandbox_id", "board_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    provider_code: str = Field(max_length=7)
    version: int = 1
    board_code: str = Field(max_length=7)
    institution_code: str = Field(max_length=4)
    name: str = Field(max_length=200)
    sector: int
    begin_date: dt.date
    end_date: dt.date | None = None


class RioLocation(SQLModel, table=True):
    """One version of an onderwijslocatie (a building, with its Dutch address).

    `board_code` is the board that registered it; who uses it on a date is RioLocationUse's answer.
    """

    __tablename__ = "rio_location"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "location_code", "version", name="uq_rio_location_version"),
        Index("ix_rio_location_board", "sandbox_id", "board_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    location_code: str = Field(max_length=7)
    version: int = 1
    board_code: str = Field(max_length=7)
    name: str = Field(max_length=200)
    street: str = Field(default="", max_length=200)
    house_number: int = 0
    house_number_addition: str = Field(default="", max_length=10)
    postcode: str = Field(default="", max_length=6)
    city: str = Field(default="", max_length=100)
    municipality_code: str = Field(default="", max_length=4)
    country_code: str = Field(default="NL", max_length=2)
    begin_date: dt.date
    end_date: dt.date | None = None


class RioLocationUse(SQLModel, table=True):
    """Onderwijslocatiegebruik: board B uses location L during a period; one board at a time per location."""

    __tablename__ = "rio_location_use"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "use_id", name="uq_rio_location_use_id"),
        # Who uses this location on a date: every authorisation check and CheckOffering ask it.
        Index("ix_rio_location_use_location", "sandbox_id", "location_code", "begin_date"),
        Index("ix_rio_location_use_board", "sandbox_id", "board_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    use_id: str = Field(max_length=36)
    location_code: str = Field(max_length=7)
    board_code: str = Field(max_length=7)
    begin_date: dt.date
    end_date: dt.date | None = None


class RioCourse(SQLModel, table=True):
    """One version of an opleiding in the national catalogue (CREBO, ISAT, ILT or po sector code)."""

    __tablename__ = "rio_course"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "course_code", "version", name="uq_rio_course_version"),
        Index("ix_rio_course_sector", "sandbox_id", "sector"),
        Index("ix_rio_course_unit", "sandbox_id", "unit_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    course_code: str = Field(max_length=20)
    # Opleidingseenheidcode (nnnnOnnnn), assigned by RIO; ROD may name a course by either code.
    unit_code: str = Field(default="", max_length=9, sa_column_kwargs={"server_default": ""})
    version: int = 1
    code_system: int
    sector: int
    name: str = Field(max_length=200)
    level: str = Field(default="", max_length=20)
    begin_date: dt.date
    end_date: dt.date | None = None


class RioCourseOffering(SQLModel, table=True):
    """Aangeboden opleiding: provider P offers course C at location L during a period."""

    __tablename__ = "rio_course_offering"
    __table_args__ = (
        UniqueConstraint("sandbox_id", "offering_id", name="uq_rio_offering_id"),
        # CheckOffering: the exact triple on a date.
        Index("ix_rio_offering_triple", "sandbox_id", "provider_code", "course_code", "location_code", "begin_date"),
        Index("ix_rio_offering_location", "sandbox_id", "location_code"),
        Index("ix_rio_offering_course", "sandbox_id", "course_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    offering_id: str = Field(max_length=36)
    provider_code: str = Field(max_length=7)
    course_code: str = Field(max_length=20)
    location_code: str = Field(max_length=7)
    begin_date: dt.date
    end_date: dt.date | None = None


class RioChangeEntry(SQLModel, table=True):
    """The change log: one entry per committed change, the record after it, in commit order.

    AUTOINCREMENT on SQLite so a purged sandbox's highest cursors are never
    handed out again (a follower across all sandboxes has already passed them).
    """

    __tablename__ = "rio_change"
    __table_args__ = (Index("ix_rio_change_sandbox", "sandbox_id", "cursor"), {"sqlite_autoincrement": True})

    cursor: int | None = Field(default=None, primary_key=True)
    sandbox_id: str = Field(max_length=64)
    record_kind: int
    change_kind: int
    code: str = Field(max_length=36)
    committed_at: dt.datetime
    # The serialised record message (Board, Provider, ...) named by record_kind.
    record: bytes


class RioSeedRun(SQLModel, table=True):
    """That a sandbox was seeded, and what the seed created (so a second seed returns the first counts)."""

    __tablename__ = "rio_seed_run"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    size: str = Field(max_length=20)
    seed: int
    # Serialised SeedRegisterResponse of the first seed.
    response: bytes
    created_at: dt.datetime


class RioIdempotentResponse(IdempotentResponseBase, table=True):
    __tablename__ = "rio_idempotent_response"
