"""Bulk inserts straight through the driver: rows as pre-built tuples, no per-row SQLAlchemy processing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.sql.schema import ScalarElementColumnDefault
from sqlmodel import Session

# (table name, dialect name, column names) -> (SQL, bind processor per column)
_PLANS: dict[tuple[str, str, tuple[str, ...]], tuple[str, list[Callable[[Any], Any] | None]]] = {}


def _scalar_defaults(table: Table) -> dict[str, object]:
    """The Python-side scalar defaults SQLAlchemy's INSERT would fill in (SQLModel turns `Field(default=…)`
    into one), so a row that leaves a column out gets what the Core INSERT gave it."""
    defaults: dict[str, object] = {}
    for column in table.columns:
        default = column.default
        if isinstance(default, ScalarElementColumnDefault) and default.arg is not None:
            defaults[column.name] = default.arg
    return defaults


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, object]]) -> None:
    """Inserts `rows` (all with the same keys) in the session's transaction and in their order.

    SQLAlchemy's per-row parameter processing for multi-row INSERTs was 11 to 30 % of the bulk path and of
    BRP ingestion (py-spy, issue 11); here each column's bind processor is looked up once and the driver
    gets tuples: sqlite3's `executemany`, and on PostgreSQL psycopg 3's `COPY … FROM STDIN`
    (https://www.psycopg.org/psycopg3/docs/basic/copy.html), which has no RETURNING, so callers that need
    generated keys in order (the outbox) keep their INSERT … RETURNING.
    """
    if not rows:
        return
    # Pending ORM changes first, as session.execute would autoflush them.
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    defaults = _scalar_defaults(table)
    given = tuple(rows[0].keys())
    names = given + tuple(name for name in defaults if name not in given)
    key = (table.name, dialect.name, names)
    plan = _PLANS.get(key)
    if plan is None:
        processors: list[Callable[[Any], Any] | None] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        ]
        columns = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
        quoted = dialect.identifier_preparer.format_table(table)
        if dialect.name == "postgresql":
            sql = f"COPY {quoted} ({columns}) FROM STDIN"
        else:
            sql = f"INSERT INTO {quoted} ({columns}) VALUES ({', '.join('?' for _ in names)})"
        plan = _PLANS[key] = (sql, processors)
    sql, processors = plan
    extra = [defaults[name] for name in names[len(given) :]]
    getters = list(given)
    if any(processors):
        tuples = [
            tuple(
                p(v) if p is not None else v
                for p, v in zip(processors, [row[name] for name in getters] + extra, strict=True)
            )
            for row in rows
        ]
    else:
        tuples = [tuple([row[name] for name in getters] + extra) for row in rows]
    driver = connection.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        if dialect.name == "postgresql":
            with cursor.copy(sql) as copy:
                for values in tuples:
                    copy.write_row(values)
        else:
            cursor.executemany(sql, tuples)
    finally:
        cursor.close()
