"""Runs the rod service alone: python -m services.rod (port and database from REGISTRY_* settings)."""

from services.bootstrap import run_alone

run_alone(["rod"])
