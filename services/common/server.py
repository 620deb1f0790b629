"""Builds and runs a gRPC server: our servicers plus reflection (v1, v1alpha), health, typed errors, graceful stop."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from services.common import reflection_v1, telemetry
from services.common.caller import INTERNAL_TOKEN, SANDBOX_KEY, metadata_of
from services.common.errors import RegistryError
from services.common.inprocess import LocalHandlers
from services.common.limits import CallLimits
from services.common.request_guard import refuse_hostile_text

log = logging.getLogger(__name__)

# Messages above this are refused by gRPC itself (RESOURCE_EXHAUSTED) before
# any of our code reads them.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass
class Component:
    """One service as the server sees it: its gRPC registration and its background work."""

    name: str
    # Full gRPC service names, for health and reflection (e.g. "registry.v1.RioService").
    service_names: Sequence[str]
    add_to_server: Callable[[grpc.aio.Server], None]
    # Background work started once the server listens (e.g. following another
    # service's change stream) and stopped before it closes.
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every call of ours: request id, limits, metrics, and typed errors.

    A RegistryError raised anywhere in our handlers becomes its rich status;
    any other exception becomes INTERNAL with reason INT500 (logged), so a bug
    never reaches a client as a crash. Each call gets a request id (the
    caller's `x-request-id` or a new one), sent back as response metadata and
    carried on to peer services. Calls with a sandbox key count against that
    key's rate and stream limits; internal calls between registers do not.
    """

    def __init__(self, limits: CallLimits | None = None, internal_token: str = "") -> None:
        self._limits = limits or CallLimits(0, 1, 0)
        self._internal_token = internal_token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith("/registry."):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _begin(self, context: grpc.aio.ServicerContext) -> tuple[str, str]:
        """Sets the call's request id; returns it and the sandbox key the call counts against ("" if none)."""
        metadata = metadata_of(context)
        request_id = telemetry.request_id_of(metadata)
        telemetry.current_request_id.set(request_id)
        token = metadata.get(INTERNAL_TOKEN, "")
        if token and self._internal_token and hmac.compare_digest(token.encode(), self._internal_token):
            return request_id, ""
        return request_id, metadata.get(SANDBOX_KEY, "")

    def _wrap_unary(self, behaviour: Any, method: str) -> Any:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            request_id, key = self._begin(context)
            context.set_trailing_metadata(((telemetry.REQUEST_ID, request_id),))
            code = grpc.StatusCode.OK
            try:
                self._limits.admit_call(key)
                refuse_hostile_text(request)
                return await behaviour(request, context)
            except grpc.aio.AbortError:
                code = _aborted_code(context)
                raise
            except Exception as error:  # noqa: BLE001 - this is the one place that maps every error
                code = _code_of(error)
                await _abort_for(error, context, method)
            finally:
                telemetry.CALLS.labels(method, _code_name(code)).inc()
                telemetry.LATENCY.labels(method).observe(time.perf_counter() - started)

        return unary

    def _wrap_stream(self, behaviour: Any, method: str) -> Any:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            request_id, key = self._begin(context)
            code = grpc.StatusCode.OK
            opened = False
            try:
                self._limits.admit_call(key)
                refuse_hostile_text(request)
                self._limits.open_stream(key)
                opened = True
                telemetry.OPEN_STREAMS.labels(method).inc()
                # Response headers at once, so a subscriber knows its subscription is live before the first message.
                await context.send_initial_metadata(((telemetry.REQUEST_ID, request_id),))
                async for item in behaviour(request, context):
                    telemetry.STREAM_MESSAGES.labels(method).inc()
                    yield item
            except grpc.aio.AbortError:
                code = _aborted_code(context)
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as error:  # noqa: BLE001
                code = _code_of(error)
                await _abort_for(error, context, method)
            finally:
                if opened:
                    self._limits.close_stream(key)
                    telemetry.OPEN_STREAMS.labels(method).dec()
                telemetry.CALLS.labels(method, _code_name(code)).inc()

        return stream


def _code_of(error: Exception) -> grpc.StatusCode:
    if isinstance(error, RegistryError):
        return error.code
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code()
    if isinstance(error, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED
    return grpc.StatusCode.INTERNAL


def _aborted_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status a handler aborted with (context.code() gives the number or the enum, by gRPC version)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)


def _code_name(code: Any) -> str:
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


async def _abort_for(error: Exception, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(error, RegistryError):
        await context.abort_with_status(error.to_status())
    if isinstance(error, grpc.aio.AioRpcError):
        # A peer service refused; pass its status (and rich details) through unchanged.
        status = rpc_status.from_call(error)
        if status is not None:
            await context.abort_with_status(rpc_status.to_status(status))
        await context.abort(error.code(), error.details() or "")
    if isinstance(error, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    log.exception("unexpected error in %s", method, exc_info=error)
    internal = RegistryError(grpc.StatusCode.INTERNAL, "internal error in the sandbox; it has been logged", "INT500")
    await context.abort_with_status(internal.to_status())


class PortInUseError(RuntimeError):
    """The address is served already (or cannot be bound)."""


# Where a worker of several (services.workers) takes the calls it makes to its own registers: a port of its
# own, so they stay in the process instead of landing on a sibling through the shared port.
LOOPBACK = "127.0.0.1"


class RegistryServer:
    """A grpc.aio server hosting one or more components on one port."""

    def __init__(
        self,
        components: Sequence[Component],
        host: str,
        port: int,
        *,
        limits: CallLimits | None = None,
        internal_token: str = "",
        reuse_port: bool = False,
    ) -> None:
        """`reuse_port`: share the port with sibling workers (services.workers reserved it for them first)."""
        self.components = list(components)
        interceptors = [CallInterceptor(limits, internal_token)]
        # This process's own peer calls reach the same handlers through the same interceptors (Peers).
        self.local = LocalHandlers(interceptors)
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # gRPC sets SO_REUSEPORT by default: a second sandbox on a port already served would start
                # silently and split connections between two databases. Fail at bind instead. Workers of
                # one supervisor share it on purpose; the supervisor has refused a port served by anyone else.
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [name for component in self.components for name in component.service_names]
        for component in self.components:
            component.add_to_server(self.local.recorder(self._server))
        # Reflection as grpc.reflection.v1 and v1alpha (grpcurl, Postman and the explorer's users ask either).
        reflection_v1.enable_server_reflection([*names, health.SERVICE_NAME], self._server)
        try:
            self.port = self._server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as error:
            raise PortInUseError(f"cannot listen on {host}:{port}: is another sandbox running there?") from error
        self.host = host
        # Where this process's own peers call it: the served port, or a worker's private one.
        self.local_address = self.address
        if reuse_port:
            self.local_address = f"{LOOPBACK}:{self._server.add_insecure_port(f'{LOOPBACK}:0')}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        await self._server.start()
        self.local.start()
        for component in self.components:
            if component.start is not None:
                await component.start()
        for component in self.components:
            for name in component.service_names:
                await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        for component in reversed(self.components):
            if component.stop is not None:
                await component.stop()
        await self.local.stop()
        await self._server.stop(grace)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def serve_until_signalled(
    server: RegistryServer, grace: float, on_started: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Starts the server, runs on_started, and stops gracefully on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if on_started is not None:
        await on_started()
    await stop.wait()
    log.info("stopping: letting calls finish for up to %.1fs", grace)
    await server.stop(grace)
