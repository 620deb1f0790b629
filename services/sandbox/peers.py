"""The sandbox admin's gateways to the registers' internal SeedRegister and PurgeSandbox, over gRPC or faked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from services._gen.registry.v1 import common_pb2
from services.common.caller import internal_metadata

ResponseT = TypeVar("ResponseT", bound=Message)


@dataclass
class RegisterCallError(Exception):
    """A register refused or could not answer a seed or purge call."""

    register: str
    code: grpc.StatusCode
    detail: str

    def __str__(self) -> str:
        return f"{self.register}: {self.code.name}: {self.detail}"


class RegisterGateway(Protocol):
    """One register, as the sandbox admin seeds and purges it (both idempotent under the key)."""

    @property
    def name(self) -> str: ...

    async def seed(
        self, sandbox_id: str, *, size: str, seed: int, idempotency_key: str, synthetic_bsns: bool = False
    ) -> dict[str, int]:
        """Seeds the register; the counts of records created by kind. RegisterCallError on failure."""
        ...

    async def purge(self, sandbox_id: str, *, idempotency_key: str) -> int:
        """Deletes every record of the sandbox in the register; how many. RegisterCallError on failure."""
        ...


@dataclass(frozen=True)
class Registers:
    """The registers in the order each job needs them."""

    # RIO before BRP: BRP sizes its persons by the schools RIO created.
    seeding: Sequence[RegisterGateway]
    # ROD first, so no re-evaluation runs against half-purged registers.
    purging: Sequence[RegisterGateway]


class GrpcRegister:
    """A register's internal methods over gRPC, called with the internal token for one sandbox."""

    def __init__(self, name: str, service: str, channel: Callable[[], grpc.aio.Channel], internal_token: str) -> None:
        self._name = name
        self._service = service
        self._channel = channel
        self._token = internal_token

    @property
    def name(self) -> str:
        return self._name

    async def seed(
        self, sandbox_id: str, *, size: str, seed: int, idempotency_key: str, synthetic_bsns: bool = False
    ) -> dict[str, int]:
        request = common_pb2.SeedRegisterRequest(
            idempotency_key=idempotency_key, size=size, seed=seed, synthetic_bsns=synthetic_bsns
        )
        answer = await self._call("SeedRegister", request, common_pb2.SeedRegisterResponse, sandbox_id)
        return dict(answer.created)

    async def purge(self, sandbox_id: str, *, idempotency_key: str) -> int:
        request = common_pb2.PurgeSandboxRequest(idempotency_key=idempotency_key)
        answer = await self._call("PurgeSandbox", request, common_pb2.PurgeSandboxResponse, sandbox_id)
        return answer.deleted

    async def _call(self, method: str, request: Message, response: type[ResponseT], sandbox_id: str) -> ResponseT:
        call = self._channel().unary_unary(
            f"/registry.v1.{self._service}/{method}",
            # The request's own class serializes it: Message.SerializeToString is the abstract base's, and gRPC
            # sent an empty request in its place, so every register seeded "small" with seed 0 whatever was asked.
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        try:
            answer: ResponseT = await call(request, metadata=internal_metadata(self._token, sandbox_id))
        except grpc.aio.AioRpcError as error:
            raise RegisterCallError(self._name, error.code(), error.details() or "") from None
        return answer


def grpc_registers(channel: Callable[[str], grpc.aio.Channel], internal_token: str) -> Registers:
    """RIO, BRP and ROD over gRPC; `channel(name)` opens the channel to the named peer (see Peers)."""

    def register(name: str, service: str) -> GrpcRegister:
        return GrpcRegister(name, service, lambda: channel(name), internal_token)

    rio, brp, rod = register("rio", "RioService"), register("brp", "BrpService"), register("rod", "RodService")
    return Registers(seeding=(rio, brp), purging=(rod, rio, brp))


@dataclass
class FakeRegister:
    """An in-process register for unit tests: it records the sandboxes it holds and can be told to fail."""

    name: str
    created: dict[str, int] = field(default_factory=lambda: {"records": 1})
    fail_seed: grpc.StatusCode | None = None
    fail_purge: grpc.StatusCode | None = None
    seeded: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    async def seed(
        self, sandbox_id: str, *, size: str, seed: int, idempotency_key: str, synthetic_bsns: bool = False
    ) -> dict[str, int]:
        self.calls.append(f"seed {sandbox_id}")
        self._maybe_fail(self.fail_seed)
        self.seeded.add(sandbox_id)
        return dict(self.created)

    async def purge(self, sandbox_id: str, *, idempotency_key: str) -> int:
        self.calls.append(f"purge {sandbox_id}")
        self._maybe_fail(self.fail_purge)
        held = sandbox_id in self.seeded
        self.seeded.discard(sandbox_id)
        return sum(self.created.values()) if held else 0

    def _maybe_fail(self, code: grpc.StatusCode | None) -> None:
        if code is not None:
            raise RegisterCallError(self.name, code, "told to fail")
