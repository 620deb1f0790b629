"""Generates the Python code for the contract in proto/ into registry/ (the one generated package).

Usage: python scripts/gen_proto.py [--check]
With --check nothing is written; the exit code is 1 when registry/ is stale.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = "registry"


def _include_dirs() -> list[str]:
    well_known = resources.files("grpc_tools") / "_proto"
    # google/type/date.proto and google/rpc/*.proto ship with googleapis-common-protos.
    import google.type.date_pb2 as date_pb2

    googleapis = Path(date_pb2.__file__).resolve().parent.parent.parent
    return [str(PROTO_DIR), str(well_known), str(googleapis)]


def generate(out_dir: Path) -> None:
    # protoc finds the mypy plugins on PATH; they live beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    args = ["grpc_tools.protoc"]
    args += [f"-I{d}" for d in _include_dirs()]
    args += [
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package_dir in {p.parent for p in (out_dir / OUT_PACKAGE).rglob("*.py")} | {out_dir / OUT_PACKAGE}:
        (package_dir / "__init__.py").write_text('"""Generated from proto/ by scripts/gen_proto.py; do not edit."""\n')
    (out_dir / OUT_PACKAGE / "py.typed").write_text("")


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def is_stale() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh, current = _tree(Path(tmp) / OUT_PACKAGE), _tree(ROOT / OUT_PACKAGE)
        if fresh.keys() != current.keys():
            return True
        return any(not filecmp.cmp(fresh[k], current[k], shallow=False) for k in fresh)


def main() -> None:
    if "--check" in sys.argv:
        if is_stale():
            print("registry/ is stale: run `make proto` and commit the result", file=sys.stderr)
            raise SystemExit(1)
        print("registry/ is up to date")
        return
    target = ROOT / OUT_PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(tmp) / OUT_PACKAGE, target)
    print(f"generated {target.relative_to(ROOT)}/ from proto/")


if __name__ == "__main__":
    main()
