"""The one place that wires services into a server: all four in one process (`sandbox up`), or one alone."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.brp_sync import component as brp_sync
from services.common import telemetry
from services.common.database import Database, make_engine
from services.common.limits import CallLimits
from services.common.peers import Peers
from services.common.server import Component, PortInUseError, RegistryServer, serve_until_signalled
from services.common.settings import Settings, get_settings
from services.rio import component as rio
from services.rod import component as rod
from services.sandbox import component as sandbox

Builder = Callable[[Settings, Database, Peers], Component]

# Order matters at start-up: the sandbox admin first (everyone resolves keys
# there), ROD last (it follows RIO's and BRP's change streams).
BUILDERS: dict[str, Builder] = {
    "sandbox": sandbox.build,
    "rio": rio.build,
    "brp_sync": brp_sync.build,
    "rod": rod.build,
}
ALL_SERVICES = list(BUILDERS)


@dataclass
class RunningSandbox:
    server: RegistryServer
    database: Database
    peers: Peers
    settings: Settings

    def component(self, name: str) -> Component:
        return next(c for c in self.server.components if c.name == name)


def build(
    names: Sequence[str], settings: Settings, *, port: int | None = None, reuse_port: bool = False
) -> RunningSandbox:
    """Builds (but does not start) a server hosting the named services over one database.

    Without a configured internal token, every peer must live in this process
    (the embedded mode): then a random token is made here and never leaves it.
    """
    settings = with_internal_token(settings)
    database = Database(make_engine(settings.database_url))
    peers = Peers(settings)
    components = [BUILDERS[name](settings, database, peers) for name in BUILDERS if name in names]
    limits = CallLimits(settings.rate_limit_per_second, settings.rate_limit_burst, settings.streams_per_sandbox)
    server = RegistryServer(
        components,
        settings.host,
        settings.port if port is None else port,
        limits=limits,
        internal_token=settings.internal_token,
        reuse_port=reuse_port,
    )
    peers.set_local_address(server.local_address, server.local)
    return RunningSandbox(server, database, peers, settings)


class MissingInternalTokenError(RuntimeError):
    """Services that call peers in other processes need the shared secret configured."""


def with_internal_token(settings: Settings) -> Settings:
    if settings.internal_token:
        return settings
    remote = [name for name in ("sandbox", "rio", "brp", "rod") if getattr(settings, f"{name}_address")]
    if remote:
        raise MissingInternalTokenError(
            f"REGISTRY_INTERNAL_TOKEN is not set, but peers run elsewhere ({', '.join(remote)}): "
            "give every service the same secret of at least 24 characters"
        )
    return settings.model_copy(update={"internal_token": secrets.token_urlsafe(32)})


async def serve(
    names: Sequence[str],
    settings: Settings,
    on_started: Callable[[RunningSandbox], Awaitable[None]] | None = None,
    *,
    reuse_port: bool = False,
) -> None:
    running = build(names, settings, reuse_port=reuse_port)
    if settings.metrics_port:
        port = telemetry.serve_metrics(settings.host, settings.metrics_port)
        logging.getLogger("sandbox").info("metrics on http://%s:%d/metrics", settings.host, port)

    async def started() -> None:
        if on_started is not None:
            await on_started(running)

    try:
        await serve_until_signalled(running.server, settings.shutdown_grace_seconds, started)
    finally:
        await running.peers.close()
        running.database.engine.dispose()


def run_alone(names: Sequence[str], argv: Sequence[str] | None = None) -> None:
    """`python -m services.<name> [--workers N]`: one service, in one process or in N sharing its port."""
    telemetry.configure_logging()
    parser = argparse.ArgumentParser(prog=f"python -m services.{names[0]}", description=f"Runs {', '.join(names)}.")
    parser.add_argument(
        "--workers", type=int, default=None, help="processes sharing the port (PostgreSQL only; REGISTRY_WORKERS)"
    )
    arguments = parser.parse_args(argv)
    settings = get_settings()
    if arguments.workers is not None:
        settings = settings.model_copy(update={"workers": arguments.workers})
    if not settings.internal_token:
        # Run alone, a service always has peers in other processes (compose passes the token from one place).
        logging.getLogger("sandbox").error(
            "REGISTRY_INTERNAL_TOKEN is not set: services run apart need one shared secret of at least 24 characters"
        )
        sys.exit(2)

    async def announce(running: RunningSandbox) -> None:
        logging.getLogger("sandbox").info("%s listening on %s", ", ".join(names), running.server.address)

    from services import workers  # it builds on this module

    try:
        if settings.workers > 1:
            asyncio.run(workers.supervise(names, settings))
        else:
            asyncio.run(serve(names, settings, announce))
    except (PortInUseError, workers.WorkersError) as error:
        logging.getLogger("sandbox").error("%s", error)
        sys.exit(1)
