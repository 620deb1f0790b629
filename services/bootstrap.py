"""The one place that wires services into a server: all four in one process (`sandbox up`), or one alone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from common.database import Database, make_engine
from common.peers import Peers
from common.server import Component, RegistryServer, serve_until_signalled
from common.settings import Settings, get_settings
from services.brp_sync import component as brp_sync
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

    def component(self, name: str) -> Component:
        return next(c for c in self.server.components if c.name == name)


def build(names: Sequence[str], settings: Settings, *, port: int | None = None) -> RunningSandbox:
    """Builds (but does not start) a server hosting the named services over one database."""
    database = Database(make_engine(settings.database_url))
    peers = Peers(settings)
    components = [BUILDERS[name](settings, database, peers) for name in BUILDERS if name in names]
    server = RegistryServer(components, settings.host, settings.port if port is None else port)
    peers.set_local_address(server.address)
    return RunningSandbox(server, database, peers)


async def serve(
    names: Sequence[str],
    settings: Settings,
    on_started: Callable[[RunningSandbox], Awaitable[None]] | None = None,
) -> None:
    running = build(names, settings)

    async def started() -> None:
        if on_started is not None:
            await on_started(running)

    try:
        await serve_until_signalled(running.server, settings.shutdown_grace_seconds, started)
    finally:
        await running.peers.close()
        running.database.engine.dispose()


def run_alone(names: Sequence[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()

    async def announce(running: RunningSandbox) -> None:
        logging.getLogger("sandbox").info("%s listening on %s", ", ".join(names), running.server.address)

    asyncio.run(serve(names, settings, announce))
