"""Lints the contract in proto/ with buf (STANDARD rules, with the exceptions in proto/buf.yaml).

Usage: python scripts/lint_proto.py
buf cannot fetch google/type/date.proto here (no network to its registry), so
the imports come from the installed googleapis-common-protos package: both are
laid out in a scratch workspace and buf lints only our module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import google.type.date_pb2 as date_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GOOGLEAPIS = Path(date_pb2.__file__).resolve().parent.parent.parent


def main() -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if buf is None:
        raise SystemExit("buf is missing: `make` installs it (the buf-bin package)")
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        shutil.copytree(PROTO_DIR, workspace / "proto")
        vendor = workspace / "vendor" / "google" / "type"
        vendor.mkdir(parents=True)
        shutil.copy(GOOGLEAPIS / "google" / "type" / "date.proto", vendor / "date.proto")
        config = (PROTO_DIR / "buf.yaml").read_text()
        (workspace / "buf.yaml").write_text(config)
        result = subprocess.run(
            [buf, "lint", *sys.argv[1:]], cwd=workspace, capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
        raise SystemExit("buf lint found problems in proto/ (see above)")
    print("proto/ passes buf lint")


if __name__ == "__main__":
    main()
