"""The database engine, made in one place, and how services run their work in a transaction off the event loop."""

from __future__ import annotations

import asyncio
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

T = TypeVar("T")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for SQLite (WAL, foreign keys on) or PostgreSQL (psycopg 3)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets streams read while a writer commits; NORMAL sync is safe under WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@contextmanager
def scratch_postgresql_database(server_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database on a PostgreSQL server, dropped (with its connections) afterwards.

    Tests and benchmarks use it so that no run sees another run's rows.
    """
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


class Database:
    """A service's handle on its database: one transaction per piece of work, run where it costs least.

    PostgreSQL work runs in a worker thread, so the event loop serves other
    calls while a statement waits on the network. SQLite work runs on the
    event loop itself: a statement is a local call of microseconds, one
    process is its only writer, and handing each transaction to a worker
    thread made every writer wait for the GIL while it held SQLite's write
    lock (issue 11: 125 -> 188 registrations/s and 8.2 -> 5.4 ms of CPU each,
    `python -m benchmarks load`). The price: a long SQLite transaction (a bulk
    batch) holds up the process's other calls until it commits.
    """

    def __init__(self, engine: Engine, *, inline: bool | None = None) -> None:
        self.engine = engine
        self.inline = engine.dialect.name == "sqlite" if inline is None else inline
        # The inline transactions' one session, on a connection of its own: inline work never overlaps
        # (it runs on the event loop from start to commit), and a Session made and closed per transaction,
        # with its pool checkout, cost about 80 µs of the 110 µs a one-statement transaction took.
        self._inline_session: Session | None = None

    def transaction(self, work: Callable[[Session], T]) -> T:
        """Runs work(session) in one transaction: commit when it returns, roll back when it raises."""
        session = Session(self.engine, expire_on_commit=False)
        try:
            with session:
                result = work(session)
                session.commit()
                return result
        finally:
            # After the commit or rollback (the session is closed), never before.
            writer = session.info.pop(_WRITER_LOCK, None)
            if writer is not None:
                writer.release()

    async def run(self, work: Callable[[Session], T]) -> T:
        if self.inline:
            return self._inline_transaction(work)
        return await asyncio.to_thread(self.transaction, work)

    def _inline_transaction(self, work: Callable[[Session], T]) -> T:
        """Database.transaction on the inline session: committed and emptied after each piece of work."""
        session = self._inline_session
        if session is None:
            session = self._inline_session = Session(bind=self.engine.connect(), expire_on_commit=False)
        try:
            result = work(session)
            session.commit()
        except BaseException:
            # A failed transaction leaves nothing behind: the next one gets a new session (a listener
            # registered on this one, such as an after_commit count, must never fire for later work).
            self._inline_session = None
            _discard(session)
            raise
        else:
            session.expunge_all()  # no ORM object outlives its transaction, as with a session per transaction
            return result
        finally:
            # After the commit or rollback, never before.
            writer = session.info.pop(_WRITER_LOCK, None)
            if writer is not None:
                writer.release()


def _discard(session: Session) -> None:
    """Rolls back and closes an inline session and its connection; a connection that fails is not reused."""
    connection = session.get_bind()
    assert isinstance(connection, Connection)
    try:
        session.close()
    except SQLAlchemyError:
        connection.invalidate()
    finally:
        connection.close()


_WRITER_LOCK = "sqlite_writer_lock"
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_SQLITE_WRITERS_GUARD = threading.Lock()


def holds_sqlite_writer_lock(session: Session) -> bool:
    """Whether this transaction already queued for (and took) the process's SQLite writer lock."""
    return _WRITER_LOCK in session.info


def hold_sqlite_writer_lock(session: Session) -> None:
    """Queues this transaction behind the process's other SQLite writers until it ends (Database.transaction).

    SQLite allows one writer; a second one that finds the database locked
    sleeps in the busy handler (1 ms, then longer, up to 100 ms a try), which
    wastes turns and makes latency jump under concurrent writes. A lock per
    engine hands the turn over at once. Only writers that declare themselves
    first (take_write_lock) queue here; any other writer still meets SQLite's
    own lock and busy timeout, so nothing can wait in a circle.
    """
    if _WRITER_LOCK in session.info:
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _SQLITE_WRITERS_GUARD:
        writer = _SQLITE_WRITERS.setdefault(engine, threading.Lock())
    writer.acquire()
    session.info[_WRITER_LOCK] = writer


def lock_log_for_append(session: Session, log_name: str) -> None:
    """Serialises writers of one append-only log until this transaction ends.

    Readers follow a log by "id greater than my cursor". On PostgreSQL ids are
    handed out at insert but become visible at commit, so without this lock a
    reader could see id 7 commit before id 6 and skip 6 for ever. With it, ids
    of one log commit in id order. SQLite already allows one writer at a time.

    On PostgreSQL it also queues a NOTIFY on the log's channel, which the
    server delivers at commit (and drops on rollback), so streams in other
    processes and replicas wake at once (see LogWakeup.listen_postgres).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": log_name})
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": notify_channel(log_name)})


def notify_channel(log_name: str) -> str:
    """The LISTEN/NOTIFY channel of an append-only log."""
    return f"log_{log_name}"


class Claim:
    """Work one process of several does at a time: a PostgreSQL session advisory lock on its own connection.

    Held across many transactions (unlike the transaction-scoped write
    locks), and let go when released or when the process dies (its
    connection closes). SQLite serves one process, so there a claim is
    always granted and holds nothing.
    """

    def __init__(self, connection: Connection | None, name: str) -> None:
        self._connection = connection
        self._name = name

    @classmethod
    def try_take(cls, engine: Engine, name: str) -> Claim | None:
        """The claim, or None when another process (or task) holds it now."""
        if not is_postgresql(engine):
            return cls(None, name)
        connection = engine.connect()
        try:
            taken = connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:name))"), {"name": name}).scalar()
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return None
        return cls(connection, name)

    def release(self) -> None:
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": self._name})
            connection.commit()
        except BaseException:
            # Session locks outlive a return to the pool: a connection that could not unlock is closed for good.
            connection.invalidate()
            raise
        finally:
            connection.close()
