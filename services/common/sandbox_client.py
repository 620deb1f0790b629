"""How a register asks the sandbox admin service who a key belongs to and what time it is in a sandbox."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import grpc

from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.common.caller import SANDBOX_KEY, internal_metadata
from services.common.clock import register_date

# Keys never change owner, so a positive answer can be cached; deletion of a
# sandbox is rare and a minute's grace is harmless in a sandbox.
_KEY_CACHE_SECONDS = 60.0


class SandboxClient:
    """gRPC client of SandboxAdmin used by RIO, ROD and BRP sync."""

    def __init__(self, channel: Callable[[], grpc.aio.Channel], internal_token: str) -> None:
        # The channel is opened on first use: in embedded mode the port is known only after binding.
        self._channel = channel
        self._token = internal_token
        self._keys: dict[str, tuple[str, float]] = {}

    def _stub(self) -> sandbox_pb2_grpc.SandboxAdminStub:
        return sandbox_pb2_grpc.SandboxAdminStub(self._channel())

    async def sandbox_id_for_key(self, key: str) -> str | None:
        cached = self._keys.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            sandbox = await self._stub().GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=((SANDBOX_KEY, key),))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            raise
        self._keys[key] = (sandbox.sandbox_id, time.monotonic() + _KEY_CACHE_SECONDS)
        return sandbox.sandbox_id

    async def now(self, sandbox_id: str) -> dt.datetime:
        """The sandbox clock's now. Not cached: a vendor who moves the clock expects the next call to see it."""
        clock = await self._stub().GetClock(
            sandbox_pb2.GetClockRequest(), metadata=internal_metadata(self._token, sandbox_id)
        )
        return clock.now.ToDatetime(tzinfo=dt.UTC)

    async def today(self, sandbox_id: str) -> dt.date:
        return register_date(await self.now(sandbox_id))
