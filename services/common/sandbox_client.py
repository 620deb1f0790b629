"""How a register asks the sandbox admin service who a key belongs to and what time it is in a sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable

import grpc

from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.common.caller import SANDBOX_KEY, internal_metadata
from services.common.clock import ClockSetting, real_now, register_date
from services.common.peers import PeersClosedError

log = logging.getLogger(__name__)

# A key's owner never changes, and a revoked key is evicted at once through the revocation stream;
# the expiry only bounds how long a key lives in memory.
_KEY_CACHE_SECONDS = 300.0
_RECONNECT_SECONDS = 1.0


class SandboxClient:
    """gRPC client of SandboxAdmin used by RIO, ROD and BRP sync.

    Key lookups are cached only while the client follows SandboxAdmin's key
    revocations: a revoked key is dropped from the cache as soon as it is
    revoked, and when the stream is down nothing is cached, so a revoked key
    is never honoured from memory.

    Sandbox clocks are kept the same way, while the client follows
    StreamClockChanges: SetClock and ResetSandbox answer only once every
    follower has the new setting, so the next call after a move sees it
    (the clock of a request costs no call; issue 11). With the stream down,
    every date is asked for.
    """

    def __init__(self, channel: Callable[[], grpc.aio.Channel], internal_token: str) -> None:
        # The channel is opened on first use: in embedded mode the port is known only after binding.
        self._channel = channel
        self._token = internal_token
        self._keys: dict[str, tuple[str, float]] = {}
        self._following = False
        self._follower: asyncio.Task[None] | None = None
        self._clocks: dict[str, ClockSetting] = {}
        self._following_clocks = False
        self._clock_follower: asyncio.Task[None] | None = None
        # Clock news received: a GetClock answer is kept only when no news arrived while it was asked.
        self._clock_news = 0
        self._clock_listeners: list[Callable[[str], None]] = []

    def on_clock_change(self, listener: Callable[[str], None]) -> None:
        """Calls listener(sandbox_id) as each clock change arrives, before SetClock or ResetSandbox answers.

        ResetSandbox tells its clock after every register was purged, so a register's own copy of a
        peer's data about the sandbox (ROD's of BRP's persons) can be dropped here.
        """
        self._clock_listeners.append(listener)

    def _stub(self) -> sandbox_pb2_grpc.SandboxAdminStub:
        return sandbox_pb2_grpc.SandboxAdminStub(self._channel())

    async def sandbox_id_for_key(self, key: str) -> str | None:
        self._follow_revocations()
        cached = self._keys.get(key)
        if cached is not None and cached[1] > time.monotonic() and self._following:
            return cached[0]
        try:
            sandbox = await self._stub().GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=((SANDBOX_KEY, key),))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            raise
        if self._following:
            self._keys[key] = (sandbox.sandbox_id, time.monotonic() + _KEY_CACHE_SECONDS)
        return sandbox.sandbox_id

    def _follow_revocations(self) -> None:
        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(self._revocations())

    async def _revocations(self) -> None:
        """Follows StreamKeyRevocations until the server stops; the cache is trusted only while it is live."""
        while True:
            try:
                call = self._stub().StreamKeyRevocations(
                    sandbox_pb2.StreamKeyRevocationsRequest(), metadata=internal_metadata(self._token, None)
                )
                async for revocation in call:
                    if not revocation.key_hash:
                        self._following = True  # the first message says: subscribed, nothing missed from now on
                        continue
                    self._evict(revocation.key_hash)
            except PeersClosedError:
                return
            except grpc.aio.AioRpcError as error:
                log.debug("key revocation stream ended (%s); not caching keys until it is back", error.code().name)
            finally:
                self._following = False
                self._keys.clear()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(_RECONNECT_SECONDS)

    def _evict(self, key_hash: str) -> None:
        for key in [k for k in self._keys if hashlib.sha256(k.encode()).hexdigest() == key_hash]:
            del self._keys[key]

    async def now(self, sandbox_id: str) -> dt.datetime:
        """The sandbox clock's now: from the followed setting, else asked (and then kept while following)."""
        self._follow_clocks()
        setting = self._clocks.get(sandbox_id) if self._following_clocks else None
        if setting is not None:
            return setting.now(real_now())
        news = self._clock_news
        clock = await self._stub().GetClock(
            sandbox_pb2.GetClockRequest(), metadata=internal_metadata(self._token, sandbox_id)
        )
        if self._following_clocks and news == self._clock_news:
            self._clocks[sandbox_id] = clock_setting(clock)
        return clock.now.ToDatetime(tzinfo=dt.UTC)

    async def today(self, sandbox_id: str) -> dt.date:
        return register_date(await self.now(sandbox_id))

    def _follow_clocks(self) -> None:
        if self._clock_follower is None or self._clock_follower.done():
            self._clock_follower = asyncio.get_running_loop().create_task(self._clock_changes())

    async def _clock_changes(self) -> None:
        """Follows StreamClockChanges until the server stops; the kept clocks are trusted only while it is live."""
        while True:
            try:
                call = self._stub().StreamClockChanges(
                    sandbox_pb2.StreamClockChangesRequest(), metadata=internal_metadata(self._token, None)
                )
                async for change in call:
                    self._clock_news += 1
                    if not change.sandbox_id:
                        self._following_clocks = True  # subscribed: nothing missed from now on
                        continue
                    self._clocks[change.sandbox_id] = clock_setting(change.clock)
                    for listener in self._clock_listeners:
                        listener(change.sandbox_id)
            except PeersClosedError:
                return
            except grpc.aio.AioRpcError as error:
                log.debug("clock change stream ended (%s); asking for every date until it is back", error.code().name)
            finally:
                self._following_clocks = False
                self._clocks.clear()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(_RECONNECT_SECONDS)


def clock_setting(clock: sandbox_pb2.SandboxClock) -> ClockSetting:
    """The setting a SandboxClock answer describes: frozen at its now, or running at its offset from real time."""
    if clock.frozen:
        return ClockSetting(frozen_at=clock.now.ToDatetime(tzinfo=dt.UTC))
    return ClockSetting(offset=clock.offset.ToTimedelta())
