"""Channels to the other services: a configured address, this process's own handlers, or its own port."""

from __future__ import annotations

import grpc

from services.common.inprocess import LocalChannel, LocalHandlers
from services.common.server import MAX_MESSAGE_BYTES
from services.common.settings import Settings
from services.common.telemetry import RequestIdClientInterceptor


class PeersClosedError(RuntimeError):
    """A peer was asked for after the server closed its channels."""


# The contract's service each peer name stands for.
SERVICES = {
    "sandbox": "registry.v1.SandboxAdmin",
    "rio": "registry.v1.RioService",
    "brp": "registry.v1.BrpService",
    "rod": "registry.v1.RodService",
}


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
        self._local: LocalHandlers | None = None
        self._local_channel: LocalChannel | None = None

    def set_local_address(self, address: str, local: LocalHandlers | None = None) -> None:
        """Where this process serves; `local`: its handlers, called without a socket when settings allow."""
        self._local_address = address
        self._local = local if self._settings.inprocess_peers else None

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
        local = self._local
        if (
            local is not None
            and not getattr(self._settings, f"{service}_address")
            and SERVICES[service] in local.services
        ):
            if self._local_channel is None:
                self._local_channel = LocalChannel(local)
            return self._local_channel
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

    @property
    def sockets(self) -> list[str]:
        """The addresses this process has opened gRPC channels to (a peer served here takes none)."""
        return list(self._channels)

    async def close(self) -> None:
        self._closed = True
        if self._local_channel is not None:
            await self._local_channel.close()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
