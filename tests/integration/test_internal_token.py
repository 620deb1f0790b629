"""The internal service token has no public default, and internal metadata from outside opens nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from pydantic import ValidationError

from services._gen.registry.v1 import brp_pb2, rio_pb2, rod_pb2, sandbox_pb2, sandbox_pb2_grpc
from services.bootstrap import MissingInternalTokenError, build
from services.common.caller import BOARD_CODE, INTERNAL_TOKEN, SANDBOX_ID, SANDBOX_KEY
from services.common.settings import Settings
from tests.conftest import SandboxHarness
from tests.e2e.test_sandbox_process import ROOT

# The token this repository once shipped as a default, and a few guesses an attacker would try.
GUESSES = ["sandbox-internal-dev-token", "change-me", "", "x" * 64]


def every_method() -> Iterator[MethodDescriptor]:
    for module in (sandbox_pb2, rio_pb2, brp_pb2, rod_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


async def call(channel: grpc.aio.Channel, method: MethodDescriptor, metadata: tuple[tuple[str, str], ...]) -> None:
    """Calls any method with an empty request; for a stream, waits for its first message or status."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request = GetMessageClass(method.input_type)()
    response = GetMessageClass(method.output_type)
    if method.server_streaming:
        stream = channel.unary_stream(
            path, request_serializer=type(request).SerializeToString, response_deserializer=response.FromString
        )
        call = stream(request, metadata=metadata)
        try:
            await asyncio.wait_for(call.read(), timeout=5)
        finally:
            call.cancel()
        return
    unary = channel.unary_unary(
        path, request_serializer=type(request).SerializeToString, response_deserializer=response.FromString
    )
    await unary(request, metadata=metadata, timeout=10)


@pytest.mark.parametrize("token", GUESSES)
async def test_a_guessed_internal_token_is_refused_by_every_method(sandbox: SandboxHarness, token: str) -> None:
    # The attack of issue 9: the old default token plus another sandbox's id, from the public port.
    metadata = ((INTERNAL_TOKEN, token), (SANDBOX_ID, sandbox.sandbox_id))
    accepted = []
    for method in every_method():
        try:
            await call(sandbox.channel, method, metadata)
            accepted.append(method.full_name)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                accepted.append(f"{method.full_name}: {error.code().name}")
    # CreateSandbox is public (anyone may make a sandbox of their own), and refuses no token.
    assert accepted == ["registry.v1.SandboxAdmin.CreateSandbox"]


async def test_another_vendors_sandbox_id_beside_my_key_is_ignored(sandbox: SandboxHarness) -> None:
    stub = sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)
    intruder = await stub.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="intruder"))
    metadata = ((SANDBOX_KEY, intruder.sandbox_key), (SANDBOX_ID, sandbox.sandbox_id), (BOARD_CODE, ""))
    seen = await stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=metadata)
    assert seen.sandbox_id == intruder.sandbox.sandbox_id != sandbox.sandbox_id


async def test_the_embedded_token_is_random_per_start(sandbox: SandboxHarness) -> None:
    other = build(["sandbox"], Settings(database_url="sqlite://", port=0))
    assert len(sandbox.internal_token) >= 32
    assert other.settings.internal_token != sandbox.internal_token
    other.database.engine.dispose()


def test_settings_refuse_a_published_or_short_token() -> None:
    for token in ("sandbox-internal-dev-token", "change-me", "short"):
        with pytest.raises(ValidationError, match="REGISTRY_INTERNAL_TOKEN"):
            Settings(internal_token=token)


def test_peers_elsewhere_without_a_token_refuse_to_build() -> None:
    with pytest.raises(MissingInternalTokenError, match="REGISTRY_INTERNAL_TOKEN"):
        build(["rod"], Settings(database_url="sqlite://", port=0, sandbox_address="127.0.0.1:1"))


def test_a_service_run_alone_without_a_token_refuses_to_start() -> None:
    env = {key: value for key, value in os.environ.items() if key != "REGISTRY_INTERNAL_TOKEN"}
    env["REGISTRY_DATABASE_URL"] = "sqlite://"
    result = subprocess.run(
        [sys.executable, "-m", "services.rio"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "REGISTRY_INTERNAL_TOKEN is not set" in result.stderr
