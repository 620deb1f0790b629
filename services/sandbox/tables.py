"""Tables of the sandbox admin service (prefix sandbox_)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from services.common.idempotency import IdempotentResponseBase


class SandboxRecord(SQLModel, table=True):
    """One vendor's sandbox (its keys are in sandbox_key, as hashes)."""

    __tablename__ = "sandbox_sandbox"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    # Who it counts against (rules.quota_holder): a vendor's sandbox or a calling host; "" for the default.
    created_by: str = Field(default="", max_length=80, index=True)
    created_at: dt.datetime
    # The clock setting (see services.common.clock.ClockSetting).
    clock_offset_seconds: float = 0.0
    clock_frozen_at: dt.datetime | None = None


class SandboxIdempotentResponse(IdempotentResponseBase, table=True):
    __tablename__ = "sandbox_idempotent_response"


class SandboxKeyRecord(SQLModel, table=True):
    """A secret key of a sandbox, stored as its SHA-256 only: the secret is shown once, when issued."""

    __tablename__ = "sandbox_key"

    key_id: str = Field(primary_key=True, max_length=40)
    sandbox_id: str = Field(index=True, max_length=64)
    key_hash: str = Field(unique=True, index=True, max_length=64)
    prefix: str = Field(max_length=20)
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
