"""`sandbox up` as a real process: health SERVING for every register, services listed by reflection, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
REGISTERS = ["registry.v1.SandboxAdmin", "registry.v1.RioService", "registry.v1.BrpService", "registry.v1.RodService"]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(channel: grpc.Channel, services: list[str], timeout: float = 60) -> dict[str, int]:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    statuses: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            statuses = {s: stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=2).status for s in services}
            if all(v == health_pb2.HealthCheckResponse.SERVING for v in statuses.values()):
                return statuses
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not SERVING within {timeout}s: {statuses}")


def start_sandbox(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}", "REGISTRY_PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sandbox_up_serves_every_register_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = start_sandbox(tmp_path, port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_until_serving(channel, ["", *REGISTERS])
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = list(
                reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            )
            listed = {s.name for s in answers[0].list_services_response.service}
            assert set(REGISTERS) | {"grpc.health.v1.Health"} <= listed

            # Reflection serves the whole contract, so a client can call methods it never compiled.
            files = list(
                reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="registry.v1.RodService")])
                )
            )
            assert files[0].file_descriptor_response.file_descriptor_proto
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise AssertionError(f"sandbox did not stop within 20s of SIGTERM:\n{output}") from None
    assert process.returncode == 0, output
    assert "x-sandbox-key: sk_test_" in output
    assert f"127.0.0.1:{port}" in output
    # A start that works but logs a traceback (a call SandboxAdmin could not serialise) is still broken.
    assert "Traceback" not in output, output


def test_the_default_sandbox_key_survives_a_restart(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        port = free_port()
        process = start_sandbox(tmp_path, port, "--no-seed")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_until_serving(channel, [""])
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        keys += [word for word in output.split() if word.startswith("sk_test_")][:1]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_several_workers_on_sqlite_are_refused_with_the_reason(tmp_path: Path) -> None:
    process = start_sandbox(tmp_path, free_port(), "--workers", "2", "--no-seed")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    assert "--workers 2 needs PostgreSQL" in output and "SQLite has one writer" in output
    assert not (tmp_path / "registry.db").exists(), "refused before anything was written"
