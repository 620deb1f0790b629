"""The one paging rule of every List call: page size limits and an opaque, checked page token."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from services._gen.registry.v1 import common_pb2
from services.common.codes import known
from services.common.errors import FieldViolation, invalid_argument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
# RIO's own changes feed answers at most 500 items a page; every List call here keeps to that.
MAX_PAGE_SIZE = 500
# A token is ours only: a prefix we check, the last key of the previous page, base64url.
_TOKEN_PREFIX = "p1:"
MAX_TOKEN_LENGTH = 400
INVALID_PAGE = known("SBX-INVALID-PAGE")
# Log cursors (change logs, feedback outbox) are 32-bit on PostgreSQL; no larger one can ever exist.
MAX_CURSOR = 2**31 - 1
INVALID_CURSOR = known("SBX-INVALID-CURSOR")


def cursor_violation(value: int, field: str) -> FieldViolation | None:
    """Why a resume cursor is impossible (negative, or beyond any cursor a log can hand out), or None."""
    if not 0 <= value <= MAX_CURSOR:
        return FieldViolation(field, f"must be 0 to {MAX_CURSOR}", INVALID_CURSOR)
    return None


@dataclass(frozen=True)
class Page:
    """A decoded page request: at most `size` items after the key `after` ("" for the first page)."""

    size: int
    after: str

    @property
    def after_int(self) -> int:
        return int(self.after) if self.after else 0


def page_of(request: common_pb2.PageRequest, field: str = "page", *, numeric: bool = False) -> Page:
    """Decodes and checks a PageRequest; refuses (INVALID_ARGUMENT) a size out of range or a foreign token."""
    violations: list[FieldViolation] = []
    size = request.page_size or DEFAULT_PAGE_SIZE
    if not 0 < size <= MAX_PAGE_SIZE:
        violations.append(FieldViolation(f"{field}.page_size", f"must be 1 to {MAX_PAGE_SIZE}", INVALID_PAGE))
    after = ""
    if request.page_token:
        after_or_none = _decode(request.page_token)
        if after_or_none is None or (numeric and not (after_or_none.isdigit() and len(after_or_none) <= 18)):
            violations.append(FieldViolation(f"{field}.page_token", "not a token this method gave out", INVALID_PAGE))
        else:
            after = after_or_none
    if violations:
        raise invalid_argument(violations)
    return Page(size, after)


def token_after(key: str | int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{key}".encode()).decode().rstrip("=")


def _decode(token: str) -> str | None:
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not raw.startswith(_TOKEN_PREFIX) or "\x00" in raw:
        return None
    return raw[len(_TOKEN_PREFIX) :]


def cut(rows: Sequence[T], page: Page, key: Callable[[T], str | int]) -> tuple[list[T], common_pb2.PageResponse]:
    """Rows read with limit page.size + 1, cut to the page, with the next page's token (empty on the last page)."""
    items = list(rows[: page.size])
    more = len(rows) > page.size
    token = token_after(key(items[-1])) if more and items else ""
    return items, common_pb2.PageResponse(next_page_token=token)
