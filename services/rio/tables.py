"""Tables of the rio service (prefix rio_); no other service reads them."""

from __future__ import annotations

from common.idempotency import IdempotentResponseBase


class RioIdempotentResponse(IdempotentResponseBase, table=True):
    __tablename__ = "rio_idempotent_response"
