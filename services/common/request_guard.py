"""Refuses text no register can store, in any field of any request, before a handler or database sees it."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.common.codes import known
from services.common.errors import FieldViolation, invalid_argument

# PostgreSQL cannot store NUL in text, and no register field means anything with it.
NUL = "\x00"
# No text field of the contract is longer; bytes fields (XML documents) have their own limits.
MAX_TEXT_LENGTH = 10_000
HOSTILE_TEXT = known("SBX-INVALID-TEXT")


def refuse_hostile_text(message: Message) -> None:
    """Raises INVALID_ARGUMENT naming every text field (nested, repeated) with NUL or over MAX_TEXT_LENGTH."""
    violations: list[FieldViolation] = []
    _walk(message, "", violations)
    if violations:
        raise invalid_argument(violations, "text fields must not contain NUL characters or be overlong")


def _walk(message: Message, prefix: str, violations: list[FieldViolation]) -> None:
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            for index, text in enumerate(value if field.is_repeated else [value]):
                where = f"{path}[{index}]" if field.is_repeated else path
                _check(text, where, violations)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    _check(str(key), f"{path}.key", violations)
                    if isinstance(item, str):
                        _check(item, f"{path}[{key!r}]", violations)
                    elif isinstance(item, Message):
                        _walk(item, f"{path}[{key!r}].", violations)
            elif field.is_repeated:
                for index, item in enumerate(value):
                    _walk(item, f"{path}[{index}].", violations)
            else:
                _walk(value, f"{path}.", violations)


def _check(text: str, where: str, violations: list[FieldViolation]) -> None:
    if NUL in text:
        violations.append(FieldViolation(where, "must not contain NUL characters", HOSTILE_TEXT))
    elif len(text) > MAX_TEXT_LENGTH:
        violations.append(FieldViolation(where, f"at most {MAX_TEXT_LENGTH} characters", HOSTILE_TEXT))
