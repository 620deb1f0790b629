"""The `sandbox` console script: `sandbox up` runs all registers in one process over one database."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import grpc
import typer
from rich.console import Console

from clients.explorer.app import create_app
from clients.explorer.server import ExplorerServer
from clients.explorer.settings import ExplorerSettings
from clients.replay.cli import app as replay_app
from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.bootstrap import ALL_SERVICES, RunningSandbox, serve
from services.common.caller import SANDBOX_KEY
from services.common.database import Database, make_engine
from services.common.server import PortInUseError
from services.common.settings import DEFAULT_DATA_DIR, get_settings
from services.sandbox.service import ensure_default_sandbox
from services.workers import WorkersError, supervise

app = typer.Typer(help="Registry data-exchange sandbox: RIO, ROD and BRP sync over gRPC.", no_args_is_help=True)
console = Console(soft_wrap=True)
app.add_typer(replay_app, name="replay")


@app.callback()
def main() -> None:
    """Registry data-exchange sandbox."""


_SIZES: dict[str, sandbox_pb2.SeedSize.ValueType] = {
    "small": sandbox_pb2.SEED_SIZE_SMALL,
    "medium": sandbox_pb2.SEED_SIZE_MEDIUM,
    "full": sandbox_pb2.SEED_SIZE_FULL,
}


@app.command()
def up(
    port: int = typer.Option(None, help="Port to listen on (default REGISTRY_PORT, 50051)."),
    seed: bool = typer.Option(True, help="Seed the default sandbox when it is created."),
    explorer: bool = typer.Option(True, help="Also serve the API explorer and JSON gateway over HTTP."),
    explorer_host: str = typer.Option(None, help="Explorer address (default REGISTRY_EXPLORER_HOST, 127.0.0.1)."),
    explorer_port: int = typer.Option(None, help="Explorer port (default REGISTRY_EXPLORER_PORT, 8080)."),
    workers: int = typer.Option(
        None, min=1, max=64, help="Processes serving the port (default REGISTRY_WORKERS, 1; more needs PostgreSQL)."
    ),
) -> None:
    """Start every register in one process, create (and seed) the default sandbox, print its key."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if port is not None:
        settings = settings.model_copy(update={"port": port})
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    explorer_settings = _explorer_settings(explorer_host, explorer_port)
    explorers: list[ExplorerServer] = []

    async def welcome(address: str, database: Database, channel: grpc.aio.Channel) -> None:
        # Only hashes are in the register: the local key file lets a restart print the same key.
        key_file = default_key_file(settings.database_url)
        known = key_file.read_text().strip() if key_file.exists() else ""
        sandbox_id, key, _created = await ensure_default_sandbox(database, known_key=known)
        if key != known:
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.touch(mode=0o600)
            key_file.write_text(key + "\n")
        # Seeding is idempotent under its key, so a restart re-asks and changes nothing.
        if seed:
            await _seed(channel, key, settings.seed_size, settings.seed)
        served_by = f" by {settings.workers} worker processes" if settings.workers > 1 else ""
        console.print(f"[bold green]sandbox listening on {address}[/]{served_by} (gRPC, reflection on)")
        console.print(f"default sandbox {sandbox_id}: send metadata [bold]{SANDBOX_KEY}: {key}[/]")
        console.print(f"database: {settings.database_url}")
        if explorer:
            # A client of the public API like any vendor's: it gets the gRPC address, never the internal token.
            settings_for_here = explorer_settings.model_copy(update={"grpc_address": address})
            try:
                server = ExplorerServer(create_app(settings_for_here), explorer_settings.host, explorer_settings.port)
            except OSError as error:
                where = f"{explorer_settings.host}:{explorer_settings.port}"
                console.print(f"[bold red]no explorer: cannot listen on {where} ({error.strerror}); --explorer-port[/]")
            else:
                await server.start()
                explorers.append(server)
                console.print(f"[bold green]Explorer: {server.url}[/] (JSON gateway at {server.url}v1/, docs at /docs)")
        console.print(f"try: grpcurl -plaintext -H '{SANDBOX_KEY}: {key}' {address} list")

    async def announce(running: RunningSandbox) -> None:
        await welcome(running.server.address, running.database, running.peers.channel("sandbox"))

    async def announce_workers(address: str) -> None:
        # The supervisor serves no register itself: it reaches them through the served port, like a client.
        database = Database(make_engine(settings.database_url))
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                await welcome(address, database, channel)
        finally:
            database.engine.dispose()

    async def run() -> None:
        try:
            if settings.workers > 1:
                await supervise(ALL_SERVICES, settings, announce_workers)
            else:
                await serve(ALL_SERVICES, settings, announce)
        finally:
            for server in explorers:
                await server.stop()

    try:
        asyncio.run(run())
    except (PortInUseError, WorkersError) as error:
        console.print(f"[bold red]{error}[/]")
        raise typer.Exit(1) from None


def _explorer_settings(host: str | None, port: int | None) -> ExplorerSettings:
    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    return ExplorerSettings().model_copy(update=updates)


def default_key_file(database_url: str) -> Path:
    """Where `sandbox up` keeps the default sandbox's key (mode 0600): beside a SQLite file, else in .sandbox/."""
    if database_url.startswith("sqlite:///") and database_url != "sqlite:///:memory:":
        return Path(database_url.removeprefix("sqlite:///") + ".default-key")
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return DEFAULT_DATA_DIR / f"default-key-{digest}"


async def _seed(channel: grpc.aio.Channel, key: str, size: str, seed: int) -> None:
    stub = sandbox_pb2_grpc.SandboxAdminStub(channel)
    try:
        answer = await stub.SeedSandbox(
            sandbox_pb2.SeedSandboxRequest(
                idempotency_key="default-seed", size=_SIZES.get(size, sandbox_pb2.SEED_SIZE_SMALL), seed=seed
            ),
            metadata=((SANDBOX_KEY, key),),
        )
        console.print(f"seeded default sandbox ({size}): {dict(answer.created)}")
    except grpc.aio.AioRpcError as error:
        console.print(f"[yellow]default sandbox not seeded: {error.code().name}: {error.details()}[/]")


if __name__ == "__main__":
    app()
