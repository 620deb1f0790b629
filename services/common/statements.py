"""Statements the hot paths run many times a second: built once at import, run on the session's connection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import CursorResult, Executable, TextClause, text
from sqlmodel import Session

# Building a Core statement per call (`select(...).where(column == value)`) and sending it through the ORM
# session's execute path cost about 70 µs of CPU for a one-row select; the same statement built once with
# bindparam() placeholders and run on the session's connection costs about 16 µs (SQLAlchemy caches its
# compiled form and its cache key on the statement object). A registration runs some twenty statements.


def run(
    session: Session, statement: Executable, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
) -> CursorResult[*tuple[Any, ...]]:
    """Runs a statement built once (with `bindparam` placeholders) in the session's transaction.

    It bypasses the ORM: nothing pending in the session is flushed first, so callers that mix ORM objects and
    these statements flush before reading what the ORM wrote.
    """
    return session.connection().execute(statement, params)


_TEXTS: dict[str, TextClause] = {}


def sql(statement: str) -> TextClause:
    """A `text()` statement made once per distinct SQL string (for SQL assembled from fixed names)."""
    made = _TEXTS.get(statement)
    if made is None:
        made = _TEXTS[statement] = text(statement)
    return made
