"""The one code table: well-formed, and every code a covered module emits is in it (so a vendor can look it up)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from services.common import codes

ROOT = Path(__file__).resolve().parents[2]
# Modules whose codes must all be in the table. The issue-13 work adds services/rio once RIO's own codes
# (A01xxx and the rest) are in codes.toml.
COVERED = ("services/rod", "services/common", "services/sandbox", "services/brp_sync")
# A string that looks like a code: SBX- codes, RIO's families (A01060, AUT401, INT500), and the older
# SCREAMING_SNAKE style (INVALID_PAGE), which must not creep back in.
CODE_LIKE = re.compile(r"^(SBX-[A-Z0-9-]+|[A-Z]\d{5}|[A-Z]{3}\d{3}|[A-Z]{2,}(?:_[A-Z0-9]+)+)$")
# SCREAMING_SNAKE strings in covered modules that are not codes: environment variable names.
NOT_CODES = re.compile(r"^REGISTRY_[A-Z0-9_]+$")
# Calls that emit a code, and which argument (position, keyword) carries it.
EMITTERS = {
    "FieldViolation": (2, "code"),
    "add": (2, "code"),
    "RegistryError": (2, "reason"),
    "not_found": (2, "reason"),
    "Signal": (0, "code"),
    "known": (0, "code"),
    "RuleViolationError": (0, "code"),
    "RefusedDocumentError": (0, "code"),
    "reject": (2, "code"),
}


def _modules() -> list[Path]:
    found: list[Path] = []
    for entry in COVERED:
        path = ROOT / entry
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [p for p in found if "migrations" not in p.parts]


def _emitted(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, code) of every string literal that looks like a code, or is passed where a code goes."""
    emitted: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and CODE_LIKE.match(node.value)
            and not NOT_CODES.match(node.value)
        ):
            emitted.append((node.lineno, node.value))
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in EMITTERS:
            continue
        position, keyword = EMITTERS[name]
        arguments = [*node.args[position : position + 1], *(k.value for k in node.keywords if k.arg == keyword)]
        for argument in arguments:
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str) and argument.value:
                emitted.append((argument.lineno, argument.value))
    return emitted


def test_every_code_a_covered_module_emits_is_in_the_table() -> None:
    table = codes.table()
    missing = [
        f"{path.relative_to(ROOT)}:{line}: {code}"
        for path in _modules()
        for line, code in _emitted(ast.parse(path.read_text(encoding="utf-8")))
        if code not in table
    ]
    assert not missing, "codes missing from services/common/codes.toml:\n" + "\n".join(missing)


def test_the_scan_finds_a_code_the_table_lacks() -> None:
    """The guard above can fail: a made-up code in an emitting call is found."""
    tree = ast.parse(
        'FieldViolation("x", "y", "Made up")\nRegistryError(c, "m", "SBX-NOT-IN-TABLE")\nUNKNOWN = "UNKNOWN_THING"\n'
        'RuleViolationError("Odd", "text")\nself.reject(1, "id", "odd", "text", raw)'
    )
    assert {code for _, code in _emitted(tree)} == {"Made up", "SBX-NOT-IN-TABLE", "UNKNOWN_THING", "Odd", "odd"}


def test_every_entry_is_complete_and_sourced() -> None:
    table = codes.table()
    assert {"V", "D", "JK", "A01060", "AUT401", "INT500"} <= set(table)
    for entry in table.values():
        assert all((entry.nl, entry.en, entry.action, entry.source)), entry.code
        # DUO's own codes cite a public source; the sandbox's own say so.
        assert entry.source.startswith("SBX") == entry.sandbox_own, entry.code


ENTRY = '[[code]]\ncode = "{code}"\nregister = "ROD"\nkind = "{kind}"\nnl = "a"\nen = "b"\naction = "c"\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (ENTRY.format(code="X1", kind="notice"), "source"),
        (ENTRY.format(code="SBX-A", kind="odd") + 'source = "SBX"\n', "kind"),
        (ENTRY.format(code="B12345", kind="notice") + 'source = "SBX"\n', "looks like DUO"),
    ],
)
def test_a_malformed_table_is_refused(text: str, problem: str) -> None:
    with pytest.raises(codes.CodeTableError, match=problem):
        codes.parse(text)


def test_the_table_fits_one_list_page() -> None:
    """ListCodes is not paged; rod.proto promises the table stays below the 500-item List maximum."""
    assert len(codes.table()) < 500


def test_known_refuses_a_code_the_table_lacks() -> None:
    assert codes.known("JK") == "JK"
    with pytest.raises(KeyError):
        codes.known("SBX-NOT-IN-TABLE")
