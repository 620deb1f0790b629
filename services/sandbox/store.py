"""Persistence of the sandbox admin: sandboxes, their keys and their clock settings."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from services.common.clock import ClockSetting
from services.sandbox.rules import Sandbox, SandboxKey
from services.sandbox.tables import SandboxKeyRecord, SandboxRecord


def _sandbox(record: SandboxRecord) -> Sandbox:
    frozen = record.clock_frozen_at
    if frozen is not None and frozen.tzinfo is None:
        frozen = frozen.replace(tzinfo=dt.UTC)
    created = record.created_at if record.created_at.tzinfo else record.created_at.replace(tzinfo=dt.UTC)
    return Sandbox(
        sandbox_id=record.sandbox_id,
        key="",  # only the hash is stored; the secret is known only when it is issued
        name=record.name,
        created_at=created,
        clock=ClockSetting(offset=dt.timedelta(seconds=record.clock_offset_seconds), frozen_at=frozen),
    )


def get(session: Session, sandbox_id: str) -> Sandbox | None:
    record = session.get(SandboxRecord, sandbox_id)
    return _sandbox(record) if record is not None else None


def active_key(session: Session, key_hash: str) -> SandboxKey | None:
    """The unrevoked key with this hash, if any."""
    record = session.exec(select(SandboxKeyRecord).where(SandboxKeyRecord.key_hash == key_hash)).first()
    if record is None or record.revoked_at is not None:
        return None
    return _key(record)


def key(session: Session, key_id: str) -> SandboxKey | None:
    record = session.get(SandboxKeyRecord, key_id)
    return _key(record) if record is not None else None


def keys_of(session: Session, sandbox_id: str) -> list[SandboxKey]:
    rows = session.exec(
        select(SandboxKeyRecord)
        .where(SandboxKeyRecord.sandbox_id == sandbox_id)
        .order_by(SandboxKeyRecord.created_at, SandboxKeyRecord.key_id)  # type: ignore[arg-type]
    ).all()
    return [_key(r) for r in rows]


def add_key(session: Session, key: SandboxKey) -> None:
    session.add(
        SandboxKeyRecord(
            key_id=key.key_id,
            sandbox_id=key.sandbox_id,
            key_hash=key.key_hash,
            prefix=key.prefix,
            created_at=key.created_at,
        )
    )


def revoke_key(session: Session, key_id: str, at: dt.datetime) -> SandboxKey | None:
    record = session.get(SandboxKeyRecord, key_id)
    if record is None:
        return None
    if record.revoked_at is None:
        record.revoked_at = at
        session.add(record)
    return _key(record)


def _key(record: SandboxKeyRecord) -> SandboxKey:
    def aware(moment: dt.datetime | None) -> dt.datetime | None:
        return moment.replace(tzinfo=dt.UTC) if moment is not None and moment.tzinfo is None else moment

    created = aware(record.created_at)
    assert created is not None
    return SandboxKey(
        key_id=record.key_id,
        sandbox_id=record.sandbox_id,
        key_hash=record.key_hash,
        prefix=record.prefix,
        created_at=created,
        revoked_at=aware(record.revoked_at),
    )


def by_name(session: Session, name: str) -> Sandbox | None:
    record = session.exec(select(SandboxRecord).where(SandboxRecord.name == name)).first()
    return _sandbox(record) if record is not None else None


def count_created_by(session: Session, created_by: str) -> int:
    return len(session.exec(select(SandboxRecord.sandbox_id).where(SandboxRecord.created_by == created_by)).all())


def add(session: Session, sandbox: Sandbox, created_by: str = "") -> None:
    session.add(
        SandboxRecord(
            sandbox_id=sandbox.sandbox_id,
            name=sandbox.name,
            created_by=created_by,
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
