"""Test helpers for the explorer: a real sandbox (gRPC on a free port) with the explorer over real HTTP in front."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from clients.explorer.app import create_app
from clients.explorer.server import ExplorerServer
from clients.explorer.settings import ExplorerSettings
from services.bootstrap import ALL_SERVICES, RunningSandbox, build
from services.common.settings import Settings


@dataclass
class ExplorerWorld:
    """The registers, the explorer in front of them, and one seeded sandbox created through the gateway."""

    running: RunningSandbox
    explorer: ExplorerServer
    http: httpx.AsyncClient
    key: str

    def headers(self, **extra: str) -> dict[str, str]:
        return {"x-sandbox-key": self.key, **{k.replace("_", "-"): v for k, v in extra.items()}}

    async def call(self, path: str, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
        return await self.http.post(f"/v1/{path}", json=body or {}, headers=self.headers(**headers))

    async def examples(self, school: str = "") -> dict[str, Any]:
        headers = self.headers(x_institution_code=school) if school else self.headers()
        answer = await self.http.get("/explorer/examples", headers=headers)
        assert answer.status_code == 200, answer.text
        loaded: dict[str, Any] = answer.json()
        return loaded


@asynccontextmanager
async def explorer_world(tmp: Path, *, seed: bool = True) -> AsyncIterator[ExplorerWorld]:
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'registry.db'}", port=0, stream_poll_seconds=0.2, shutdown_grace_seconds=0.5
    )
    running = build(ALL_SERVICES, settings)
    await running.server.start()
    explorer = ExplorerServer(create_app(ExplorerSettings(grpc_address=running.server.address)), "127.0.0.1", 0)
    await explorer.start()
    http = httpx.AsyncClient(base_url=explorer.url.rstrip("/"), timeout=30)
    try:
        created = await http.post("/v1/registry.v1.SandboxAdmin/CreateSandbox", json={"name": "explorer test"})
        assert created.status_code == 200, created.text
        world = ExplorerWorld(running, explorer, http, created.json()["sandbox_key"])
        if seed:
            seeded = await world.call(
                "registry.v1.SandboxAdmin/SeedSandbox", {"size": "SEED_SIZE_SMALL", "seed": "7", "idempotency_key": "s"}
            )
            assert seeded.status_code == 200, seeded.text
        yield world
    finally:
        await http.aclose()
        await explorer.stop()
        await running.server.stop(0.5)
        await running.peers.close()
        running.database.engine.dispose()


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]


async def read_events(response: httpx.Response, count: int) -> list[Event]:
    """Reads `count` SSE events (comments and retry lines skipped) from a streaming response."""
    events: list[Event] = []
    block: list[str] = []
    async for line in response.aiter_lines():
        if line:
            block.append(line)
            continue
        fields: dict[str, str] = {}
        for item in block:
            if item.startswith(":"):
                continue
            name, _, value = item.partition(":")
            fields[name] = value.removeprefix(" ")
        block = []
        if "data" in fields:
            events.append(Event(fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])))
            if len(events) == count:
                return events
    return events
