"""Who is calling: the sandbox named by the request metadata, and the board or school acting in it."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from services.common.errors import RegistryError, permission_denied, unauthenticated

# Metadata keys. gRPC metadata keys are lower-case.
SANDBOX_KEY = "x-sandbox-key"
BOARD_CODE = "x-board-code"
INSTITUTION_CODE = "x-institution-code"
INTERNAL_TOKEN = "x-internal-token"
SANDBOX_ID = "x-sandbox-id"


@dataclass(frozen=True)
class Caller:
    """The identity of one call.

    sandbox_id is None only for an internal caller that asked for all
    sandboxes at once (a service following another's change stream).
    board_code / institution_code are None when the caller acts as the
    sandbox admin.
    """

    sandbox_id: str | None
    board_code: str | None = None
    institution_code: str | None = None
    internal: bool = False

    @property
    def is_sandbox_admin(self) -> bool:
        return self.board_code is None and self.institution_code is None

    def require_sandbox(self) -> str:
        if self.sandbox_id is None:
            raise unauthenticated(f"this call needs a sandbox: send the {SANDBOX_KEY} metadata header")
        return self.sandbox_id

    def require_internal(self) -> None:
        """Refuses (PERMISSION_DENIED) a vendor: the method is for the registers themselves (seed, purge)."""
        if not self.internal:
            raise permission_denied(
                "this method is internal to the registers; use SandboxAdmin (SeedSandbox, ResetSandbox) instead"
            )

    def require_board(self, owner_board_code: str) -> None:
        """Refuse (AUT401) unless the caller is the admin or acts for the owning board."""
        if self.board_code is not None and self.board_code != owner_board_code:
            raise permission_denied(f"board {self.board_code} may not change records of board {owner_board_code}")

    def require_institution(self, institution_code: str) -> None:
        if self.institution_code is not None and self.institution_code != institution_code:
            raise permission_denied(f"school {self.institution_code} may not act for school {institution_code}")


def internal_metadata(token: str, sandbox_id: str | None) -> tuple[tuple[str, str], ...]:
    """Metadata a service sends when it calls another service for a sandbox (or all, when None)."""
    pairs = [(INTERNAL_TOKEN, token)]
    if sandbox_id is not None:
        pairs.append((SANDBOX_ID, sandbox_id))
    return tuple(pairs)


# Resolves a sandbox key to a sandbox id, or None when the key is unknown.
KeyLookup = Callable[[str], Awaitable[str | None]]


class CallerResolver:
    """Reads the caller from a call's metadata. One per service; the key lookup is injected.

    In the sandbox admin service the lookup reads its own table; in the other
    services it asks the sandbox admin over gRPC (see services.common.sandbox_client).
    """

    def __init__(self, lookup: KeyLookup, internal_token: str) -> None:
        self._lookup = lookup
        self._internal_token = internal_token

    async def resolve(self, context: grpc.aio.ServicerContext, *, all_sandboxes_ok: bool = False) -> Caller:
        metadata = metadata_of(context)
        board = metadata.get(BOARD_CODE) or None
        institution = metadata.get(INSTITUTION_CODE) or None
        token = metadata.get(INTERNAL_TOKEN)
        if token is not None:
            if not hmac.compare_digest(token.encode(), self._internal_token.encode()):
                raise unauthenticated("internal token is wrong")
            sandbox_id = metadata.get(SANDBOX_ID) or None
            if sandbox_id is None and not all_sandboxes_ok:
                raise unauthenticated(f"internal call without {SANDBOX_ID}")
            return Caller(sandbox_id, board, institution, internal=True)
        key = metadata.get(SANDBOX_KEY)
        if not key:
            raise unauthenticated(
                f"missing {SANDBOX_KEY} metadata: create a sandbox with SandboxAdmin.CreateSandbox and send its key"
            )
        sandbox_id = await self._lookup(key)
        if sandbox_id is None:
            raise unauthenticated(f"unknown {SANDBOX_KEY}")
        return Caller(sandbox_id, board, institution)


def metadata_of(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """A call's text metadata by lower-case key (binary `-bin` values left out)."""
    result: dict[str, str] = {}
    for item in context.invocation_metadata() or ():
        key, value = item[0], item[1]
        if isinstance(value, str):
            result[key.lower()] = value
    return result


async def abort_with(context: grpc.aio.ServicerContext, error: RegistryError) -> None:
    """Ends the call with the error's rich status."""
    await context.abort_with_status(error.to_status())
