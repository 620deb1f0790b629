"""The one typed settings class; every value comes from a REGISTRY_* environment variable."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".sandbox")

MIN_INTERNAL_TOKEN_LENGTH = 24
# Tokens that appeared in this repository's history or examples: anyone may know them.
PUBLISHED_TOKENS = frozenset({"sandbox-internal-dev-token", "change-me"})
# The furthest a correction deadline (prikdatum) may lie after its count date: DUO's four weeks plus
# weekends, with room for a sector's own (ROD re-decides a count date this long after it).
MAX_CORRECTION_WINDOW_DAYS = 40
SECTORS = ("PO", "VO", "MBO", "HO")


def parse_correction_deadlines(spec: str) -> dict[tuple[str, dt.date], dt.date]:
    """REGISTRY_ROD_CORRECTION_DEADLINES: "SECTOR:count date=deadline", comma-separated, ISO dates.

    For example "PO:2027-02-01=2027-03-05,VO:2026-10-01=2026-10-15". Each deadline lies on or after
    its count date and at most MAX_CORRECTION_WINDOW_DAYS after it; a sector and count date appear once.
    """
    deadlines: dict[tuple[str, dt.date], dt.date] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        sector, _, dates = item.partition(":")
        count, _, deadline = dates.partition("=")
        sector = sector.strip().upper()
        if sector not in SECTORS or not count or not deadline:
            raise ValueError(f"{item!r}: write SECTOR:YYYY-MM-DD=YYYY-MM-DD with SECTOR one of {', '.join(SECTORS)}")
        try:
            count_date, last = dt.date.fromisoformat(count.strip()), dt.date.fromisoformat(deadline.strip())
        except ValueError as error:
            raise ValueError(f"{item!r}: {error}") from None
        if not count_date <= last <= count_date + dt.timedelta(days=MAX_CORRECTION_WINDOW_DAYS):
            raise ValueError(
                f"{item!r}: the deadline must lie 0 to {MAX_CORRECTION_WINDOW_DAYS} days after the count date"
            )
        if (sector, count_date) in deadlines:
            raise ValueError(f"{item!r}: {sector} {count_date} appears twice")
        deadlines[(sector, count_date)] = last
    return deadlines


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", env_file=".env", extra="ignore")

    # Where the registers keep their tables. SQLite (WAL) by default; a
    # postgresql:// URL switches to PostgreSQL through psycopg 3.
    database_url: str = f"sqlite:///{DEFAULT_DATA_DIR / 'registry.db'}"
    host: str = "127.0.0.1"
    port: int = 50051
    # Where each service is reached over gRPC. Empty means "this process"
    # (the embedded mode, every service on one port).
    rio_address: str = ""
    brp_address: str = ""
    rod_address: str = ""
    sandbox_address: str = ""
    # Shared secret services use to call each other on behalf of a sandbox, or
    # across all sandboxes for change streams. There is deliberately no usable
    # default: the embedded mode makes a random one at start (see
    # services.bootstrap), services run apart refuse to start without one.
    internal_token: str = Field(default="", repr=False)
    # How a seeded sandbox is sized when `sandbox up` seeds the default sandbox.
    seed_size: str = "small"
    seed: int = 20260101
    # Seconds a stream waits for a wake-up before it polls the database anyway
    # (covers writers in other processes).
    stream_poll_seconds: float = Field(default=1.0, gt=0)
    # BRP sync: a message held this long for a missing predecessor is reported
    # as an overdue gap (ListHeldMessages). Env: REGISTRY_BRP_GAP_TIMEOUT_SECONDS.
    brp_gap_timeout_seconds: float = Field(default=3600.0, ge=0)
    # Limits per sandbox key (0 switches one off): calls a second with a burst,
    # and open server streams (a national-size sandbox has 6,700 listening schools).
    rate_limit_per_second: float = Field(default=2000.0, ge=0)
    rate_limit_burst: int = Field(default=4000, ge=1)
    streams_per_sandbox: int = Field(default=10000, ge=0)
    # Sandboxes one creator may hold: a vendor's sandbox key, or one calling host for anonymous callers.
    sandboxes_per_creator: int = Field(default=1000, ge=0)
    # Prometheus /metrics on its own port, on `host` (0: off).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Seconds to let calls finish on SIGTERM before they are cancelled.
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    # ROD keeps a copy of RIO's offering checks and of BRP's persons it follows while it follows
    # their change streams (services.rod.copies). Unset: on with SQLite (every register is one
    # process), off with PostgreSQL, where RIO and BRP may run as several processes (workers,
    # replicas) and a write in one ROD's stream did not reach would not wait for it. Set true only
    # when RIO and BRP are one process each.
    rod_peer_copies: bool | None = None
    # Processes serving the one port (services.workers; `--workers` on the command line). More than one
    # needs PostgreSQL: SQLite has one writer. Env: REGISTRY_WORKERS.
    workers: int = Field(default=1, ge=1, le=64)
    # ROD: correction deadlines (prikdatums) that differ from DUO's practice, per sector and count date,
    # "PO:2027-02-01=2027-03-05,VO:2026-10-01=2026-10-15" (see parse_correction_deadlines). Empty: every
    # count date has DUO's default (services.rod.funding.duo_correction_deadline).
    rod_correction_deadlines: str = ""
    # A register calls a peer served by this same process (the embedded mode, each worker of several) by
    # handing the call to the peer's gRPC handlers, through the same interceptors, without a loopback
    # socket (services.common.inprocess). False: every peer call goes over gRPC. A peer with a configured
    # address is always called over gRPC. Env: REGISTRY_INPROCESS_PEERS.
    inprocess_peers: bool = True

    @field_validator("internal_token")
    @classmethod
    def _strong_token(cls, token: str) -> str:
        if token and (len(token) < MIN_INTERNAL_TOKEN_LENGTH or token in PUBLISHED_TOKENS):
            raise ValueError(
                f"REGISTRY_INTERNAL_TOKEN must be a secret of at least {MIN_INTERNAL_TOKEN_LENGTH} characters "
                "that was never published (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return token

    @field_validator("rod_correction_deadlines")
    @classmethod
    def _deadlines(cls, spec: str) -> str:
        parse_correction_deadlines(spec)
        return spec

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, url: str) -> str:
        # Bare postgresql:// would pick psycopg2, which we do not install.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    def address_of(self, service: str) -> str:
        """gRPC target of a service; this process's own port when not configured."""
        configured: str = getattr(self, f"{service}_address")
        return configured or f"{self.host}:{self.port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
