"""RIO's gateway to the registers it calls: SandboxAdmin (whose key a call carries, the sandbox clock)."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from services.common.peers import Peers
from services.common.sandbox_client import SandboxClient


class Sandboxes(Protocol):
    """What RIO asks SandboxAdmin: the sandbox of a key, and today's date on the sandbox clock (the peildatum)."""

    async def sandbox_id_for_key(self, key: str) -> str | None: ...

    async def today(self, sandbox_id: str) -> dt.date: ...


def grpc_sandboxes(peers: Peers, internal_token: str) -> Sandboxes:
    """SandboxAdmin over gRPC (in embedded mode this process's own port)."""
    return SandboxClient(lambda: peers.channel("sandbox"), internal_token)


class InProcessSandboxes:
    """An in-process SandboxAdmin for unit tests of the use cases: known keys and a clock per sandbox."""

    def __init__(self, today: dt.date, keys: dict[str, str] | None = None) -> None:
        self.keys = dict(keys or {})
        self.today_of: dict[str, dt.date] = {}
        self.default_today = today
        self.clock_reads = 0

    async def sandbox_id_for_key(self, key: str) -> str | None:
        return self.keys.get(key)

    async def today(self, sandbox_id: str) -> dt.date:
        self.clock_reads += 1
        return self.today_of.get(sandbox_id, self.default_today)
