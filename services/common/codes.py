"""The one code table (codes.toml): every signal, funding status, refusal and error code a vendor can receive.

Registers name their codes as constants made with `known(...)`, so a code
missing from the table fails at import, and tests/unit/test_code_table.py
fails when a covered module emits a literal the table lacks.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

KINDS = ("funding_status", "funding_signal", "notice", "refusal", "schema", "access", "system", "end_reason")
REGISTERS = ("ROD", "RIO", "BRP", "SANDBOX", "ALL")
# The prefix of a code that is the sandbox's own choice, not DUO's.
SANDBOX_PREFIX = "SBX-"


@dataclass(frozen=True)
class CodeEntry:
    """One code: its register and kind, its Dutch and English text, what to do about it, and its source."""

    code: str
    register: str
    kind: str
    nl: str
    en: str
    action: str
    source: str

    @property
    def sandbox_own(self) -> bool:
        return self.code.startswith(SANDBOX_PREFIX)


class CodeTableError(ValueError):
    """The code table file is malformed: a missing field, an unknown kind, a duplicate or an unsourced DUO code."""


def parse(text: str) -> dict[str, CodeEntry]:
    """The table from the TOML text, checked: every field present, kinds and registers known, no duplicates,
    and a code without the SBX- prefix must cite a source that is not the sandbox's own."""
    table: dict[str, CodeEntry] = {}
    for raw in tomllib.loads(text).get("code", []):
        try:
            entry = CodeEntry(**{name: str(raw[name]) for name in CodeEntry.__dataclass_fields__})
        except KeyError as missing:
            raise CodeTableError(f"code {raw.get('code', '?')}: field {missing} is missing") from missing
        if entry.kind not in KINDS:
            raise CodeTableError(f"code {entry.code}: unknown kind {entry.kind!r}")
        if entry.register not in REGISTERS:
            raise CodeTableError(f"code {entry.code}: unknown register {entry.register!r}")
        if entry.code in table:
            raise CodeTableError(f"code {entry.code} appears twice")
        if not entry.sandbox_own and entry.source.startswith("SBX"):
            raise CodeTableError(f"code {entry.code} looks like DUO's but its source is the sandbox's own")
        if entry.sandbox_own and not entry.source.startswith("SBX"):
            raise CodeTableError(f"code {entry.code}: an SBX- code's source starts with 'SBX:'")
        table[entry.code] = entry
    return table


@cache
def table() -> Mapping[str, CodeEntry]:
    """The table shipped with the package (services/common/codes.toml)."""
    return parse(resources.files("services.common").joinpath("codes.toml").read_text(encoding="utf-8"))


def known(code: str) -> str:
    """`code` itself, after checking that the table has it (a register's code constants are made with this)."""
    if code not in table():
        raise KeyError(f"code {code!r} is not in services/common/codes.toml; add it there first")
    return code


def describe(code: str) -> CodeEntry | None:
    return table().get(code)
