"""Settings of the brp_sync service alone (REGISTRY_BRP_* environment variables); shared ones live in common."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_BRP_", env_file=".env", extra="ignore")

    # A message held this long for a missing predecessor is reported as an overdue gap (ListHeldMessages).
    gap_timeout_seconds: float = Field(default=3600.0, ge=0)
