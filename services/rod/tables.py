"""Tables of the rod service (prefix rod_); no other service reads them."""

from __future__ import annotations

from common.idempotency import IdempotentResponseBase


class RodIdempotentResponse(IdempotentResponseBase, table=True):
    __tablename__ = "rod_idempotent_response"
