"""The use cases of the sandbox admin, one function per operation, over a unit of work and the register gateways."""

from __future__ import annotations

import datetime as dt

import grpc
from sqlmodel import Session

from services.common.database import Database
from services.common.errors import RegistryError, not_found
from services.sandbox import rules, store
from services.sandbox.peers import RegisterCallError, Registers
from services.sandbox.rules import ClockTarget, Sandbox, SandboxKey


def create_sandbox(session: Session, *, name: str, now: dt.datetime, created_by: str = "", quota: int = 0) -> Sandbox:
    """A new sandbox with its first key; the returned Sandbox is the only place the secret ever appears.

    `quota` bounds the sandboxes one creator holds (0: no bound), so one
    caller cannot fill a shared sandbox service.
    """
    name = rules.check_name(name)
    if quota:
        rules.check_quota(store.count_created_by(session, created_by), quota)
    sandbox = rules.new_sandbox(name, now)
    store.add(session, sandbox, created_by)
    store.add_key(session, rules.key_record(sandbox.sandbox_id, sandbox.key, now))
    return sandbox


def sandbox_id_for_key(session: Session, key: str) -> str | None:
    """The sandbox an unrevoked key belongs to, or None (unknown or revoked)."""
    found = store.active_key(session, rules.hash_key(key))
    return found.sandbox_id if found is not None else None


def rotate_key(session: Session, *, sandbox_id: str, now: dt.datetime) -> tuple[SandboxKey, str]:
    """A new key for the sandbox (the others stay valid); returns it and its secret, shown this once."""
    secret = rules.new_secret()
    key = rules.key_record(sandbox_id, secret, now)
    store.add_key(session, key)
    return key, secret


def revoke_key(session: Session, *, sandbox_id: str, key_id: str, now: dt.datetime) -> SandboxKey:
    """Revokes one of the sandbox's keys (never its last active one); revoking twice changes nothing."""
    found = store.key(session, key_id)
    if found is None or found.sandbox_id != sandbox_id:
        raise not_found(f"key {key_id}", "key_id", "SBX-UNKNOWN-KEY")
    rules.check_revocable(found, sum(k.active for k in store.keys_of(session, sandbox_id)))
    revoked = store.revoke_key(session, key_id, now)
    assert revoked is not None
    return revoked


def list_keys(session: Session, *, sandbox_id: str) -> list[SandboxKey]:
    return store.keys_of(session, sandbox_id)


def get_sandbox(session: Session, sandbox_id: str) -> Sandbox:
    """The sandbox; NOT_FOUND when a register names one that does not exist (a key always names one)."""
    found = store.get(session, sandbox_id)
    if found is None:
        raise not_found(f"sandbox {sandbox_id}", "x-sandbox-id", "SBX-UNKNOWN-SANDBOX")
    return found


def set_clock(session: Session, *, sandbox_id: str, target: ClockTarget, real_now: dt.datetime) -> Sandbox:
    """Moves the sandbox clock (travel, freeze or back to real time), within the clock's range."""
    setting = rules.clock_setting(target, real_now)
    moved = store.set_clock(session, sandbox_id, setting)
    if moved is None:
        raise not_found(f"sandbox {sandbox_id}", "x-sandbox-id", "SBX-UNKNOWN-SANDBOX")
    return moved


def reset_clock(session: Session, *, sandbox_id: str, real_now: dt.datetime) -> Sandbox:
    """Back to real time, as after a reset."""
    return set_clock(session, sandbox_id=sandbox_id, target=ClockTarget(rules.ClockMove.REAL_TIME), real_now=real_now)


async def seed_registers(
    registers: Registers,
    *,
    sandbox_id: str,
    size: str,
    seed: int,
    idempotency_key: str,
    synthetic_bsns: bool = False,
    national_pupils: int = 0,
) -> dict[str, int]:
    """Seeds every register, or none: when one fails, every register is purged again and the call fails.

    `national_pupils` (needs `synthetic_bsns`) adds the national primary register: that many pupils in
    BRP, each enrolled once in ROD through its public bulk RPC (Registers.national).

    The counts of created records by kind ("boards", "persons", ...). A
    failure leaves the sandbox empty in every register (as ResetSandbox
    would, clock untouched), never half seeded, and names the register.
    """
    created: dict[str, int] = {}
    try:
        for register in registers.seeding:
            created.update(
                await register.seed(
                    sandbox_id,
                    size=size,
                    seed=seed,
                    idempotency_key=idempotency_key,
                    synthetic_bsns=synthetic_bsns,
                    national_pupils=national_pupils,
                )
            )
        if registers.scenarios is not None:
            # The scenario persons' enrolments at other schools go through ROD's contract, after RIO and BRP.
            enrolled = await registers.scenarios.enrol_elsewhere(sandbox_id, idempotency_key=idempotency_key)
            created["scenario_enrolments"] = enrolled
    except RegisterCallError as failed:
        unpurged = await _purge_each(registers, sandbox_id, idempotency_key="")
        state = (
            "every register was emptied again"
            if not unpurged
            else f"emptying it again failed too ({'; '.join(map(str, unpurged))}): call ResetSandbox"
        )
        raise RegistryError(
            failed.code,
            f"SeedSandbox failed in {failed.register} ({failed.code.name}: {failed.detail}); {state}",
            "SBX-SEED-FAILED",
            metadata={"register": failed.register},
        ) from None
    if national_pupils:
        created["national_enrolments"] = await _enrol_national(
            registers, sandbox_id=sandbox_id, pupils=national_pupils, idempotency_key=idempotency_key
        )
    return created


