"""Calls the registers over gRPC as a vendor would: one channel per address, only the public metadata headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # noqa: F401 - registers the detail types for decoding
from grpc_status import rpc_status

from clients.explorer.contract import Method
from services.common.caller import BOARD_CODE, INSTITUTION_CODE, SANDBOX_KEY

# The only headers the gateway passes on. Anything else a browser sends (cookies,
# x-internal-token, x-sandbox-id) stays here: the explorer is a vendor, never a peer service.
FORWARDED_HEADERS = (SANDBOX_KEY, BOARD_CODE, INSTITUTION_CODE)


def metadata_from(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The call metadata for a request's headers: the public identity headers that are set, nothing else."""
    return tuple((name, headers[name].strip()) for name in FORWARDED_HEADERS if headers.get(name, "").strip())


@dataclass
class GrpcTargets:
    """Where each service answers: one address for all (`sandbox up`), or one per service (compose)."""

    default: str
    per_service: dict[str, str] = field(default_factory=dict)
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict, init=False, repr=False)

    def address(self, service: str) -> str:
        return self.per_service.get(service, self.default)

    def channel(self, service: str) -> grpc.aio.Channel:
        address = self.address(service)
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(address)
        return self._channels[address]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def to_json(message: Message) -> dict[str, Any]:
    """The proto3 JSON mapping, with the .proto field names and every field printed (a learner sees `funded: false`)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


async def call_unary(
    targets: GrpcTargets, method: Method, request: Message, metadata: tuple[tuple[str, str], ...]
) -> Any:
    stub = targets.channel(method.service).unary_unary(
        method.grpc_path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=method.response_class().FromString,
    )
    return await stub(request, metadata=metadata, timeout=30)


def open_stream(
    targets: GrpcTargets, method: Method, request: Message, metadata: tuple[tuple[str, str], ...]
) -> grpc.aio.UnaryStreamCall:
    stub = targets.channel(method.service).unary_stream(
        method.grpc_path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=method.response_class().FromString,
    )
    call: grpc.aio.UnaryStreamCall = stub(request, metadata=metadata)
    return call


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status of a failed call, with its rich details when the server sent them."""
    status = rpc_status.from_call(error)
    if status is not None:
        return status
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")
