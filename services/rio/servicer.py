"""RioService over gRPC: decode the request, call the rules, encode the answer."""

from __future__ import annotations

from common.caller import CallerResolver
from common.database import Database
from common.peers import Peers
from common.sandbox_client import SandboxClient
from registry.v1 import rio_pb2_grpc


class RioServiceServicer(rio_pb2_grpc.RioServiceServicer):
    """Methods not yet written answer UNIMPLEMENTED (the generated base class)."""

    def __init__(self, database: Database, peers: Peers, internal_token: str) -> None:
        self._db = database
        self._peers = peers
        self.sandboxes = SandboxClient(lambda: peers.channel("sandbox"), internal_token)
        self.callers = CallerResolver(self.sandboxes.sandbox_id_for_key, internal_token)
