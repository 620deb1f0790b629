"""Tables of the brp_sync service (prefix brp_sync_); no other service reads them."""

from __future__ import annotations

from common.idempotency import IdempotentResponseBase


class BrpIdempotentResponse(IdempotentResponseBase, table=True):
    __tablename__ = "brp_sync_idempotent_response"
