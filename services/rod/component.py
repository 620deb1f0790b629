"""Wires the rod service: its database, its servicer, its gRPC registration."""

from __future__ import annotations

from common.database import Database
from common.migrations import upgrade
from common.peers import Peers
from common.server import Component
from common.settings import Settings
from registry.v1 import rod_pb2_grpc
from services.rod.servicer import RodServiceServicer

SERVICE_NAME = "registry.v1.RodService"


def build(settings: Settings, database: Database, peers: Peers) -> Component:
    upgrade("rod", database.engine)
    servicer = RodServiceServicer(database, peers, settings.internal_token)  # type: ignore[abstract]
    return Component(
        name="rod",
        service_names=[SERVICE_NAME],
        add_to_server=lambda server: rod_pb2_grpc.add_RodServiceServicer_to_server(servicer, server),
        extra={"servicer": servicer},
    )
