"""Generates the Python code for the contract in proto/ into services/_gen/ (the one private generated package).

Usage: python scripts/gen_proto.py [--check]
With --check nothing is written; the exit code is 1 when services/_gen/ is stale.

protoc names Python modules after the .proto paths (`registry.v1`), a top-level
name that would collide in anyone's environment; the generated imports are
rewritten to live under `services._gen` instead (what protoletariat does).
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PARENT = Path("services") / "_gen"
PROTO_PACKAGE = "registry"
GEN_PREFIX = "services._gen."
_IMPORT = re.compile(rf"^(from|import) {PROTO_PACKAGE}\.", re.MULTILINE)


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
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    package = out_dir / PROTO_PACKAGE
    for module in [*package.rglob("*.py"), *package.rglob("*.pyi")]:
        module.write_text(_IMPORT.sub(rf"\1 {GEN_PREFIX}{PROTO_PACKAGE}.", module.read_text()))
    doc = '"""Generated from proto/ by scripts/gen_proto.py; do not edit."""\n'
    for package_dir in {p.parent for p in package.rglob("*.py")} | {package}:
        (package_dir / "__init__.py").write_text(doc)
    (out_dir / "__init__.py").write_text(doc)
    (package / "py.typed").write_text("")


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def is_stale() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh, current = _tree(Path(tmp)), _tree(ROOT / OUT_PARENT)
        if fresh.keys() != current.keys():
            return True
        return any(not filecmp.cmp(fresh[k], current[k], shallow=False) for k in fresh)


def main() -> None:
    if "--check" in sys.argv:
        if is_stale():
            print(f"{OUT_PARENT}/ is stale: run `make proto` and commit the result", file=sys.stderr)
            raise SystemExit(1)
        print(f"{OUT_PARENT}/ is up to date")
        return
    target = ROOT / OUT_PARENT
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(tmp), target)
    print(f"generated {target.relative_to(ROOT)}/ from proto/")


if __name__ == "__main__":
    main()
