"""Persistence of the sandbox admin: sandboxes, their keys and their clock settings."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from services.common.clock import ClockSetting
from services.sandbox.rules import Sandbox
from services.sandbox.tables import SandboxRecord


def _sandbox(record: SandboxRecord) -> Sandbox:
    frozen = record.clock_frozen_at
    if frozen is not None and frozen.tzinfo is None:
        frozen = frozen.replace(tzinfo=dt.UTC)
    created = record.created_at if record.created_at.tzinfo else record.created_at.replace(tzinfo=dt.UTC)
    return Sandbox(
        sandbox_id=record.sandbox_id,
        key=record.sandbox_key,
        name=record.name,
        created_at=created,
        clock=ClockSetting(offset=dt.timedelta(seconds=record.clock_offset_seconds), frozen_at=frozen),
    )


def get(session: Session, sandbox_id: str) -> Sandbox | None:
    record = session.get(SandboxRecord, sandbox_id)
    return _sandbox(record) if record is not None else None


def by_key(session: Session, key: str) -> Sandbox | None:
    record = session.exec(select(SandboxRecord).where(SandboxRecord.sandbox_key == key)).first()
    return _sandbox(record) if record is not None else None


def by_name(session: Session, name: str) -> Sandbox | None:
    record = session.exec(select(SandboxRecord).where(SandboxRecord.name == name)).first()
    return _sandbox(record) if record is not None else None


def add(session: Session, sandbox: Sandbox) -> None:
    session.add(
        SandboxRecord(
            sandbox_id=sandbox.sandbox_id,
            sandbox_key=sandbox.key,
            name=sandbox.name,
            created_at=sandbox.created_at,
            clock_offset_seconds=sandbox.clock.offset.total_seconds(),
            clock_frozen_at=sandbox.clock.frozen_at,
        )
    )


def set_clock(session: Session, sandbox_id: str, setting: ClockSetting) -> Sandbox | None:
    """Stores the clock setting; the sandbox after it, or None when there is no such sandbox."""
    record = session.get(SandboxRecord, sandbox_id)
    if record is None:
        return None
    record.clock_offset_seconds = setting.offset.total_seconds()
    record.clock_frozen_at = setting.frozen_at
    session.add(record)
    return _sandbox(record)
