"""Fixtures every test tier shares: database URLs (SQLite and real PostgreSQL) and an in-process sandbox server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.bootstrap import ALL_SERVICES, RunningSandbox, build
from services.common.caller import SANDBOX_KEY
from services.common.database import scratch_postgresql_database
from services.common.settings import Settings

TEST_DATABASE_ENV = "REGISTRY_TEST_DATABASE_URL"


def _postgres_server_url() -> str | None:
    """The PostgreSQL server tests may create databases on: the env var, else a testcontainer, else None."""
    configured = os.environ.get(TEST_DATABASE_ENV)
    if configured:
        return configured
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - no Docker engine answering is the common case here
        return None
    from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

    container = PostgresContainer("postgres:15", driver="psycopg")
    container.start()
    _CONTAINERS.append(container)
    return str(container.get_connection_url())


_CONTAINERS: list[object] = []


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    url = _postgres_server_url()
    if url is None:
        pytest.skip(
            f"PostgreSQL tests skipped: set {TEST_DATABASE_ENV}=postgresql://user@host:5432/db "
            "(bash .ci/run does) or start a Docker engine for testcontainers"
        )
    yield url
    for container in _CONTAINERS:
        container.stop()  # type: ignore[attr-defined]


def _psycopg(url: str) -> str:
    return Settings(database_url=url).database_url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with scratch_postgresql_database(_psycopg(postgres_server_url), "registry_test") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@dataclass
class SandboxHarness:
    """A running in-process sandbox and a channel to it, with one freshly created sandbox key."""

    running: RunningSandbox
    channel: grpc.aio.Channel
    sandbox_key: str
    sandbox_id: str

    @property
    def internal_token(self) -> str:
        """The random secret this in-process sandbox made at start (what a peer service would present)."""
        return self.running.settings.internal_token

    @property
    def address(self) -> str:
        return self.running.server.address

    def metadata(self, **extra: str) -> tuple[tuple[str, str], ...]:
        """x-sandbox-key plus extra headers, e.g. metadata(x_board_code="100B001")."""
        pairs = [(SANDBOX_KEY, self.sandbox_key)]
        pairs += [(name.replace("_", "-"), value) for name, value in extra.items()]
        return tuple(pairs)


@pytest.fixture
async def sandbox(database_url: str) -> AsyncIterator[SandboxHarness]:
    """All services in this process on a free port over the test database, plus a new sandbox."""
    async with serve_sandbox(database_url) as harness:
        yield harness


@contextlib.asynccontextmanager
async def serve_sandbox(database_url: str, **settings_overrides: Any) -> AsyncIterator[SandboxHarness]:
    """What the `sandbox` fixture serves, with settings of the test's own (say rod_peer_copies=True)."""
    settings = Settings(
        database_url=database_url, port=0, stream_poll_seconds=0.2, shutdown_grace_seconds=0.5, **settings_overrides
    )
    running = build(ALL_SERVICES, settings)
    await running.server.start()
    channel = grpc.aio.insecure_channel(running.server.address)
    created = await sandbox_pb2_grpc.SandboxAdminStub(channel).CreateSandbox(
        sandbox_pb2.CreateSandboxRequest(name="test")
    )
    try:
        yield SandboxHarness(running, channel, created.sandbox_key, created.sandbox.sandbox_id)
    finally:
        await channel.close()
        await running.server.stop(0.5)
        await running.peers.close()
        running.database.engine.dispose()
