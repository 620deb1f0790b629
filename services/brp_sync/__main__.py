"""Runs the brp_sync service alone: python -m services.brp_sync (port and database from REGISTRY_* settings)."""

from services.bootstrap import run_alone

run_alone(["brp_sync"])
