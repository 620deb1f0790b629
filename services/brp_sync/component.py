"""Wires the brp_sync service: its database, its servicer, its gRPC registration, its change-log wake-up."""

from __future__ import annotations

import datetime as dt

from services._gen.registry.v1 import brp_pb2_grpc
from services.brp_sync.peers import GrpcSandboxGateway
from services.brp_sync.schedule import ScheduledSender
from services.brp_sync.servicer import BrpServiceServicer
from services.brp_sync.store import LOG_NAME
from services.common.database import Database
from services.common.migrations import upgrade
from services.common.peers import Peers
from services.common.server import Component
from services.common.settings import Settings
from services.common.wakeup import LogWakeup

SERVICE_NAME = "registry.v1.BrpService"


def build(settings: Settings, database: Database, peers: Peers) -> Component:
    upgrade("brp_sync", database.engine)
    wakeup = LogWakeup(settings.stream_poll_seconds)
    sandboxes = GrpcSandboxGateway(lambda: peers.channel("sandbox"), settings.internal_token)
    sender = ScheduledSender(database, sandboxes, wakeup, interval=2 * settings.stream_poll_seconds)
    servicer = BrpServiceServicer(
        database,
        sandboxes,
        settings.internal_token,
        wakeup=wakeup,
        gap_timeout=dt.timedelta(seconds=settings.brp_gap_timeout_seconds),
    )

    async def start() -> None:
        await wakeup.start(settings.database_url, LOG_NAME)
        sender.start()

    async def stop() -> None:
        await sender.stop()
        await wakeup.stop()

    return Component(
        name="brp_sync",
        service_names=[SERVICE_NAME],
        add_to_server=lambda server: brp_pb2_grpc.add_BrpServiceServicer_to_server(servicer, server),
        start=start,
        stop=stop,
        extra={"servicer": servicer, "scheduled_sender": sender},
    )
