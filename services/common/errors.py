"""Typed gRPC errors with google.rpc rich details (BadRequest field violations, ErrorInfo reason codes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.codes import known

ERROR_DOMAIN = "registry.sandbox"
# The real register lists at most 99 errors in one answer.
MAX_VIOLATIONS = 99


@dataclass(frozen=True)
class FieldViolation:
    """One thing wrong with a request: which field, the register's error code and a text."""

    field: str
    description: str
    code: str = ""
    # The key values the violation is about, as the register names them (("onderwijslocatiecode", "100X001"), ...):
    # they reach the caller in ErrorInfo.metadata, not only as a field path.
    keys: tuple[tuple[str, str], ...] = ()


@dataclass
class RegistryError(Exception):
    """An error a caller should see as a typed gRPC status.

    Business rules raise these; servicers turn them into a status with
    `abort`. `reason` is the register's error code (A01060, AUT401, ...).
    """

    code: grpc.StatusCode
    message: str
    reason: str = ""
    violations: Sequence[FieldViolation] = field(default_factory=tuple)
    metadata: dict[str, str] = field(default_factory=dict)
    # Further google.rpc details, e.g. RetryInfo for a rate limit.
    extra_details: Sequence[Message] = field(default_factory=tuple)

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> grpc.Status:
        details: list[any_pb2.Any] = []
        if self.reason:
            info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)
            details.append(_pack(info))
        if self.violations:
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description, reason=v.code)
                    for v in list(self.violations)[:MAX_VIOLATIONS]
                ]
            )
            details.append(_pack(bad_request))
        details.extend(_pack(extra) for extra in self.extra_details)
        status = status_pb2.Status(code=_CODE_NUMBER[self.code], message=self.message, details=details)
        return rpc_status.to_status(status)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_CODE_NUMBER = {code: code.value[0] for code in grpc.StatusCode}


def key_metadata(violations: Iterable[FieldViolation]) -> dict[str, str]:
    """The violations' key values for ErrorInfo.metadata; a key with several values lists them, comma-separated."""
    values: dict[str, list[str]] = {}
    for violation in violations:
        for key, value in violation.keys:
            seen = values.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    return {key: ",".join(found) for key, found in values.items()}


def _refusal(code: grpc.StatusCode, violations: Iterable[FieldViolation], message: str, reason: str) -> RegistryError:
    items = tuple(violations)
    text = message or "; ".join(f"{v.field}: {v.description}" for v in items[:3])
    return RegistryError(code, text, reason or (items[0].code if items else ""), items, key_metadata(items))


def invalid_argument(violations: Iterable[FieldViolation], message: str = "", reason: str = "") -> RegistryError:
    return _refusal(grpc.StatusCode.INVALID_ARGUMENT, violations, message, reason)


def failed_precondition(violations: Iterable[FieldViolation], message: str = "", reason: str = "") -> RegistryError:
    return _refusal(grpc.StatusCode.FAILED_PRECONDITION, violations, message, reason)


# The reason of a lookup by code or id that finds nothing, where the register has no more precise code.
NOT_FOUND = known("SBX-NOT-FOUND")


def not_found(what: str, field_name: str, reason: str = NOT_FOUND) -> RegistryError:
    return RegistryError(
        grpc.StatusCode.NOT_FOUND,
        f"{what} not found",
        reason,
        (FieldViolation(field_name, f"{what} not found", reason),),
    )


def permission_denied(message: str) -> RegistryError:
    return RegistryError(grpc.StatusCode.PERMISSION_DENIED, message, "AUT401")


def unauthenticated(message: str) -> RegistryError:
    return RegistryError(grpc.StatusCode.UNAUTHENTICATED, message, "AUT401")


def read_metadata(error: grpc.RpcError) -> dict[str, str]:
    """Client side: the ErrorInfo metadata (the key values a refusal is about) of a failed call."""
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return dict(info.metadata)
    return {}


def read_details(error: grpc.RpcError) -> tuple[str, list[error_details_pb2.BadRequest.FieldViolation]]:
    """Client side: the ErrorInfo reason and the field violations of a failed call."""
    status = rpc_status.from_call(error)
    reason = ""
    violations: list[error_details_pb2.BadRequest.FieldViolation] = []
    if status is None:
        return reason, violations
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(bad.field_violations)
    return reason, violations
