"""Sends each sandbox's scheduled scenario messages once its clock reaches them, as the registers learn of
clock moves: by reading each sandbox's clock (SandboxAdmin.GetClock) every few poll intervals."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import grpc

from services.brp_sync import service, store
from services.brp_sync.peers import SandboxGateway
from services.common.clock import real_now
from services.common.database import Database
from services.common.wakeup import LogWakeup

log = logging.getLogger(__name__)


class ScheduledSender:
    """Reads the clock of every sandbox with unsent scheduled messages and sends those whose date has come.

    Only sandboxes with messages still to send are asked, so a sandbox whose scenarios have all played out
    costs nothing. The interval matches ROD's count-date sweep (two stream poll intervals).
    """

    def __init__(self, database: Database, sandboxes: SandboxGateway, wakeup: LogWakeup, interval: float) -> None:
        self._db = database
        self._sandboxes = sandboxes
        self._wakeup = wakeup
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed round is retried; it must not stop the sender for good
                log.exception("sending scheduled scenario messages failed; retrying")
            await asyncio.sleep(self._interval)

    async def send_due(self) -> int:
        """One round over the sandboxes; how many messages were sent."""
        sent = 0
        for sandbox_id in await self._db.run(store.sandboxes_with_unsent_messages):
            try:
                today = await self._sandboxes.today(sandbox_id)
            except grpc.aio.AioRpcError:
                continue  # the sandbox admin is away (or the sandbox is gone): next round
            count = await self._db.run(
                functools.partial(service.send_due_messages, sandbox_id=sandbox_id, today=today, received_at=real_now())
            )
            if count:
                self._wakeup.notify()
                sent += count
        return sent
