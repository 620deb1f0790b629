"""Request ids, structured (JSON) logs and Prometheus metrics, the same for every service."""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID = "x-request-id"
# The id of the call this task serves; peer calls made while serving it carry it on.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

CALLS = Counter("registry_calls", "Calls handled, by method and final status", ["method", "code"])
LATENCY = Histogram(
    "registry_call_seconds",
    "Time to answer a unary call, by method",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OPEN_STREAMS = Gauge("registry_open_streams", "Server streams open now, by method", ["method"])
STREAM_MESSAGES = Counter("registry_stream_messages", "Messages sent on server streams, by method", ["method"])
STREAM_LAG = Histogram(
    "registry_stream_lag_seconds",
    "Time from a log entry's commit to its sending on a stream (feedback, change streams)",
    ["stream"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_SIZE = Gauge(
    "registry_outbox_rows", "Rows in a register's append-only log (feedback outbox, change logs)", ["log"]
)
BRP_MESSAGES = Counter(
    "registry_brp_messages", "BRP change messages by outcome (applied, held, rejected, ...)", ["outcome"]
)
PARKED_CHANGES = Counter(
    "registry_parked_changes", "Peer changes a register could not apply and passed (see its error log)", ["stream"]
)
IN_PROCESS_CALLS = Counter(
    "registry_in_process_calls",
    "Calls to a register served by this same process, handed to its handlers without a socket, by method",
    ["method"],
)
REFUSED = Counter("registry_refused_calls", "Calls refused by a limit, by limit", ["limit"])


def request_id_of(metadata: dict[str, str]) -> str:
    """The caller's request id when it sent a sane one, else a new one."""
    given = metadata.get(REQUEST_ID, "")
    if 0 < len(given) <= 64 and given.isprintable():
        return given
    return uuid.uuid4().hex


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON object a line on stderr, each with the request id of the call it belongs to (if any)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s", rename_fields={"levelname": "level"}
        )
    )
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def serve_metrics(host: str, port: int) -> int:
    """Serves /metrics for Prometheus on its own port (0: pick one); returns the port."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)


class RequestIdClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """Carries the current request id on to peer services, so one id follows a call through every register."""

    def _with_id(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        request_id = current_request_id.get()
        if not request_id:
            return details
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(REQUEST_ID, request_id)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_id(client_call_details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Awaitable[Any]], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_id(client_call_details), request)
