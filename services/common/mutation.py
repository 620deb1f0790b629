"""The one path every mutating call takes: write transaction, write lock, idempotent replay or store, notify."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import text
from sqlmodel import Session

from services.common import idempotency
from services.common.caller import Caller
from services.common.database import Database, hold_sqlite_writer_lock, holds_sqlite_writer_lock
from services.common.errors import FieldViolation, invalid_argument
from services.common.idempotency import IdempotentRequest, IdempotentResponseBase
from services.common.statements import run, sql
from services.common.wakeup import LogWakeup

ResponseT = TypeVar("ResponseT", bound=Message)

# The stored answers' key column holds 200 characters.
MAX_IDEMPOTENCY_KEY_LENGTH = 200


def take_write_lock(session: Session, *, sqlite_table: str, names: Sequence[str]) -> None:
    """Serialises this transaction with every other writer that names one of the same locks, until it ends.

    PostgreSQL: one transaction-scoped advisory lock per name, taken in sorted
    order, so two writers never wait for each other in a circle (callers take
    any later locks, such as ROD's pupil locks, after these).
    SQLite allows one writer at a time anyway; a write statement that matches
    no row takes the database's write lock now rather than at the first insert
    (like BEGIN IMMEDIATE), so what this transaction reads next cannot change
    before it writes. `sqlite_table` is any table of the calling service.
    Writers of this process first queue on a lock of their own, so they wait
    their turn instead of sleeping in SQLite's busy handler and retrying.
    """
    if session.get_bind().dialect.name == "sqlite":
        if holds_sqlite_writer_lock(session):
            return  # this transaction took the database's write lock already (ROD asks once per pupil lock)
        hold_sqlite_writer_lock(session)
        run(session, sql(f"UPDATE {sqlite_table} SET sandbox_id = sandbox_id WHERE 0"))
        return
    ordered = sorted(set(names))
    if len(ordered) == 1:
        run(session, sql("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": ordered[0]})
    elif ordered:
        # One statement for many locks (a bulk registration takes 1,000): one round trip, not one a name. The
        # array's order is kept (WITH ORDINALITY); PostgreSQL evaluates a volatile function of the target list
        # after the ORDER BY (since 9.6), so the locks are taken in this sorted order as one statement per name would.
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock(hashtext(t.name)) FROM unnest(CAST(:names AS text[]))"
                " WITH ORDINALITY AS t(name, position) ORDER BY t.position"
            ),
            {"names": ordered},
        )


@dataclass(frozen=True)
class MutationPath:
    """How one register runs its mutating calls.

    `responses` is the register's idempotent-response table; `register_locks`
    are locks every writer of the register takes (RIO serialises all its
    writers on its change log); `followers` are woken after a commit that
    changed something (the register's change log or outbox).
    """

    database: Database
    responses: type[IdempotentResponseBase]
    register_locks: Sequence[str] = ()
    followers: Sequence[LogWakeup] = field(default_factory=tuple)

    async def run(
        self,
        *,
        caller: Caller,
        method: str,
        request: IdempotentRequest,
        response_type: type[ResponseT],
        work: Callable[[Session], ResponseT],
        locks: Sequence[str] = (),
        keep_for_replay: Callable[[ResponseT], ResponseT] | None = None,
    ) -> ResponseT:
        """Runs work(session) once per idempotency key, in one transaction with its stored answer.

        Concurrent retries with one key queue on the key's lock, and each later
        one finds the first one's stored answer: one effect, identical answers.
        `keep_for_replay` is what to store when the answer holds a secret that
        must not be stored (a new sandbox key): a replay then answers without it.
        """
        sandbox_id = caller.require_sandbox()
        key = request.idempotency_key
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
            raise invalid_argument(
                [
                    FieldViolation(
                        "idempotency_key",
                        f"at most {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters",
                        "SBX-INVALID-IDEMPOTENCY-KEY",
                    )
                ]
            )
        names = [*self.register_locks, *locks]
        if key:
            names.append(f"idempotency:{self.responses.__tablename__}:{sandbox_id}:{method}:{key}")

        def transaction(session: Session) -> tuple[ResponseT, bool]:
            take_write_lock(session, sqlite_table=str(self.responses.__tablename__), names=names)
            stored = idempotency.replay(
                session, self.responses, sandbox_id=sandbox_id, method=method, request=request, key=key
            )
            if stored is not None:
                return response_type.FromString(stored), False
            response = work(session)
            idempotency.remember(
                session,
                self.responses,
                sandbox_id=sandbox_id,
                method=method,
                request=request,
                key=key,
                response=response if keep_for_replay is None else keep_for_replay(response),
            )
            return response, True

        response, changed = await self.database.run(transaction)
        if changed:
            numbers = [(follower, follower.notify()) for follower in self.followers]
            # Registers that keep a copy (ROD of RIO and BRP) have it before the caller hears back.
            for follower, number in numbers:
                await follower.delivered(number)
        return response
