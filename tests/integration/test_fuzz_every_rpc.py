"""Hypothesis drives every RPC of the contract with hostile messages: only documented statuses may come back.

Bad input (empty, huge, unicode, NUL, negative, impossible dates, unknown enum
values, bogus ids) must be refused with a typed status naming what is wrong,
never INTERNAL or UNKNOWN, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services._gen.registry.v1 import brp_pb2, rio_pb2, rod_pb2, sandbox_pb2
from services.common.caller import BOARD_CODE, INSTITUTION_CODE, SANDBOX_KEY
from tests.conftest import SandboxHarness

# What a caller may be answered; anything else (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...) is a bug.
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
EXAMPLES_PER_METHOD = 25
# Methods that rebuild a whole sandbox: a few calls each, or the run takes minutes.
HEAVY = {"SeedSandbox", "ResetSandbox"}

_hostile_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.sampled_from(["", "\x00", "a\x00b", "9999", "-1", "25BE", "100B001", "999999990", "' OR 1=1 --", "💥" * 50]),
    st.just("x" * 5000),
)
_hostile_int = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([0, -1, 2**31, 2**62, -(2**63), 2**63 - 1]),
)


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of this type with any subset of fields set to hostile values (nested up to depth 3)."""
    cls = GetMessageClass(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _field_strategy(field, depth)
        if value is None:
            continue
        if field.is_repeated:
            fields[field.name] = st.lists(value, max_size=3)
        else:
            fields[field.name] = value

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in fields.items():
            if not draw(st.booleans()):
                continue
            value = draw(strategy)
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                target = getattr(message, name)
                for item in value:
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        target.add().CopyFrom(item)
                    else:
                        target.append(item)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return build()


def _field_strategy(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _hostile_text
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=200), st.just(b"<?xml version='1.0'?><a>" + b"x" * 1000 + b"</a>"))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        # Known values and unknown ones (proto3 enums are open).
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-5, 1000))
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return _hostile_int.filter(lambda v: -(2**31) <= v < 2**31)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return _hostile_int
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        full_name = field.message_type.full_name
        if full_name == "google.type.Date":
            return st.builds(
                GetMessageClass(field.message_type),
                year=st.integers(-5, 10000),
                month=st.integers(-1, 14),
                day=st.integers(-1, 32),
            )
        if full_name == "google.protobuf.Timestamp":
            return st.builds(
                GetMessageClass(field.message_type),
                seconds=st.integers(-(2**40), 2**40),
                nanos=st.integers(-5, 2 * 10**9),
            )
        if depth >= 3:
            return None
        return message_strategy(field.message_type, depth + 1)
    return None


def every_method() -> list[MethodDescriptor]:
    return [
        method
        for module in (sandbox_pb2, rio_pb2, brp_pb2, rod_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def examples(method: MethodDescriptor) -> list[tuple[Message, int]]:
    """Hypothesis-drawn requests for one method, each with a choice of acting identity."""
    drawn: list[tuple[Message, int]] = []
    count = 3 if method.name in HEAVY else EXAMPLES_PER_METHOD

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(message_strategy(method.input_type), st.integers(0, 2))
    def collect(request: Message, identity: int) -> None:
        drawn.append((request, identity))

    collect()
    return drawn


async def _call(
    channel: grpc.aio.Channel, method: MethodDescriptor, request: Message, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_type = GetMessageClass(method.output_type)
    try:
        if method.server_streaming:
            call = channel.unary_stream(
                path, request_serializer=type(request).SerializeToString, response_deserializer=response_type.FromString
            )(request, metadata=metadata)
            try:
                await asyncio.wait_for(call.read(), timeout=0.5)
            except TimeoutError:
                pass  # a live stream with nothing to say yet is a fine answer
            finally:
                call.cancel()
            return grpc.StatusCode.OK
        await channel.unary_unary(
            path, request_serializer=type(request).SerializeToString, response_deserializer=response_type.FromString
        )(request, metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.slow
async def test_hostile_requests_get_only_documented_statuses(sandbox: SandboxHarness) -> None:
    identities = [
        sandbox.metadata(),
        ((SANDBOX_KEY, sandbox.sandbox_key), (INSTITUTION_CODE, "25BE")),
        ((SANDBOX_KEY, sandbox.sandbox_key), (BOARD_CODE, "100B001")),
    ]
    undocumented: list[str] = []
    for method in every_method():
        for request, identity in examples(method):
            code = await _call(sandbox.channel, method, request, identities[identity])
            if code not in DOCUMENTED:
                undocumented.append(f"{method.full_name} -> {code.name}: {str(request)[:300]!r}")
    assert not undocumented, f"{len(undocumented)} undocumented answers:\n" + "\n".join(undocumented[:25])
