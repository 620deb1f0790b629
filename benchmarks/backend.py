"""The database a benchmark runs on: a temporary SQLite file, or a fresh PostgreSQL database when asked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.common.database import scratch_postgresql_database
from services.common.settings import Settings

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
    with scratch_postgresql_database(Settings(database_url=server).database_url, f"registry_bench_{name}") as url:
        yield url, "PostgreSQL"
