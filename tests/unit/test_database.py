"""Database.run on SQLite: work runs inline on the event loop, one transaction each, as if each had its own session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlmodel import Field, Session, SQLModel, select

from services.common.database import Database, hold_sqlite_writer_lock, make_engine


class _Note(SQLModel, table=True):
    __tablename__ = "test_database_note"

    id: int = Field(primary_key=True)
    body: str


@pytest.fixture
def database(tmp_path: Path) -> Database:
    engine = make_engine(f"sqlite:///{tmp_path / 'notes.db'}")
    _Note.__table__.create(engine)  # type: ignore[attr-defined]
    return Database(engine)


def _count(session: Session) -> int:
    return len(session.exec(select(_Note)).all())


async def test_sqlite_work_runs_inline_and_each_piece_commits(database: Database) -> None:
    assert database.inline
    await database.run(lambda s: s.add(_Note(id=1, body="one")))
    # Another connection sees the commit: it was not left open on the shared session.
    with Session(database.engine) as other:
        assert _count(other) == 1


async def test_a_failed_piece_of_work_leaves_nothing_and_the_next_one_starts_clean(database: Database) -> None:
    fired: list[str] = []

    def fails(session: Session) -> None:
        session.add(_Note(id=2, body="never"))
        session.flush()
        event.listen(session, "after_commit", lambda _s: fired.append("failed work's listener"), once=True)
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        await database.run(fails)
    await database.run(lambda s: s.add(_Note(id=3, body="three")))
    assert await database.run(lambda s: sorted(n.id for n in s.exec(select(_Note)).all())) == [3]
    assert fired == []  # the rolled-back work's after_commit listener never fires for later work


async def test_no_orm_object_outlives_its_transaction(database: Database) -> None:
    await database.run(lambda s: s.add(_Note(id=4, body="before")))
    loaded = await database.run(lambda s: s.get(_Note, 4))
    with Session(database.engine) as other:
        other.execute(text("UPDATE test_database_note SET body = 'after' WHERE id = 4"))
        other.commit()
    again = await database.run(lambda s: s.get(_Note, 4))
    assert loaded is not None and again is not None
    assert again.body == "after"  # read anew, not the identity map's copy from the earlier transaction


async def test_the_sqlite_writer_lock_is_released_after_success_and_after_failure(database: Database) -> None:
    def write(note_id: int) -> Callable[[Session], None]:
        def work(session: Session) -> None:
            hold_sqlite_writer_lock(session)
            session.add(_Note(id=note_id, body="locked"))

        return work

    def write_and_fail(session: Session) -> None:
        hold_sqlite_writer_lock(session)
        raise RuntimeError("refused")

    await database.run(write(5))
    with pytest.raises(RuntimeError):
        await database.run(write_and_fail)
    # A lock left held would block this third writer for ever (the lock is not reentrant).
    await database.run(write(6))
    assert await database.run(_count) == 2
