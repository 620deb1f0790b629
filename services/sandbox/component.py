"""Wires the sandbox admin service: its database, its gateways to the registers, its servicer, its registration."""

from __future__ import annotations

from services._gen.registry.v1 import sandbox_pb2_grpc
from services.common.database import Database, is_postgresql
from services.common.migrations import upgrade
from services.common.peers import Peers
from services.common.server import Component
from services.common.settings import Settings
from services.sandbox.peers import grpc_registers
from services.sandbox.revocations import PostgresRelay
from services.sandbox.servicer import SandboxAdminServicer

SERVICE_NAME = "registry.v1.SandboxAdmin"


def build(settings: Settings, database: Database, peers: Peers) -> Component:
    upgrade("sandbox", database.engine)
    servicer = SandboxAdminServicer(
        database,
        grpc_registers(peers.channel, settings.internal_token),
        settings.internal_token,
        sandboxes_per_creator=settings.sandboxes_per_creator,
    )
    relay: PostgresRelay | None = None
    if is_postgresql(database.engine):
        # Other SandboxAdmin processes (workers, replicas) may serve the same sandboxes: revocations reach them too.
        relay = servicer.revocations.relay = PostgresRelay(
            servicer.revocations, database.engine.url.render_as_string(hide_password=False)
        )

    async def start() -> None:
        if relay is not None:
            relay.start()

    async def stop() -> None:
        if relay is not None:
            await relay.stop()

    return Component(
        name="sandbox",
        service_names=[SERVICE_NAME],
        add_to_server=lambda server: sandbox_pb2_grpc.add_SandboxAdminServicer_to_server(servicer, server),
        start=start,
        stop=stop,
        extra={"servicer": servicer},
    )
