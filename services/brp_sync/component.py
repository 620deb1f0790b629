"""Wires the brp_sync service: its database, its servicer, its gRPC registration."""

from __future__ import annotations

from common.database import Database
from common.migrations import upgrade
from common.peers import Peers
from common.server import Component
from common.settings import Settings
from registry.v1 import brp_pb2_grpc
from services.brp_sync.servicer import BrpServiceServicer

SERVICE_NAME = "registry.v1.BrpService"


def build(settings: Settings, database: Database, peers: Peers) -> Component:
    upgrade("brp_sync", database.engine)
    servicer = BrpServiceServicer(database, peers, settings.internal_token)  # type: ignore[abstract]
    return Component(
        name="brp_sync",
        service_names=[SERVICE_NAME],
        add_to_server=lambda server: brp_pb2_grpc.add_BrpServiceServicer_to_server(servicer, server),
        extra={"servicer": servicer},
    )
