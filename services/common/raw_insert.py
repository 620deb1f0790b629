"""Bulk inserts and updates straight through the driver: rows as pre-built tuples, no per-row SQLAlchemy processing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.schema import ScalarElementColumnDefault
from sqlmodel import Session

# A column's bind processor by its position in a row: what SQLAlchemy would do to the value for this driver.
Processors = list[tuple[int, Callable[[Any], Any]]]
# (statement kind, table name, dialect name, column names) -> (SQL, processors)
_PLANS: dict[tuple[str, str, str, tuple[str, ...]], tuple[str, Processors]] = {}


def _scalar_defaults(table: Table) -> dict[str, object]:
    """The Python-side scalar defaults SQLAlchemy's INSERT would fill in (SQLModel turns `Field(default=…)`
    into one), so a row that leaves a column out gets what the Core INSERT gave it."""
    defaults: dict[str, object] = {}
    for column in table.columns:
        default = column.default
        if isinstance(default, ScalarElementColumnDefault) and default.arg is not None:
            defaults[column.name] = default.arg
    return defaults


def bind_processors(table: Table, names: Sequence[str], dialect: Dialect) -> Processors:
    """The columns (by position in `names`) whose type converts values before the driver gets them."""
    found = [(i, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for i, name in enumerate(names)]
    return [(i, processor) for i, processor in found if processor is not None]


def driver_rows(rows: Iterable[Sequence[object]], processors: Processors) -> list[Sequence[object]]:
    """The rows with each value converted as its column's bind processor says (the rows as they are when none
    converts). One list per row and a loop over the converting columns only: the generator over every column
    of every row this replaced was a tenth of the bulk insert's time."""
    if not processors:
        return rows if isinstance(rows, list) else list(rows)
    converted: list[Sequence[object]] = []
    # A value that is the very object of the row before (a batch's one timestamp) reuses its conversion:
    # bind processors are pure, and a timezone-aware datetime's costs 1.7 µs (issue 11).
    last_in: list[object] = [_NOTHING] * len(processors)
    last_out: list[object] = [None] * len(processors)
    for row in rows:
        values = list(row)
        for n, (i, process) in enumerate(processors):
            value = values[i]
            if value is not last_in[n]:
                last_in[n], last_out[n] = value, process(value)
            values[i] = last_out[n]
        converted.append(values)
    return converted


_NOTHING = object()


def plan(
    session: Session,
    kind: str,
    table: Table,
    names: tuple[str, ...],
    make_sql: Callable[[Dialect], str],
    processors: Callable[[Table, Sequence[str], Dialect], Processors] = bind_processors,
) -> tuple[str, Processors]:
    """A driver statement's SQL and processors, made once per kind, table, dialect and columns."""
    dialect = session.connection().dialect
    key = (kind, table.name, dialect.name, names)
    made = _PLANS.get(key)
    if made is None:
        made = _PLANS[key] = (make_sql(dialect), processors(table, names, dialect))
    return made


def placeholder(dialect: Dialect) -> str:
    """The driver's parameter mark: psycopg 3's `%s`, sqlite3's `?`."""
    return "%s" if dialect.name == "postgresql" else "?"


@contextmanager
def driver_cursor(session: Session) -> Iterator[Any]:
    """A cursor of the driver's connection under the session's transaction, closed afterwards."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, object]]) -> None:
    """Inserts `rows` (all with the same keys) in the session's transaction and in their order.

    SQLAlchemy's per-row parameter processing for multi-row INSERTs was 11 to 30 % of the bulk path and of
    BRP ingestion (py-spy, issue 11); here each column's bind processor is looked up once and the driver
    gets tuples: sqlite3's `executemany`, and on PostgreSQL psycopg 3's `COPY … FROM STDIN`
    (https://www.psycopg.org/psycopg3/docs/basic/copy.html), which has no RETURNING: a caller that needs
    generated keys in order takes them first or derives them (ROD's bulk outbox, store.append_feedbacks).
    """
    if not rows:
        return
    # Pending ORM changes first, as session.execute would autoflush them.
    session.flush()
    defaults = _scalar_defaults(table)
    given = tuple(rows[0].keys())
    names = given + tuple(name for name in defaults if name not in given)

    def make_sql(dialect: Dialect) -> str:
        columns = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
        quoted = dialect.identifier_preparer.format_table(table)
        if dialect.name == "postgresql":
            return f"COPY {quoted} ({columns}) FROM STDIN"
        return f"INSERT INTO {quoted} ({columns}) VALUES ({', '.join('?' for _ in names)})"

    sql, processors = plan(session, "insert", table, names, make_sql)
    extra = [defaults[name] for name in names[len(given) :]]
    values = driver_rows(([row[name] for name in given] + extra for row in rows), processors)
    with driver_cursor(session) as cursor:
        if session.connection().dialect.name == "postgresql":
            with cursor.copy(sql) as copy:
                for row in values:
                    copy.write_row(row)
        else:
            cursor.executemany(sql, values)


def update_rows(
    session: Session, table: Table, *, columns: Sequence[str], key: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """Sets `columns` of one row per tuple (the values of `columns`, then of `key`, which names the row), in the
    session's transaction, with one driver `executemany`.

    A Core `update()` run with many parameter sets spent most of its time in SQLAlchemy's per-row parameter
    processing (a fifth of BRP ingestion, issue 11). sqlite3 runs the statement per row in C; psycopg 3 sends
    the rows in pipeline mode, one round trip for all (https://www.psycopg.org/psycopg3/docs/advanced/pipeline.html).
    """
    if not rows:
        return
    session.flush()
    names = (*columns, *key)

    def make_sql(dialect: Dialect) -> str:
        mark = placeholder(dialect)
        quote = dialect.identifier_preparer.quote
        assignments = ", ".join(f"{quote(name)} = {mark}" for name in columns)
        where = " AND ".join(f"{quote(name)} = {mark}" for name in key)
        return f"UPDATE {dialect.identifier_preparer.format_table(table)} SET {assignments} WHERE {where}"

    sql, processors = plan(session, "update", table, names, make_sql)
    with driver_cursor(session) as cursor:
        cursor.executemany(sql, driver_rows(rows, processors))
