"""OpenAPI 3.1 for the JSON gateway, generated from the descriptors, every field described by its proto comment."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from clients.explorer import contract
from clients.explorer.gateway import HTTP_STATUS
from services.common.caller import BOARD_CODE, INSTITUTION_CODE, SANDBOX_KEY

OPENAPI_VERSION = "3.1.0"
_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UINT64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}

# Well-known types have their own JSON forms in the proto3 mapping.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 timestamp in UTC, for example 2027-02-01T08:00:00Z.",
    },
    "google.protobuf.Duration": {"type": "string", "description": "Seconds with an 's' suffix, for example 1.5s."},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
        "description": "Any message, named by its @type.",
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _scalar(field: FieldDescriptor) -> dict[str, Any]:
    kind = field.type
    if kind in _INT32:
        return {"type": "integer", "format": "int32"}
    if kind in _UINT32:
        return {"type": "integer", "format": "int32", "minimum": 0}
    if kind in _INT64 | _UINT64:
        # proto3 JSON prints 64-bit integers as strings (JavaScript numbers lose precision) and reads either.
        return {"type": ["string", "integer"], "format": "int64", "pattern": "^-?[0-9]+$"}
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"type": "number"}
    if kind == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if kind == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}


def _value_schema(field: FieldDescriptor) -> dict[str, Any]:
    if field.message_type is not None:
        return _ref(field.message_type.full_name)
    if field.enum_type is not None:
        return _ref(field.enum_type.full_name)
    return _scalar(field)


def _field_schema(message: Descriptor, field: FieldDescriptor) -> dict[str, Any]:
    description = contract.doc(f"{message.full_name}.{field.name}")
    if field.containing_oneof is not None:
        others = [f.name for f in field.containing_oneof.fields if f.name != field.name]
        note = f"One of `{field.containing_oneof.name}`: set at most one of {field.name}, {', '.join(others)}."
        description = f"{description}\n\n{note}".strip()
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": _value_schema(entry.fields_by_name["value"]),
        }
    elif field.is_repeated:
        schema = {"type": "array", "items": _value_schema(field)}
    else:
        schema = _value_schema(field)
    if description:
        # A $ref with siblings is valid in 3.1 (JSON Schema 2020-12), so descriptions sit beside references.
        schema = {**schema, "description": description}
    return schema


def message_schema(message: Descriptor) -> dict[str, Any]:
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: _field_schema(message, f) for f in message.fields},
        "additionalProperties": False,
    }
    description = contract.doc(message.full_name)
    if description:
        schema["description"] = description
    return schema


def enum_schema(enum: EnumDescriptor) -> dict[str, Any]:
    scope = enum.full_name.rsplit(".", 1)[0]
    lines = [f"- `{v.name}`: {contract.doc(f'{scope}.{v.name}')}".rstrip(": ") for v in enum.values]
    description = "\n".join(filter(None, [contract.doc(enum.full_name), "\n".join(lines)]))
    return {"type": "string", "enum": [v.name for v in enum.values], "description": description}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A gRPC status in Google's JSON error shape, with the google.rpc details decoded.",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer", "description": "The HTTP status."},
                    "status": {"type": "string", "description": "The gRPC status code name, e.g. INVALID_ARGUMENT."},
                    "message": {"type": "string"},
                    "details": {
                        "type": "array",
                        "description": "google.rpc.BadRequest (field_violations: field, description, reason) and "
                        "google.rpc.ErrorInfo (reason: the register's code such as A01060 or AUT401).",
                        "items": _ref("google.protobuf.Any"),
                    },
                },
                "required": ["code", "status", "message", "details"],
            }
        },
        "required": ["error"],
    }


_ERROR_RESPONSES = sorted({status for status in HTTP_STATUS.values() if status != 200})


def _operation(method: contract.Method) -> dict[str, Any]:
    service = method.service.rsplit(".", 1)[-1]
    description = method.doc or f"{method.name} of {service}."
    if method.internal:
        description += "\n\nInternal: only the registers call this; a vendor's call is refused."
    if method.streaming:
        description += (
            "\n\nServer-streaming: the answer is `text/event-stream` (Server-Sent Events). Each event's `data` is "
            f"one {method.output.full_name} in JSON"
        )
        if method.resumable:
            description += (
                f" and its `id` is the item's `{contract.RESUME_ITEM_FIELD}`. Reconnect with the header "
                f"`Last-Event-ID: <cursor>` to resume right after it (it overrides `{contract.RESUME_REQUEST_FIELD}`)"
            )
        description += ". A failure after the stream started arrives as an `error` event."
        success: dict[str, Any] = {
            "description": f"A stream of {method.output.full_name}",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "itemSchema": _ref(method.output.full_name)}
            },
        }
    else:
        success = {
            "description": method.output.full_name,
            "content": {"application/json": {"schema": _ref(method.output.full_name)}},
        }
    responses: dict[str, Any] = {"200": success}
    for status in _ERROR_RESPONSES:
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    operation: dict[str, Any] = {
        "operationId": f"{service}_{method.name}",
        "tags": [service],
        "summary": f"{service}.{method.name}",
        "description": description,
        "parameters": [
            {"$ref": "#/components/parameters/BoardCode"},
            {"$ref": "#/components/parameters/InstitutionCode"},
        ],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _ref(method.input.full_name)}},
        },
        "responses": responses,
    }
    if method.resumable:
        operation["parameters"].append({"$ref": "#/components/parameters/LastEventId"})
    if method.full_name == "registry.v1.SandboxAdmin/CreateSandbox":
        operation["security"] = [{}]
    return operation


def _strip_item_schema(operation: dict[str, Any]) -> None:
    # itemSchema is OpenAPI 3.2; in a 3.1 document it moves into an x- extension the validator allows.
    content = operation["responses"]["200"]["content"]
    if "text/event-stream" in content:
        content["text/event-stream"]["x-item-schema"] = content["text/event-stream"].pop("itemSchema")


def build_openapi(title: str = "Registry sandbox JSON gateway", version: str = "v1") -> dict[str, Any]:
    messages, enums = contract.reachable_types()
    messages = dict(messages)
    from google.protobuf import any_pb2

    messages.setdefault("google.protobuf.Any", any_pb2.Any.DESCRIPTOR)
    paths: dict[str, Any] = {}
    for method in contract.methods():
        operation = _operation(method)
        _strip_item_schema(operation)
        paths[method.http_path] = {"post": operation}
    schemas: dict[str, Any] = {name: message_schema(d) for name, d in sorted(messages.items())}
    schemas.update({name: enum_schema(d) for name, d in sorted(enums.items())})
    schemas["Error"] = _error_schema()
    header = "Metadata header passed to the gRPC call unchanged."
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Every RPC of the registry sandbox's gRPC contract (proto/registry/v1) as "
            "`POST /v1/{package.Service}/{Method}` with the proto3 JSON mapping (field names as in the .proto "
            "files). gRPC statuses map to HTTP statuses as Google's API design guide maps them; the error body "
            "carries the google.rpc details. The whole contract as .proto files: GET /contract.zip.",
        },
        "tags": [{"name": s.name, "description": contract.doc(s.full_name)} for s in contract.SERVICES],
        "security": [{"SandboxKey": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "SandboxKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SANDBOX_KEY,
                    "description": "The sandbox key from SandboxAdmin.CreateSandbox (or printed by `sandbox up`).",
                }
            },
            "parameters": {
                "BoardCode": {
                    "name": BOARD_CODE,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{3}B[0-9]{3}$"},
                    "description": f"RIO: the board acting, e.g. 100B001; without it the sandbox admin. {header}",
                },
                "InstitutionCode": {
                    "name": INSTITUTION_CODE,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{2}[A-Z]{2}$"},
                    "description": f"ROD: the school acting (BRIN, e.g. 25BE); without it the sandbox admin. {header}",
                },
                "LastEventId": {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    "description": "Resume a stream right after this cursor (the id of the last event received).",
                },
            },
            "responses": {
                str(f"Error{status}"): {
                    "description": f"HTTP {status}: a gRPC error status",
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for status in _ERROR_RESPONSES
            },
        },
    }
