"""Calls to a register this process serves itself, handed to its gRPC handlers without a loopback connection.

In the embedded mode (`sandbox up`) ROD, BRP and RIO call each other and
SandboxAdmin in the same process. Over loopback gRPC each hop paid protobuf
encoding, HTTP/2 framing and two trips through the event loop's completion
queue. `LocalChannel` is a `grpc.aio.Channel` whose calls go to the very
method handlers the server registered, through the server's own interceptors,
with the contract's messages encoded once and decoded once each way (so
neither side ever holds the other's objects), the caller's metadata, a
deadline, and a refusal raised as the `grpc.aio.AioRpcError` a socket would
have delivered. A peer served elsewhere is still called over gRPC
(services.common.peers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any, NamedTuple, cast

import grpc

from services.common import telemetry

# What the server accepted (HTTP/2 buffers messages ahead of a slow reader): an in-process stream runs as far
# ahead of its reader too, and then waits, as a stream over a socket does once its flow-control window is full.
STREAM_BUFFER = 256
# How long a stopping server waits for its in-process streams to end once cancelled.
STOP_SECONDS = 1.0
# Calls a channel handed over: one connection number each, as `context.peer()` names a loopback connection.
_connections = itertools.count(1)


class _CallDetails(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


class LocalHandlers:
    """The method handlers a server registered, by full method name, and the interceptors its calls pass."""

    def __init__(self, interceptors: Sequence[grpc.aio.ServerInterceptor]) -> None:
        self._interceptors = list(interceptors)
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self.services: set[str] = set()
        self.serving = False
        self.started = asyncio.Event()
        self._streams: set[asyncio.Task[None]] = set()

    def recorder(self, server: grpc.aio.Server) -> grpc.aio.Server:
        """A stand-in for `server` for the generated `add_*_to_server`: registers there and remembers here."""
        return cast(grpc.aio.Server, _Recorder(server, self))

    def add(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.services.add(service)
        for name, handler in handlers.items():
            self._handlers[f"/{service}/{name}"] = handler

    async def handler(self, method: str, metadata: tuple[tuple[str, str | bytes], ...]) -> grpc.RpcMethodHandler | None:
        """The handler as the server would run it: passed through its interceptors, first one outermost."""

        async def innermost(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return self._handlers.get(method)

        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]] = innermost
        for interceptor in reversed(self._interceptors):
            continuation = _chain(interceptor, continuation)
        return await continuation(cast(grpc.HandlerCallDetails, _CallDetails(method, metadata)))

    def start(self) -> None:
        self.serving = True
        self.started.set()

    async def stop(self) -> None:
        """No new calls (UNAVAILABLE, as a stopped server's port answers); open streams end as at server stop."""
        self.serving = False
        streams = list(self._streams)
        for task in streams:
            task.cancel()
        if streams:
            # Bounded, as the server's own stop is: a handler that ignores its cancellation is not waited for.
            await asyncio.wait(streams, timeout=STOP_SECONDS)

    def track(self, task: asyncio.Task[None]) -> None:
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)


def _chain(
    interceptor: grpc.aio.ServerInterceptor,
    continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
) -> Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]:
    async def next_one(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return cast(grpc.RpcMethodHandler | None, await interceptor.intercept_service(continuation, details))

    return next_one


class _Recorder:
    """Forwards the generated code's registration to the real server and keeps the method handlers."""

    def __init__(self, server: grpc.aio.Server, local: LocalHandlers) -> None:
        self._server = server
        self._local = local

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(service, handlers)
        self._local.add(service, handlers)


# --- the server's side of one call ---


class _LocalContext(grpc.aio.ServicerContext):
    """What a handler sees of an in-process call: the metadata, deadline and status calls of a socket's."""

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...], deadline: float | None, peer: str) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self._peer = peer
        self._code: grpc.StatusCode = grpc.StatusCode.OK
        self._details = ""
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()
        self.initial: tuple[tuple[str, str | bytes], ...] = ()
        self.initial_sent = asyncio.Event()
        self.aborted = False

    # Status, as grpc.aio's server keeps it (cygrpc's _ServicerContext.abort and abort_with_status).
    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> Any:
        if self.aborted:
            raise grpc.aio.UsageError("Abort already called!")
        self.aborted = True
        if trailing_metadata:
            self._trailing = tuple(trailing_metadata)
        if details or not self._details:
            self._details = details
        self._code = code
        raise grpc.aio.AbortError("Locally aborted.")

    async def abort_with_status(self, status: grpc.Status) -> Any:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._trailing

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        self.initial = tuple(initial_metadata)
        self.initial_sent.set()

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, Any]:
        return {}

    def set_compression(self, compression: grpc.Compression) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass

    async def read(self) -> Any:
        raise grpc.aio.UsageError("a unary request has no more messages")

    async def write(self, message: Any) -> None:
        raise grpc.aio.UsageError("write is for handlers that yield nothing; ours yield")


