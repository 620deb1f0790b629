"""Runs the explorer alone against a running sandbox: python -m clients.explorer --grpc 127.0.0.1:50051."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from rich.console import Console

from clients.explorer.app import create_app
from clients.explorer.server import ExplorerServer
from clients.explorer.settings import ExplorerSettings

console = Console(soft_wrap=True)


def main(
    grpc: Annotated[
        str | None, typer.Option("--grpc", help="gRPC address of the registers (default 127.0.0.1:50051).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1: loopback only).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8080).")] = None,
    service: Annotated[
        list[str] | None,
        typer.Option(help="Per-service address when the registers run apart, e.g. registry.v1.RioService=rio:50051."),
    ] = None,
) -> None:
    """Serve the API explorer and JSON gateway for a sandbox that is already running."""
    updates: dict[str, object] = {}
    if grpc is not None:
        updates["grpc_address"] = grpc
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    settings = ExplorerSettings(**updates)  # type: ignore[arg-type]
    for item in service or []:
        name, _, address = item.partition("=")
        if not address:
            raise typer.BadParameter(f"{item!r}: expected registry.v1.Service=host:port", param_hint="--service")
        settings.service_addresses[name] = address
    asyncio.run(_serve(settings))


async def _serve(settings: ExplorerSettings) -> None:
    server = ExplorerServer(create_app(settings), settings.host, settings.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    console.print(f"Explorer: {server.url}  (gRPC {settings.grpc_address})")
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    typer.run(main)
