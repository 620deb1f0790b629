"""Server reflection as grpc.reflection.v1 beside v1alpha (grpcio-reflection ships only v1alpha; the messages match)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
FILE_NAME = "grpc/reflection/v1/reflection.proto"
_ALPHA_PACKAGE = "grpc.reflection.v1alpha"
_PACKAGE = "grpc.reflection.v1"


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto: the v1alpha file with the package renamed (the v1 file is exactly that)."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = FILE_NAME
    proto.package = _PACKAGE
    proto.options.ClearField("deprecated")
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    for message in proto.message_type:
        for item in message.field:
            if item.type_name:  # assigning "" to a scalar's type_name would mark it set
                item.type_name = item.type_name.replace(f".{_ALPHA_PACKAGE}.", f".{_PACKAGE}.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{_ALPHA_PACKAGE}.", f".{_PACKAGE}.")
            method.output_type = method.output_type.replace(f".{_ALPHA_PACKAGE}.", f".{_PACKAGE}.")
    return proto


def _register_descriptor() -> None:
    # Reflection answers "which file defines grpc.reflection.v1.ServerReflection?" from the default pool.
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(FILE_NAME)
    except KeyError:
        pool.Add(file_descriptor_proto())


def enable_server_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serves reflection under both names, listing both (v1 is what current grpcurl and Postman ask first)."""
    _register_descriptor()
    names = [*service_names, reflection.SERVICE_NAME, SERVICE_NAME]
    servicer = reflection.aio.ReflectionServicer(names)
    reflection.enable_server_reflection(names, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, {"ServerReflectionInfo": handler}),)
    )
