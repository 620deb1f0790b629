"""Runs the rio service alone: python -m services.rio (port and database from REGISTRY_* settings)."""

from services.bootstrap import run_alone

run_alone(["rio"])
