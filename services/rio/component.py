"""Wires the rio service: its database, its peers, its use cases, the mutation path, its gRPC registration."""

from __future__ import annotations

from services._gen.registry.v1 import rio_pb2_grpc
from services.common.caller import CallerResolver
from services.common.database import Database
from services.common.migrations import upgrade
from services.common.mutation import MutationPath
from services.common.peers import Peers
from services.common.server import Component
from services.common.settings import Settings
from services.common.wakeup import LogWakeup
from services.rio import codec
from services.rio.peers import grpc_sandboxes
from services.rio.service import RioService
from services.rio.servicer import RioServiceServicer
from services.rio.store import CHANGE_LOG
from services.rio.tables import RioIdempotentResponse

SERVICE_NAME = "registry.v1.RioService"


def build(settings: Settings, database: Database, peers: Peers) -> Component:
    upgrade("rio", database.engine)
    sandboxes = grpc_sandboxes(peers, settings.internal_token)
    wakeup = LogWakeup(settings.stream_poll_seconds)
    service = RioService(database, sandboxes, codec, wakeup)
    # RIO serialises all its writers on its change log: codes, overlap checks and cursors then commit in order.
    mutations = MutationPath(database, RioIdempotentResponse, register_locks=(CHANGE_LOG,), followers=(wakeup,))
    callers = CallerResolver(sandboxes.sandbox_id_for_key, settings.internal_token)
    servicer = RioServiceServicer(service, callers, mutations)

    async def start() -> None:
        # Writers commit in worker threads; the wake-up hands their notify to the server's loop
        # (and, on PostgreSQL, hears commits by other processes).
        await wakeup.start(settings.database_url, CHANGE_LOG)

    return Component(
        name="rio",
        service_names=[SERVICE_NAME],
        add_to_server=lambda server: rio_pb2_grpc.add_RioServiceServicer_to_server(servicer, server),
        start=start,
        stop=wakeup.stop,
        extra={"servicer": servicer, "service": service},
    )
