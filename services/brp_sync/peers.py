"""BRP sync's gateway to the sandbox admin (key lookup, sandbox existence, clock), over gRPC or faked in process."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Protocol

import grpc

from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.common.caller import internal_metadata
from services.common.sandbox_client import SandboxClient

# Sandboxes are never deleted (a reset keeps the id), so a sandbox seen to exist is remembered this long.
_EXISTS_CACHE_SECONDS = 60.0


class SandboxGateway(Protocol):
    """What BRP sync asks the sandbox admin."""

    async def sandbox_id_for_key(self, key: str) -> str | None:
        """The sandbox a vendor's x-sandbox-key names, or None when the key is unknown."""
        ...

    async def exists(self, sandbox_id: str) -> bool:
        """Whether a sandbox id (named by a register calling in) belongs to a sandbox."""
        ...

    async def today(self, sandbox_id: str) -> dt.date:
        """The sandbox clock's date (Amsterdam)."""
        ...


class GrpcSandboxGateway:
    """The sandbox admin over gRPC, as a register calls it (internal token, x-sandbox-id)."""

    def __init__(self, channel: Callable[[], grpc.aio.Channel], internal_token: str) -> None:
        self._client = SandboxClient(channel, internal_token)
        self._channel = channel
        self._token = internal_token
        self._known: dict[str, float] = {}

    async def sandbox_id_for_key(self, key: str) -> str | None:
        return await self._client.sandbox_id_for_key(key)

    async def exists(self, sandbox_id: str) -> bool:
        if self._known.get(sandbox_id, 0.0) > time.monotonic():
            return True
        stub = sandbox_pb2_grpc.SandboxAdminStub(self._channel())
        try:
            await stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=internal_metadata(self._token, sandbox_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        self._known[sandbox_id] = time.monotonic() + _EXISTS_CACHE_SECONDS
        return True

    async def today(self, sandbox_id: str) -> dt.date:
        return await self._client.today(sandbox_id)


class FakeSandboxes:
    """An in-process sandbox admin for unit tests: known keys and sandboxes, one date for every clock."""

    def __init__(self, keys: dict[str, str] | None = None, today: dt.date = dt.date(2026, 11, 28)) -> None:
        self.keys = dict(keys or {})
        self.sandbox_ids = set(self.keys.values())
        self.date = today

    async def sandbox_id_for_key(self, key: str) -> str | None:
        return self.keys.get(key)

    async def exists(self, sandbox_id: str) -> bool:
        return sandbox_id in self.sandbox_ids

    async def today(self, sandbox_id: str) -> dt.date:
        return self.date
