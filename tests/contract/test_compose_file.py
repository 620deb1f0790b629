"""The compose file is valid compose (no Docker engine here: checked against the Compose Specification's schema)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
REGISTERS = {"sandbox", "rio", "brp_sync", "rod"}


def test_the_compose_file_follows_the_compose_specification() -> None:
    # check-jsonschema ships the Compose Specification's JSON schema (vendor.compose-spec): no network needed.
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_register_gets_the_one_internal_token_without_a_default_and_the_explorer_none() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) >= REGISTERS
    for name in REGISTERS:
        token = services[name]["environment"]["REGISTRY_INTERNAL_TOKEN"]
        # ${VAR:?message} makes compose refuse to start when the token is not set: no usable default.
        assert token.startswith("${REGISTRY_INTERNAL_TOKEN:?"), name
    explorer = services["explorer"]
    assert "REGISTRY_INTERNAL_TOKEN" not in (explorer.get("environment") or {})
    assert all(str(port).startswith("127.0.0.1:") for port in explorer.get("ports", []))


def test_rod_runs_as_replicas_that_publish_no_port() -> None:
    # Replicas of one service cannot all publish one host port; callers reach them by the service name.
    rod = yaml.safe_load(COMPOSE.read_text())["services"]["rod"]
    assert rod["deploy"]["replicas"] >= 2
    assert "ports" not in rod
    assert rod["environment"]["REGISTRY_DATABASE_URL"].startswith("postgresql://")
