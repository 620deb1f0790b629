"""The explorer's copy of the contract (.proto files and their comments) matches proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_explorer_contract_bundle_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clients.explorer.bundle", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_method_is_documented_from_the_proto_comments() -> None:
    from clients.explorer import contract

    assert contract.doc("registry.v1.RodService.RegisterEnrolment").startswith("Registers an enrolment")
    assert "UUID" in contract.doc("registry.v1.RegisterEnrolmentRequest.document_id")
    assert contract.doc("registry.v1.SEX_MALE") == "M"
