"""Runs the sandbox service alone: python -m services.sandbox (port and database from REGISTRY_* settings)."""

from services.bootstrap import run_alone

run_alone(["sandbox"])
