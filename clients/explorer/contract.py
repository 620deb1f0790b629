"""The contract as the explorer sees it: every service and method from the descriptors, with the proto comments."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, MethodDescriptor

# The generated modules register the contract's descriptors in the default pool.
from services._gen.registry.v1 import brp_pb2, rio_pb2, rod_pb2, sandbox_pb2

CONTRACT_DIR = Path(__file__).resolve().parent / "contract"
PACKAGE = "registry.v1"
# The order a newcomer meets them in: make a sandbox, look up schools, persons, then enrol.
SERVICES = (
    sandbox_pb2.DESCRIPTOR.services_by_name["SandboxAdmin"],
    rio_pb2.DESCRIPTOR.services_by_name["RioService"],
    brp_pb2.DESCRIPTOR.services_by_name["BrpService"],
    rod_pb2.DESCRIPTOR.services_by_name["RodService"],
)
# A resumable stream: the request names where to start, every item names where it is.
RESUME_REQUEST_FIELD = "after_cursor"
RESUME_ITEM_FIELD = "cursor"


@cache
def docs() -> dict[str, str]:
    """Proto comments by full name (see clients/explorer/bundle.py)."""
    loaded: dict[str, str] = json.loads((CONTRACT_DIR / "docs.json").read_text())
    return loaded


def doc(full_name: str) -> str:
    return docs().get(full_name, "")


@dataclass(frozen=True)
class Method:
    """One RPC of the contract, with what the gateway and the page need to know about it."""

    descriptor: MethodDescriptor

    @property
    def service(self) -> str:
        return self.descriptor.containing_service.full_name

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def full_name(self) -> str:
        """registry.v1.RodService/RegisterEnrolment: the gateway path and the grpcurl name."""
        return f"{self.service}/{self.name}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.full_name}"

    @property
    def http_path(self) -> str:
        return f"/v1/{self.full_name}"

    @property
    def streaming(self) -> bool:
        return bool(self.descriptor.server_streaming)

    @property
    def input(self) -> Descriptor:
        return self.descriptor.input_type

    @property
    def output(self) -> Descriptor:
        return self.descriptor.output_type

    @property
    def doc(self) -> str:
        return doc(self.descriptor.full_name)

    @property
    def internal(self) -> bool:
        """Service-to-service only: documented as "Internal", or taking a request type an internal method takes."""
        return self.doc.startswith("Internal") or self.input.full_name in _internal_request_types()

    @property
    def resumable(self) -> bool:
        request = self.input.fields_by_name.get(RESUME_REQUEST_FIELD)
        item = self.output.fields_by_name.get(RESUME_ITEM_FIELD)
        return self.streaming and request is not None and item is not None

    def request_class(self) -> Any:
        return message_factory.GetMessageClass(self.input)

    def response_class(self) -> Any:
        return message_factory.GetMessageClass(self.output)


@cache
def methods() -> tuple[Method, ...]:
    return tuple(Method(m) for service in SERVICES for m in service.methods)


@cache
def _internal_request_types() -> frozenset[str]:
    return frozenset(
        m.input_type.full_name for s in SERVICES for m in s.methods if doc(m.full_name).startswith("Internal")
    )


@cache
def by_path() -> dict[str, Method]:
    """Methods by "registry.v1.Service/Method"."""
    return {m.full_name: m for m in methods()}


def _type_label(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            return f"map<{_type_label(key)}, {_type_label(value)}>"
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return _SCALAR_NAMES.get(field.type, "?")


_SCALAR_NAMES = {
    getattr(FieldDescriptor, name): name.removeprefix("TYPE_").lower()
    for name in dir(FieldDescriptor)
    if name.startswith("TYPE_") and name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated and not (field.message_type is not None and field.message_type.GetOptions().map_entry)


def describe_message(message: Descriptor) -> dict[str, Any]:
    fields = []
    for field in message.fields:
        oneof = field.containing_oneof
        fields.append(
            {
                "name": field.name,
                "type": _type_label(field),
                "repeated": _is_repeated(field),
                "oneof": oneof.name if oneof is not None else "",
                "doc": doc(f"{message.full_name}.{field.name}"),
            }
        )
    return {"name": message.full_name, "doc": doc(message.full_name), "fields": fields}


def describe_enum(enum: EnumDescriptor) -> dict[str, Any]:
    return {
        "name": enum.full_name,
        "doc": doc(enum.full_name),
        "values": [{"name": v.name, "doc": doc(f"{enum.full_name.rsplit('.', 1)[0]}.{v.name}")} for v in enum.values],
    }


def _reachable(root: Descriptor, messages: dict[str, Descriptor], enums: dict[str, EnumDescriptor]) -> None:
    if root.full_name in messages:
        return
    messages[root.full_name] = root
    for field in root.fields:
        if field.message_type is not None:
            _reachable(field.message_type, messages, enums)
        if field.enum_type is not None:
            enums[field.enum_type.full_name] = field.enum_type


def reachable_types() -> tuple[dict[str, Descriptor], dict[str, EnumDescriptor]]:
    """Every message and enum a request or response of the contract uses, by full name."""
    messages: dict[str, Descriptor] = {}
    enums: dict[str, EnumDescriptor] = {}
    for method in methods():
        _reachable(method.input, messages, enums)
        _reachable(method.output, messages, enums)
    return messages, enums


@cache
def describe() -> dict[str, Any]:
    """The page's view of the contract: services, methods and every type they use, with the proto comments."""
    messages, enums = reachable_types()
    return {
        "services": [
            {
                "name": service.full_name,
                "file": service.file.name,
                "doc": doc(service.full_name),
                "methods": [
                    {
                        "name": m.name,
                        "path": m.full_name,
                        "doc": m.doc,
                        "input": m.input.full_name,
                        "output": m.output.full_name,
                        "streaming": m.streaming,
                        "resumable": m.resumable,
                        "internal": m.internal,
                    }
                    for m in methods()
                    if m.service == service.full_name
                ],
            }
            for service in SERVICES
        ],
        "messages": {name: describe_message(d) for name, d in sorted(messages.items())},
        "enums": {name: describe_enum(d) for name, d in sorted(enums.items())},
    }


def descriptor_set() -> bytes:
    """A FileDescriptorSet of the contract and every file it imports (for `grpcurl -protoset`, buf, protoc)."""
    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file: Any) -> None:
        if file.name in seen:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        seen[file.name] = proto

    for service in SERVICES:
        add(service.file)
    return descriptor_pb2.FileDescriptorSet(file=list(seen.values())).SerializeToString()


def contract_zip() -> bytes:
    """The whole contract as one download: every .proto file under its import path, and a descriptor set."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(CONTRACT_DIR.rglob("*.proto")):
            archive.write(path, f"proto/{path.relative_to(CONTRACT_DIR)}")
        archive.writestr("registry.protoset", descriptor_set())
        archive.writestr("README.txt", _ZIP_README)
    return buffer.getvalue()


_ZIP_README = """The registry sandbox contract: registry/v1/*.proto and every file they import.

proto/registry/v1/   the contract (services SandboxAdmin, RioService, BrpService, RodService)
proto/google/...     google.type.Date, google.protobuf.Timestamp, google.rpc.Status and its details
proto/grpc/...       health and server reflection (v1 and v1alpha)
registry.protoset    a FileDescriptorSet of the same (grpcurl -protoset registry.protoset ...)

Generate stubs with protoc -I proto ... (see the project README for Node and Go).
"""
