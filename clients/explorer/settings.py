"""The explorer's typed settings, from REGISTRY_EXPLORER_* environment variables (the internal token is not one)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


class ExplorerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_EXPLORER_", env_file=".env", extra="ignore")

    # Loopback unless configured: the gateway creates sandboxes for anyone who can reach it.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # The gRPC address of the registers (all four on one port, as `sandbox up` serves them) ...
    grpc_address: str = "127.0.0.1:50051"
    # ... or, when they run apart (compose), one address per service: {"registry.v1.RioService": "rio:50051"}.
    service_addresses: dict[str, str] = Field(default_factory=dict)
    # Host headers answered; a guard against DNS rebinding (a web page on another name calling the gateway).
    # Add the names you publish the explorer under when it is not on loopback.
    allowed_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS))

    @field_validator("grpc_address")
    @classmethod
    def _has_port(cls, address: str) -> str:
        if ":" not in address:
            raise ValueError("the gRPC address needs a port, e.g. 127.0.0.1:50051")
        return address
