"""The JSON gateway: POST /v1/{package.Service}/{Method} for every RPC, made from the descriptors; streams as SSE."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from clients.explorer import contract
from clients.explorer.contract import Method
from clients.explorer.grpc_client import GrpcTargets, call_unary, metadata_from, open_stream, status_of, to_json

# gRPC code -> HTTP status, as Google's API design guide maps them (cloud.google.com/apis/design/errors).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_CODES = {code.value[0]: code for code in grpc.StatusCode}
LAST_EVENT_ID = "last-event-id"
# A comment line now and then keeps proxies from closing an idle stream and shows a dead client quickly.
KEEPALIVE_SECONDS = 15.0
# How long a new stream may take to fail at once (no key, wrong school) and still get a proper HTTP status.
EARLY_FAILURE_SECONDS = 0.25


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


def _detail_json(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        decoded: dict[str, Any] = json_format.MessageToDict(detail, preserving_proto_field_name=True)
        return decoded
    except (json_format.Error, TypeError, KeyError):
        # A detail type this explorer does not know: still shown, undecoded.
        return {"@type": detail.type_url, "value": base64.b64encode(detail.value).decode()}


def error_body(status: status_pb2.Status) -> dict[str, Any]:
    """Google's JSON error shape: {"error": {code (HTTP), status (gRPC name), message, details: [...]}}."""
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    return {
        "error": {
            "code": http_status(code),
            "status": code.name,
            "message": status.message,
            "details": [_detail_json(d) for d in status.details],
        }
    }


def error_response(status: status_pb2.Status) -> JSONResponse:
    body = error_body(status)
    return JSONResponse(body, status_code=body["error"]["code"])


def bad_request(field: str, description: str, reason: str = "GATEWAY_BAD_REQUEST") -> status_pb2.Status:
    """The gateway's own refusal, shaped like the registers' (BadRequest + ErrorInfo)."""
    details = [any_pb2.Any(), any_pb2.Any()]
    details[0].Pack(error_details_pb2.ErrorInfo(reason=reason, domain="registry.sandbox.explorer"))
    details[1].Pack(
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=description)]
        )
    )
    return status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=description, details=details)


async def parse_request(method: Method, request: Request) -> Message:
    """The request body as the method's request message (proto3 JSON; an empty body is the empty message)."""
    raw = await request.body()
    message: Message = method.request_class()()
    if not raw.strip():
        return message
    try:
        json_format.Parse(raw.decode("utf-8"), message)
    except UnicodeDecodeError as error:
        raise GatewayError(bad_request("body", f"the body is not UTF-8: {error}")) from error
    except json_format.ParseError as error:
        raise GatewayError(bad_request("body", f"not a valid {method.input.full_name} in JSON: {error}")) from error
    return message


class GatewayError(Exception):
    """A request the gateway refuses before any gRPC call, carried as a google.rpc.Status."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


def sse_event(data: dict[str, Any], *, event: str = "message", event_id: str | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return "\n".join(lines) + "\n\n"


def _resume(method: Method, message: Message, last_event_id: str | None) -> None:
    """Last-Event-ID is the cursor of the last item the client got: start right after it."""
    if last_event_id is None or last_event_id.strip() == "":
        return
    if not method.resumable:
        raise GatewayError(bad_request(LAST_EVENT_ID, f"{method.full_name} cannot resume"))
    try:
        cursor = int(last_event_id)
    except ValueError as error:
        raise GatewayError(bad_request(LAST_EVENT_ID, "Last-Event-ID must be a cursor (an integer)")) from error
    setattr(message, contract.RESUME_REQUEST_FIELD, cursor)
    if "resume_from_acknowledged" in method.input.fields_by_name:
        # An explicit cursor from this client wins over the subscriber's acknowledgement.
        message.resume_from_acknowledged = False  # type: ignore[attr-defined]


_END = object()


async def _stream_response(method: Method, targets: GrpcTargets, message: Message, request: Request) -> Response:
    call = open_stream(targets, method, message, metadata_from(request.headers))
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def read() -> None:
        try:
            async for item in call:
                await queue.put(item)
            await queue.put(_END)
        except grpc.aio.AioRpcError as error:
            await queue.put(error)

    reader = asyncio.create_task(read())
    first: Any = None
    with contextlib.suppress(TimeoutError):
        first = await asyncio.wait_for(queue.get(), EARLY_FAILURE_SECONDS)
    if isinstance(first, grpc.aio.AioRpcError):
        return error_response(status_of(first))

    async def events() -> AsyncIterator[str]:
        # EventSource clients reconnect after a second, not the default three.
        yield "retry: 1000\n\n"
        pending = first
        try:
            while True:
                if pending is None:
                    try:
                        pending = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                item, pending = pending, None
                if item is _END:
                    return
                if isinstance(item, grpc.aio.AioRpcError):
                    yield sse_event(error_body(status_of(item)), event="error")
                    return
                cursor = getattr(item, contract.RESUME_ITEM_FIELD, None)
                yield sse_event(to_json(item), event_id=None if cursor is None else str(cursor))
        finally:
            # The browser went away (or the stream ended): stop the gRPC call with it.
            call.cancel()
            reader.cancel()

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def endpoint_for(method: Method, targets: Callable[[], GrpcTargets]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            message = await parse_request(method, request)
            if method.streaming:
                _resume(method, message, request.headers.get(LAST_EVENT_ID))
                return await _stream_response(method, targets(), message, request)
            answer = await call_unary(targets(), method, message, metadata_from(request.headers))
        except GatewayError as error:
            return error_response(error.status)
        except grpc.aio.AioRpcError as error:
            return error_response(status_of(error))
        return JSONResponse(to_json(answer))

    endpoint.__name__ = f"{method.service.rsplit('.', 1)[-1]}_{method.name}"
    return endpoint


def add_gateway_routes(app: FastAPI, targets: Callable[[], GrpcTargets]) -> None:
    """One POST route per RPC of the contract; the OpenAPI document describes them (see openapi.py)."""
    for method in contract.methods():
        app.add_api_route(method.http_path, endpoint_for(method, targets), methods=["POST"], include_in_schema=False)
