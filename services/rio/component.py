"""Wires the rio service: its database, its servicer, its gRPC registration, its change-log wake-up."""

from __future__ import annotations

from services._gen.registry.v1 import rio_pb2_grpc
from services.common.database import Database
from services.common.migrations import upgrade
from services.common.peers import Peers
from services.common.server import Component
from services.common.settings import Settings
from services.rio.servicer import CHANGE_LOG, RioServiceServicer

SERVICE_NAME = "registry.v1.RioService"


def build(settings: Settings, database: Database, peers: Peers) -> Component:
    upgrade("rio", database.engine)
    servicer = RioServiceServicer(database, peers, settings.internal_token, settings.stream_poll_seconds)

    async def start() -> None:
        # Writers commit in worker threads; the wake-up hands their notify to the server's loop
        # (and, on PostgreSQL, hears commits by other processes).
        await servicer.wakeup.start(settings.database_url, CHANGE_LOG)

    return Component(
        name="rio",
        service_names=[SERVICE_NAME],
        add_to_server=lambda server: rio_pb2_grpc.add_RioServiceServicer_to_server(servicer, server),
        start=start,
        stop=servicer.wakeup.stop,
        extra={"servicer": servicer},
    )
