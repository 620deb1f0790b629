"""Pure rules and types of sandboxes: identifiers and secret keys, names, creator scopes, the clock's range."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field

import grpc

from services.common.clock import ClockSetting
from services.common.codes import known
from services.common.errors import FieldViolation, RegistryError, failed_precondition, invalid_argument

MAX_NAME_LENGTH = 200
DEFAULT_NAME = "unnamed sandbox"
# The registers' date rules (count dates, ages, validity periods) are meant for dates near today; a clock
# set to the year 9999 once made ROD's count-date computation fail and stalled every sandbox's re-evaluation.
EARLIEST_CLOCK = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
LATEST_CLOCK = dt.datetime(2101, 1, 1, tzinfo=dt.UTC)
CLOCK_OUT_OF_RANGE = known("SBX-CLOCK-OUT-OF-RANGE")


@dataclass(frozen=True)
class Sandbox:
    """One vendor's sandbox: its id (safe to log), its secret key, its name and its clock setting."""

    sandbox_id: str
    key: str
    name: str
    created_at: dt.datetime
    clock: ClockSetting = field(default_factory=ClockSetting)


class ClockMove(enum.Enum):
    """The three ways SetClock moves a clock (named as the request's fields)."""

    TRAVEL_TO = "travel_to"
    FREEZE_AT = "freeze_at"
    REAL_TIME = "reset_to_real_time"


@dataclass(frozen=True)
class ClockTarget:
    """Where SetClock moves a sandbox's clock; `moment` is None only for REAL_TIME."""

    move: ClockMove
    moment: dt.datetime | None = None


def new_sandbox(name: str, created_at: dt.datetime) -> Sandbox:
    """A new sandbox with a fresh id and an unguessable test-mode key."""
    return Sandbox(
        sandbox_id="sbx_" + uuid.uuid4().hex[:20],
        key=new_secret(),
        name=name or DEFAULT_NAME,
        created_at=created_at,
    )


KEY_PREFIX_LENGTH = 12  # "sk_test_" and four characters: enough to recognise a key, useless to guess it
LAST_ACTIVE_KEY = known("SBX-LAST-ACTIVE-KEY")


@dataclass(frozen=True)
class SandboxKey:
    """One key of a sandbox, as stored: never the secret, only its hash and first characters."""

    key_id: str
    sandbox_id: str
    key_hash: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def new_secret() -> str:
    """192 random bits: `sk_test_` marks a test-mode key, as payment providers do."""
    return "sk_test_" + secrets.token_urlsafe(24)


def hash_key(secret: str) -> str:
    """The stored form of a key. A fast hash suffices: the secret has 192 random bits, nothing to brute-force."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_record(sandbox_id: str, secret: str, created_at: dt.datetime) -> SandboxKey:
    return SandboxKey(
        key_id="key_" + uuid.uuid4().hex[:16],
        sandbox_id=sandbox_id,
        key_hash=hash_key(secret),
        prefix=secret[:KEY_PREFIX_LENGTH],
        created_at=created_at,
    )


def check_revocable(key: SandboxKey, active_keys: int) -> None:
    """A sandbox always keeps one active key: revoking the last would lock its owner out for good."""
    if key.active and active_keys <= 1:
        raise failed_precondition(
            [FieldViolation("key_id", "the sandbox's last active key; rotate first", LAST_ACTIVE_KEY)]
        )


def check_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise invalid_argument([FieldViolation("name", f"at most {MAX_NAME_LENGTH} characters", "SBX-TOO-LONG")])
    return name


SANDBOXES_PER_CREATOR = known("SBX-SANDBOXES-PER-CREATOR")


def quota_holder(sandbox_id: str | None, connection: str) -> str:
    """Who a new sandbox counts against: the vendor's sandbox (by its key), else the calling host.

    Not the connection, as for idempotency: a caller could open a new one for
    every sandbox. Every anonymous caller on one host shares that host's quota.
    """
    if sandbox_id is not None:
        return f"creator:{sandbox_id}"
    host = connection.rsplit(":", 1)[0] if connection.count(":") >= 2 else connection
    return "host:" + hashlib.sha256(host.encode()).hexdigest()[:32]


def check_quota(existing: int, limit: int) -> None:
    if limit and existing >= limit:
        raise RegistryError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"at most {limit} sandboxes per creator: reset and reuse one (ResetSandbox)",
            SANDBOXES_PER_CREATOR,
        )


def creator_scope(sandbox_id: str | None, connection: str) -> str:
    """Whose CreateSandbox idempotency keys these are: a vendor's sandbox (by its key), else one connection.

    CreateSandbox needs no key, so an anonymous caller is known only by the
    connection it calls on: its retries on that connection find its answer,
    and nobody else's call ever replays it (with its secret key).
    """
    if sandbox_id is not None:
        return f"creator:{sandbox_id}"
    return "connection:" + hashlib.sha256(connection.encode()).hexdigest()[:32]


def clock_setting(target: ClockTarget, real_now: dt.datetime) -> ClockSetting:
    """The clock setting that puts the sandbox at the target; INVALID_ARGUMENT outside 1990 to 2100."""
    if target.move is ClockMove.REAL_TIME or target.moment is None:
        return ClockSetting()
    if not EARLIEST_CLOCK <= target.moment < LATEST_CLOCK:
        raise invalid_argument(
            [
                FieldViolation(
                    target.move.value,
                    f"{target.moment.isoformat()} is outside the sandbox clock's range, "
                    f"{EARLIEST_CLOCK.year} to {LATEST_CLOCK.year - 1}",
                    CLOCK_OUT_OF_RANGE,
                )
            ]
        )
    if target.move is ClockMove.FREEZE_AT:
        return ClockSetting.freeze(target.moment)
    return ClockSetting.travel_to(target.moment, real_now)
