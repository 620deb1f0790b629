"""Tables of the sandbox admin service (prefix sandbox_)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from services.common.idempotency import IdempotentResponseBase


class SandboxRecord(SQLModel, table=True):
    """One vendor's sandbox. The key is a test-mode secret, shown to its owner, so it is stored as is."""

    __tablename__ = "sandbox_sandbox"

    sandbox_id: str = Field(primary_key=True, max_length=64)
    sandbox_key: str = Field(unique=True, index=True, max_length=100)
    name: str = Field(max_length=200)
    created_at: dt.datetime
    # The clock setting (see services.common.clock.ClockSetting).
    clock_offset_seconds: float = 0.0
    clock_frozen_at: dt.datetime | None = None


class SandboxIdempotentResponse(IdempotentResponseBase, table=True):
    __tablename__ = "sandbox_idempotent_response"
