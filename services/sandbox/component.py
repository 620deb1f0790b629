"""Wires the sandbox admin service: its database, its servicer, its gRPC registration."""

from __future__ import annotations

from common.database import Database
from common.migrations import upgrade
from common.peers import Peers
from common.server import Component
from common.settings import Settings
from registry.v1 import sandbox_pb2_grpc
from services.sandbox.servicer import SandboxAdminServicer

SERVICE_NAME = "registry.v1.SandboxAdmin"


def build(settings: Settings, database: Database, peers: Peers) -> Component:
    upgrade("sandbox", database.engine)
    servicer = SandboxAdminServicer(database, peers, settings.internal_token)
    return Component(
        name="sandbox",
        service_names=[SERVICE_NAME],
        add_to_server=lambda server: sandbox_pb2_grpc.add_SandboxAdminServicer_to_server(servicer, server),
        extra={"servicer": servicer},
    )
