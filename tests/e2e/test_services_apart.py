"""Each service can run alone (`python -m services.<name>`) with its own port and database, as in compose."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, inspect

from services._gen.registry.v1 import rio_pb2, rio_pb2_grpc, sandbox_pb2, sandbox_pb2_grpc
from services.common.caller import SANDBOX_KEY
from tests.e2e.test_sandbox_process import ROOT, free_port, wait_until_serving

pytestmark = pytest.mark.slow

SERVICE_NAMES = {
    "sandbox": "registry.v1.SandboxAdmin",
    "rio": "registry.v1.RioService",
    "brp_sync": "registry.v1.BrpService",
    "rod": "registry.v1.RodService",
}


def test_every_service_runs_alone_on_its_own_port_and_database(tmp_path: Path) -> None:
    ports = {name: free_port() for name in SERVICE_NAMES}
    peers = {
        "REGISTRY_SANDBOX_ADDRESS": f"127.0.0.1:{ports['sandbox']}",
        "REGISTRY_RIO_ADDRESS": f"127.0.0.1:{ports['rio']}",
        "REGISTRY_BRP_ADDRESS": f"127.0.0.1:{ports['brp_sync']}",
        "REGISTRY_ROD_ADDRESS": f"127.0.0.1:{ports['rod']}",
    }
    token = secrets.token_urlsafe(32)
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, port in ports.items():
            env = {
                **os.environ,
                **peers,
                "REGISTRY_PORT": str(port),
                "REGISTRY_INTERNAL_TOKEN": token,
                "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path / name}.db",
            }
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        for name, port in ports.items():
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                wait_until_serving(channel, [SERVICE_NAMES[name]])

        with grpc.insecure_channel(f"127.0.0.1:{ports['sandbox']}") as channel:
            stub = sandbox_pb2_grpc.SandboxAdminStub(channel)
            key = stub.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="apart")).sandbox_key
            assert stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=((SANDBOX_KEY, key),)).name == "apart"
            # Seeding fans out over gRPC to RIO and BRP in their own processes and databases.
            seeded = stub.SeedSandbox(
                sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_SMALL, seed=1), metadata=((SANDBOX_KEY, key),)
            )
            assert seeded.created["providers"] > 0 and seeded.created["persons"] > 0
        with grpc.insecure_channel(f"127.0.0.1:{ports['rio']}") as channel:
            rio = rio_pb2_grpc.RioServiceStub(channel)
            # RIO resolves the key by asking the sandbox admin in another process.
            boards = rio.ListBoards(rio_pb2.ListBoardsRequest(), metadata=((SANDBOX_KEY, key),))
            assert len(boards.boards) > 0
            with pytest.raises(grpc.RpcError) as refused:
                rio.ListBoards(rio_pb2.ListBoardsRequest(), metadata=((SANDBOX_KEY, "sk_test_unknown"),))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Each service made only its own tables, in its own database.
        for name in SERVICE_NAMES:
            engine = create_engine(f"sqlite:///{tmp_path / name}.db")
            tables = set(inspect(engine).get_table_names())
            engine.dispose()
            assert tables and all(t.startswith((f"{name}_", f"alembic_version_{name}")) for t in tables), tables
    finally:
        outputs = {}
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                outputs[name] = process.communicate(timeout=20)[0]
            except subprocess.TimeoutExpired:
                process.kill()
                outputs[name] = process.communicate()[0]
    for name, process in processes.items():
        assert process.returncode == 0, f"{name} exited {process.returncode}:\n{outputs[name]}"
