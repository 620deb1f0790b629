"""The generated code in registry/ matches the contract in proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_mutating_request_carries_an_idempotency_key() -> None:
    from services._gen.registry.v1 import brp_pb2, rio_pb2, rod_pb2, sandbox_pb2

    mutating_prefixes = (
        "Create",
        "Update",
        "End",
        "Register",
        "Change",
        "Delete",
        "Submit",
        "Set",
        "Reset",
        "Seed",
        "Purge",
        "Identify",
    )
    missing = []
    for module in (rio_pb2, rod_pb2, brp_pb2, sandbox_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if (
                    method.name.startswith(mutating_prefixes)
                    and "idempotency_key" not in method.input_type.fields_by_name
                ):
                    missing.append(f"{service.name}.{method.name}")
    assert missing == []