def _metadata(pairs: Sequence[tuple[str, str | bytes]]) -> grpc.aio.Metadata:
    return grpc.aio.Metadata(*pairs)


def _refusal(context: _LocalContext) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        context.code(), _metadata(context.initial), _metadata(context.trailing_metadata()), context.details()
    )


def _unexpected(error: BaseException) -> grpc.aio.AioRpcError:
    # What grpc.aio's server answers for an exception a handler lets out (our CallInterceptor lets none out).
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNKNOWN, _metadata(()), _metadata(()), f"Unexpected {type(error)}: {error}"
    )


# --- the client's side ---


class LocalChannel(grpc.aio.Channel):
    """A channel to the registers this process serves: every call goes to `local`'s handlers."""

    def __init__(self, local: LocalHandlers) -> None:
        self._local = local
        self._peer = f"ipv4:127.0.0.1:in-process-{next(_connections)}"
        self._calls: set[asyncio.Task[Any]] = set()

    def _metadata(self, metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
        # What RequestIdClientInterceptor adds to a call over a socket.
        pairs = tuple(metadata or ())
        request_id = telemetry.current_request_id.get()
        return (*pairs, (telemetry.REQUEST_ID, request_id)) if request_id else pairs

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryUnaryMultiCallable:
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryStreamMultiCallable:
        return _UnaryStream(self, method, request_serializer, response_deserializer)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("no register calls a peer with a client stream")

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("no register calls a peer with a bidirectional stream")

    async def close(self, grace: float | None = None) -> None:
        for task in list(self._calls):
            task.cancel()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.READY if self._local.serving else grpc.ChannelConnectivity.CONNECTING

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await asyncio.sleep(0)

    async def channel_ready(self) -> None:
        await self._local.started.wait()

    async def __aenter__(self) -> LocalChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _prepare(
        self,
        method: str,
        request: Any,
        serializer: Callable[[Any], bytes] | None,
        metadata: Any,
        time_limit: float | None,
        kind: str,
    ) -> tuple[Any, Any, _LocalContext]:
        """The server's handler, the request as the server decodes it, and the call's context."""
        if not self._local.serving:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, _metadata(()), _metadata(()), "the server is stopped"
            )
        pairs = self._metadata(metadata)
        handler = await self._local.handler(method, pairs)
        behaviour = None if handler is None else getattr(handler, kind)
        if handler is None or behaviour is None:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNIMPLEMENTED, _metadata(()), _metadata(()), "Method not found!")
        wire = serializer(request) if serializer is not None else request
        decoded = handler.request_deserializer(wire) if handler.request_deserializer is not None else wire
        deadline = None if time_limit is None else time.monotonic() + time_limit
        telemetry.IN_PROCESS_CALLS.labels(method).inc()
        return handler, decoded, _LocalContext(pairs, deadline, self._peer)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        # A task of its own, as the server runs each call: the handler's context variables (request id) and
        # its cancellation stay apart from the caller's.
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coroutine)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return task


class _UnaryUnary(grpc.aio.UnaryUnaryMultiCallable):
    def __init__(
        self,
        channel: LocalChannel,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> grpc.aio.UnaryUnaryCall:
        return _UnaryCall(self._channel._spawn(self._run(request, timeout, metadata)))

    async def _run(self, request: Any, time_limit: float | None, metadata: Any) -> Any:
        handler, decoded, context = await self._channel._prepare(
            self._method, request, self._serializer, metadata, time_limit, "unary_unary"
        )
        try:
            running = handler.unary_unary(decoded, context)
            answer = await (running if time_limit is None else asyncio.wait_for(running, time_limit))
        except grpc.aio.AbortError:
            raise _refusal(context) from None
        except TimeoutError:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED, _metadata(()), _metadata(()), "Deadline Exceeded"
            ) from None
        except Exception as error:  # noqa: BLE001 - the server turns any escaped exception into UNKNOWN
            raise _unexpected(error) from None
        if context.code() != grpc.StatusCode.OK:
            raise _refusal(context)
        wire = handler.response_serializer(answer) if handler.response_serializer is not None else answer
        return self._deserializer(wire) if self._deserializer is not None else wire, context


