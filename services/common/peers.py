"""gRPC channels to the other services: a configured address, or this process's own port in embedded mode."""

from __future__ import annotations

import grpc

from services.common.server import MAX_MESSAGE_BYTES
from services.common.settings import Settings
from services.common.telemetry import RequestIdClientInterceptor


class PeersClosedError(RuntimeError):
    """A peer was asked for after the server closed its channels."""


class Peers:
    """Opens one channel per peer service on first use.

    In embedded mode the port is only known once the server has bound it
    (port 0 in tests), so the local address is set after binding.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._local_address: str | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closed = False

    def set_local_address(self, address: str) -> None:
        self._local_address = address

    def target(self, service: str) -> str:
        configured: str = getattr(self._settings, f"{service}_address")
        if configured:
            return configured
        if self._local_address is None:
            raise RuntimeError(f"no address for {service}: set REGISTRY_{service.upper()}_ADDRESS")
        return self._local_address

    def channel(self, service: str) -> grpc.aio.Channel:
        if self._closed:
            # Background followers (key revocations, change streams) end here instead of reopening channels.
            raise PeersClosedError("the server is stopping: no more calls to peers")
        target = self.target(service)
        if target not in self._channels:
            self._channels[target] = grpc.aio.insecure_channel(
                target,
                interceptors=[RequestIdClientInterceptor()],
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    # A peer run as replicas has one name with an address per replica (compose's DNS): spread
                    # calls over all of them instead of sending every call to the first (pick_first).
                    ("grpc.lb_policy_name", "round_robin"),
                ],
            )
        return self._channels[target]

    async def close(self) -> None:
        self._closed = True
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
