"""The database a benchmark runs on: a temporary SQLite file, or a fresh PostgreSQL database when asked."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from common.settings import Settings

BENCH_DATABASE_ENV = "REGISTRY_BENCH_DATABASE_URL"


@contextmanager
def bench_database(name: str) -> Iterator[tuple[str, str]]:
    """Yields (database URL, backend label) for one run; nothing of the run is left behind.

    With REGISTRY_BENCH_DATABASE_URL set to a PostgreSQL server, the run gets
    a database of its own, created and dropped here, so runs never see each
    other's rows (RIO seeds a register only once per sandbox).
    """
    server = os.environ.get(BENCH_DATABASE_ENV, "")
    if not server:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / f'{name}.db'}", "SQLite"
        return
    server = Settings(database_url=server).database_url
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    database = f"registry_bench_{name}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield make_url(server).set(database=database).render_as_string(hide_password=False), "PostgreSQL"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
