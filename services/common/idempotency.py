"""Replays the stored answer when a mutating call repeats its client-chosen idempotency key."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Protocol, TypeVar

import grpc
from google.protobuf.message import Message
from sqlmodel import Field, Session, SQLModel

from services.common.errors import FieldViolation, RegistryError

ResponseT = TypeVar("ResponseT", bound=Message)


class SerializableRequest(Protocol):
    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


class IdempotentRequest(SerializableRequest, Protocol):
    """Any request message with an idempotency_key field (every mutating request of the contract)."""

    idempotency_key: str


class IdempotentResponseBase(SQLModel):
    """Columns of a service's `<service>_idempotent_response` table (each service subclasses it as a table)."""

    sandbox_id: str = Field(primary_key=True, max_length=64)
    method: str = Field(primary_key=True, max_length=100)
    idempotency_key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    response: bytes
    created_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))


def _hash(request: SerializableRequest) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def replay(
    session: Session,
    table: type[IdempotentResponseBase],
    *,
    sandbox_id: str,
    method: str,
    request: SerializableRequest,
    key: str,
) -> bytes | None:
    """The stored answer for this key, or None when the key is new.

    The same key with a different request is refused: it is a client bug that
    would otherwise silently return an answer to another question.
    """
    if not key:
        return None
    stored = session.get(table, (sandbox_id, method, key))
    if stored is None:
        return None
    if stored.request_hash != _hash(request):
        raise RegistryError(
            grpc.StatusCode.ALREADY_EXISTS,
            "idempotency_key was already used for a different request",
            "SBX-IDEMPOTENCY-KEY-REUSED",
            (FieldViolation("idempotency_key", "already used for a different request", "SBX-IDEMPOTENCY-KEY-REUSED"),),
        )
    return stored.response


def remember(
    session: Session,
    table: type[IdempotentResponseBase],
    *,
    sandbox_id: str,
    method: str,
    request: SerializableRequest,
    key: str,
    response: Message,
) -> None:
    """Stores the answer in the caller's transaction, so it exists exactly when the change does."""
    if not key:
        return
    session.add(
        table(
            sandbox_id=sandbox_id,
            method=method,
            idempotency_key=key,
            request_hash=_hash(request),
            response=response.SerializeToString(),
        )
    )


def once(
    session: Session,
    table: type[IdempotentResponseBase],
    *,
    sandbox_id: str,
    method: str,
    request: IdempotentRequest,
    response_type: type[ResponseT],
    respond: Callable[[], ResponseT],
) -> ResponseT:
    """The stored answer to request.idempotency_key, or respond()'s answer, stored in this transaction."""
    key = request.idempotency_key
    stored = replay(session, table, sandbox_id=sandbox_id, method=method, request=request, key=key)
    if stored is not None:
        return response_type.FromString(stored)
    response = respond()
    remember(session, table, sandbox_id=sandbox_id, method=method, request=request, key=key, response=response)
    return response