async def _enrol_national(registers: Registers, *, sandbox_id: str, pupils: int, idempotency_key: str) -> int:
    """The national pupils' enrolments; a failure keeps what was enrolled, for a repeated seed to finish.

    Unlike the rest of the seed, 1,300,000 enrolments (about 20 minutes) are not thrown away for one
    failed batch: every register is seeded by now, and repeating SeedSandbox registers only the pupils
    still missing (document ids derive from the sandbox and the pupil).
    """
    if registers.national is None:
        raise RegistryError(grpc.StatusCode.UNIMPLEMENTED, "no national seed in this sandbox", "SBX-SEED-FAILED")
    try:
        return await registers.national.enrol(sandbox_id, pupils=pupils, idempotency_key=idempotency_key)
    except RegisterCallError as failed:
        raise RegistryError(
            failed.code,
            f"the national seed's enrolments stopped in {failed.register} ({failed.code.name}: {failed.detail}); "
            "what was enrolled stays: repeat SeedSandbox with the same size, seed and national_pupils to finish",
            "SBX-NATIONAL-SEED-INCOMPLETE",
            metadata={"register": failed.register},
        ) from None


async def purge_registers(registers: Registers, *, sandbox_id: str, idempotency_key: str) -> None:
    """Empties the sandbox in every register; a failing one does not stop the others, and is named.

    Deletions in other registers cannot be undone, so a failure leaves the
    clock alone and asks for the call again (each purge is idempotent).
    """
    unpurged = await _purge_each(registers, sandbox_id, idempotency_key=idempotency_key)
    if unpurged:
        first = unpurged[0]
        raise RegistryError(
            first.code,
            f"ResetSandbox could not empty {', '.join(u.register for u in unpurged)} "
            f"({'; '.join(map(str, unpurged))}); the other registers are empty: repeat ResetSandbox to finish",
            "SBX-RESET-INCOMPLETE",
            metadata={"registers": ",".join(u.register for u in unpurged)},
        )


async def _purge_each(registers: Registers, sandbox_id: str, *, idempotency_key: str) -> list[RegisterCallError]:
    failures: list[RegisterCallError] = []
    for register in registers.purging:
        try:
            await register.purge(sandbox_id, idempotency_key=idempotency_key)
        except RegisterCallError as failed:
            failures.append(failed)
    return failures


def ensure_sandbox_named(session: Session, *, name: str, now: dt.datetime) -> tuple[Sandbox, bool]:
    """The sandbox with this name, created when absent (`sandbox up`'s default sandbox); True when created."""
    existing = store.by_name(session, name)
    if existing is not None:
        return existing, False
    return create_sandbox(session, name=name, now=now), True


async def ensure_default_sandbox(
    database: Database, name: str = "default", known_key: str = ""
) -> tuple[str, str, bool]:
    """(sandbox_id, key, created) of the sandbox named `name`, creating it when absent (used by `sandbox up`).

    Only hashes are stored, so an existing sandbox's key is known only to
    whoever kept it: `known_key` when it is still active, else a new key is
    issued (the old ones stay valid until revoked).
    """
    now = dt.datetime.now(dt.UTC)

    def work(session: Session) -> tuple[str, str, bool]:
        sandbox, created = ensure_sandbox_named(session, name=name, now=now)
        if created:
            return sandbox.sandbox_id, sandbox.key, True
        if known_key and sandbox_id_for_key(session, known_key) == sandbox.sandbox_id:
            return sandbox.sandbox_id, known_key, False
        _key, secret = rotate_key(session, sandbox_id=sandbox.sandbox_id, now=now)
        return sandbox.sandbox_id, secret, False

    return await database.run(work)
