"""Wires the rod service: its database, its servicer, its feedback wake-up and its re-evaluation of peer changes."""

from __future__ import annotations

from services._gen.registry.v1 import rod_pb2_grpc
from services.common.database import Database
from services.common.migrations import upgrade
from services.common.peers import Peers
from services.common.server import Component
from services.common.settings import Settings
from services.common.wakeup import LogWakeup
from services.rod.copies import OfferingCopy, PersonCopy
from services.rod.outbox import FEEDBACK_LOG
from services.rod.peers import GrpcChangeFeeds
from services.rod.reevaluation import Reevaluator
from services.rod.servicer import RodServiceServicer

SERVICE_NAME = "registry.v1.RodService"


def build(settings: Settings, database: Database, peers: Peers) -> Component:
    upgrade("rod", database.engine)
    wakeup = LogWakeup(settings.stream_poll_seconds)
    copies = settings.rod_peer_copies
    if copies is None:
        copies = database.engine.dialect.name == "sqlite"  # one process per register: see services.rod.copies
    offerings = OfferingCopy() if copies else None
    persons = PersonCopy() if copies else None
    servicer = RodServiceServicer(
        database, peers, settings.internal_token, wakeup, offering_copy=offerings, person_copy=persons
    )
    reevaluator = Reevaluator(
        database,
        GrpcChangeFeeds(peers, settings.internal_token, offerings, persons),
        servicer.service.peers.clock,
        wakeup,
        servicer.service.peers.rio,
        persons.behind if persons is not None else None,
    )

    async def start() -> None:
        # On PostgreSQL, feedback committed by another process (a replica) wakes this one's streams at once.
        await wakeup.start(database.engine.url.render_as_string(hide_password=False), FEEDBACK_LOG)
        reevaluator.start()

    async def stop() -> None:
        await reevaluator.stop()
        await servicer.service.fanout.stop()
        await wakeup.stop()

    return Component(
        name="rod",
        service_names=[SERVICE_NAME],
        add_to_server=lambda server: rod_pb2_grpc.add_RodServiceServicer_to_server(servicer, server),
        start=start,
        stop=stop,
        extra={"servicer": servicer, "reevaluator": reevaluator},
    )