class _CallBase:
    """The status half of a call object, for code that inspects a call after awaiting it."""

    _task: asyncio.Task[Any]

    def cancelled(self) -> bool:
        return self._task.cancelled()

    def done(self) -> bool:
        return self._task.done()

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return self._task.cancel()

    def add_done_callback(self, callback: Callable[..., None]) -> None:
        self._task.add_done_callback(lambda _task: callback(self))

    def _error(self) -> grpc.aio.AioRpcError | None:
        if not self._task.done() or self._task.cancelled():
            return None
        error = self._task.exception()
        return error if isinstance(error, grpc.aio.AioRpcError) else None

    def _context(self) -> _LocalContext | None:
        if not self._task.done() or self._task.cancelled() or self._task.exception() is not None:
            return None
        result = self._task.result()
        return result[1] if isinstance(result, tuple) else None

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return _metadata(())

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task
        error, context = self._error(), self._context()
        if error is not None:
            return error.trailing_metadata()
        return _metadata(context.trailing_metadata() if context is not None else ())

    async def code(self) -> grpc.StatusCode:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task
        if self._task.cancelled():
            return grpc.StatusCode.CANCELLED
        error = self._error()
        return error.code() if error is not None else grpc.StatusCode.OK

    async def details(self) -> str:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task
        error = self._error()
        return (error.details() or "") if error is not None else ""

    async def wait_for_connection(self) -> None:
        return None


class _UnaryCall(_CallBase, grpc.aio.UnaryUnaryCall):
    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task

    def __await__(self) -> Generator[Any, None, Any]:
        # A caller cancelled while it waits gets CancelledError, as from grpc.aio's call (which cancels the
        # call too: here the call's task, which the waiting task's cancellation cancels).
        answer, _context = yield from self._task.__await__()
        return answer


class _UnaryStream(grpc.aio.UnaryStreamMultiCallable):
    def __init__(
        self,
        channel: LocalChannel,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> grpc.aio.UnaryStreamCall:
        messages: asyncio.Queue[Any] = asyncio.Queue(STREAM_BUFFER)
        task = self._channel._spawn(self._run(request, timeout, metadata, messages))
        self._channel._local.track(task)
        return _StreamCall(task, messages)

    async def _run(self, request: Any, time_limit: float | None, metadata: Any, messages: asyncio.Queue[Any]) -> None:
        """Runs the server's generator, handing each message on encoded and decoded; ends with its status."""
        handler, decoded, context = await self._channel._prepare(
            self._method, request, self._serializer, metadata, time_limit, "unary_stream"
        )
        serialize = handler.response_serializer
        try:
            async with asyncio.timeout(time_limit):
                async for answer in handler.unary_stream(decoded, context):
                    wire = serialize(answer) if serialize is not None else answer
                    await messages.put(self._deserializer(wire) if self._deserializer is not None else wire)
        except grpc.aio.AbortError:
            raise _refusal(context) from None
        except TimeoutError:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED, _metadata(()), _metadata(()), "Deadline Exceeded"
            ) from None
        except Exception as error:  # noqa: BLE001
            raise _unexpected(error) from None
        if context.code() != grpc.StatusCode.OK:
            raise _refusal(context)


class _StreamCall(_CallBase, grpc.aio.UnaryStreamCall):
    def __init__(self, task: asyncio.Task[None], messages: asyncio.Queue[Any]) -> None:
        self._task = task
        self._messages = messages
        self._cancelled_here = False

    async def read(self) -> Any:
        while True:
            # Messages the server sent before its status are read first, as over a socket.
            if not self._messages.empty():
                return self._messages.get_nowait()
            if self._task.done():
                self._raise_status()
                return grpc.aio.EOF
            getter = asyncio.ensure_future(self._messages.get())
            try:
                await asyncio.wait((getter, self._task), return_when=asyncio.FIRST_COMPLETED)
            finally:
                got = getter.done() and not getter.cancelled()
                if not got:
                    getter.cancel()
            if got:
                return getter.result()

    def cancel(self) -> bool:
        self._cancelled_here = True
        return self._task.cancel()

    def _raise_status(self) -> None:
        if self._task.cancelled():
            if self._cancelled_here:
                raise asyncio.CancelledError  # what grpc.aio's read raises after the reader's own cancel()
            # The server stopping (LocalHandlers.stop), as a client over a socket sees it.
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.CANCELLED, _metadata(()), _metadata(()), "Cancelled on the server side"
            )
        error = self._task.exception()
        if error is not None:
            raise error

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            while True:
                message = await self.read()
                if message is grpc.aio.EOF:
                    return
                yield message
        finally:
            # A reader that stops reading ends the call, as dropping a call over a socket cancels it.
            self.cancel()
