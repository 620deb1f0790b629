"""Builds clients/explorer/contract/: the contract's .proto files plus all they import, and the proto comments as JSON.

Usage: python -m clients.explorer.bundle [--check]   (`make proto` runs it; a test fails when it is stale)

Why a generated copy: the explorer must run where neither proto/ nor protoc
exist (an installed wheel, the container), yet it documents every field from
the .proto comments and offers the whole contract as one download. protoc
(from grpcio-tools, a development dependency) reads the comments here, once.
health.proto and reflection.proto ship in no Python package as source, so
they are printed from the descriptors the grpcio packages carry.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
OUT_DIR = Path(__file__).resolve().parent / "contract"
DOCS_FILE = "docs.json"
PROJECT_PACKAGE = "registry.v1"
# What a client needs beyond the imports: the rich error details every refusal carries.
EXTRA_ROOTS = ("google/rpc/status.proto", "google/rpc/error_details.proto")

_LABELS = {descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED: "repeated "}
_SCALARS = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in descriptor_pb2.FieldDescriptorProto.Type.items()
    if name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}


def _include_dirs() -> list[Path]:
    import google.type.date_pb2 as date_pb2

    well_known = Path(str(resources.files("grpc_tools") / "_proto"))
    googleapis = Path(date_pb2.__file__).resolve().parent.parent.parent
    return [PROTO_DIR, well_known, googleapis]


def _descriptor_set(tmp: Path) -> descriptor_pb2.FileDescriptorSet:
    from grpc_tools import protoc

    out = tmp / "set.binpb"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    args = ["grpc_tools.protoc", *(f"-I{d}" for d in _include_dirs())]
    args += ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}", *protos, *EXTRA_ROOTS]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _comment(location: descriptor_pb2.SourceCodeInfo.Location) -> str:
    text = location.leading_comments or location.trailing_comments
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(lines).strip()


def _docs(file: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    """Comments by full name (message, field, enum, enum value, service, method), from source info paths."""
    names: dict[tuple[int, ...], str] = {}
    package = file.package

    def walk_message(message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], prefix: str) -> None:
        full = f"{prefix}.{message.name}"
        names[path] = full
        for i, item in enumerate(message.field):
            names[(*path, 2, i)] = f"{full}.{item.name}"
        for i, nested in enumerate(message.nested_type):
            walk_message(nested, (*path, 3, i), full)
        for i, enum in enumerate(message.enum_type):
            walk_enum(enum, (*path, 4, i), full)

    def walk_enum(enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], prefix: str) -> None:
        full = f"{prefix}.{enum.name}"
        names[path] = full
        for i, value in enumerate(enum.value):
            names[(*path, 2, i)] = f"{prefix}.{value.name}"

    for i, message in enumerate(file.message_type):
        walk_message(message, (4, i), package)
    for i, enum in enumerate(file.enum_type):
        walk_enum(enum, (5, i), package)
    for i, service in enumerate(file.service):
        names[(6, i)] = f"{package}.{service.name}"
        for j, method in enumerate(service.method):
            names[(6, i, 2, j)] = f"{package}.{service.name}.{method.name}"
    docs: dict[str, str] = {}
    for location in file.source_code_info.location:
        name = names.get(tuple(location.path))
        text = _comment(location)
        if name and text:
            docs[name] = text
    return docs


def _type_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return field.type_name if field.type_name else _SCALARS[field.type]


def render_proto(file: descriptor_pb2.FileDescriptorProto) -> str:
    """Prints a proto3 file from its descriptor (without comments): enough for health and reflection."""
    out = [f"// {file.name}: printed from the descriptor the grpcio Python package ships.", 'syntax = "proto3";', ""]
    out.append(f"package {file.package};")
    out += [f'import "{dep}";' for dep in file.dependency]
    for option, value in file.options.ListFields():
        literal = f'"{value}"' if isinstance(value, str) else str(value).lower()
        out.append(f"option {option.name} = {literal};")

    def enum(item: descriptor_pb2.EnumDescriptorProto, indent: str) -> None:
        out.append(f"{indent}enum {item.name} {{")
        out.extend(f"{indent}  {v.name} = {v.number};" for v in item.value)
        out.append(f"{indent}}}")

    def message(item: descriptor_pb2.DescriptorProto, indent: str) -> None:
        out.append(f"{indent}message {item.name} {{")
        maps = {n.name: n for n in item.nested_type if n.options.map_entry}
        for nested in item.nested_type:
            if not nested.options.map_entry:
                message(nested, indent + "  ")
        for nested_enum in item.enum_type:
            enum(nested_enum, indent + "  ")
        oneofs: dict[int, list[descriptor_pb2.FieldDescriptorProto]] = {}
        for field in item.field:
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(field)
                continue
            entry = maps.get(field.type_name.rsplit(".", 1)[-1]) if field.type_name else None
            if entry is not None:
                key, value = entry.field
                out.append(f"{indent}  map<{_type_name(key)}, {_type_name(value)}> {field.name} = {field.number};")
            else:
                label = "optional " if field.proto3_optional else _LABELS.get(field.label, "")
                out.append(f"{indent}  {label}{_type_name(field)} {field.name} = {field.number};")
        for index, members in oneofs.items():
            out.append(f"{indent}  oneof {item.oneof_decl[index].name} {{")
            out.extend(f"{indent}    {_type_name(f)} {f.name} = {f.number};" for f in members)
            out.append(f"{indent}  }}")
        out.append(f"{indent}}}")

    for item in file.message_type:
        out.append("")
        message(item, "")
    for item_enum in file.enum_type:
        out.append("")
        enum(item_enum, "")
    for service in file.service:
        out.append("")
        out.append(f"service {service.name} {{")
        for method in service.method:
            request = f"{'stream ' if method.client_streaming else ''}{method.input_type}"
            response = f"{'stream ' if method.server_streaming else ''}{method.output_type}"
            out.append(f"  rpc {method.name}({request}) returns ({response});")
        out.append("}")
    return "\n".join(out) + "\n"


def _grpc_files() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """health and reflection (v1alpha and v1) under the paths other languages import them by."""
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    from services.common import reflection_v1

    health = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(health)
    health.name = "grpc/health/v1/health.proto"
    alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(alpha)
    alpha.name = "grpc/reflection/v1alpha/reflection.proto"
    return {f.name: f for f in (health, alpha, reflection_v1.file_descriptor_proto())}


def generate(out_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = _descriptor_set(Path(tmp)).file
    includes = _include_dirs()
    docs: dict[str, str] = {}
    for file in files:
        source = next(d / file.name for d in includes if (d / file.name).is_file())
        target = out_dir / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        if file.package == PROJECT_PACKAGE:
            docs.update(_docs(file))
    for name, proto in _grpc_files().items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_proto(proto))
    (out_dir / DOCS_FILE).write_text(json.dumps(dict(sorted(docs.items())), indent=1, ensure_ascii=False) + "\n")


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def is_stale() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh, current = _tree(Path(tmp)), _tree(OUT_DIR)
        if fresh.keys() != current.keys():
            return True
        return any(not filecmp.cmp(fresh[k], current[k], shallow=False) for k in fresh)


def main() -> None:
    if "--check" in sys.argv:
        if is_stale():
            print("clients/explorer/contract/ is stale: run `make proto` and commit the result", file=sys.stderr)
            raise SystemExit(1)
        print("clients/explorer/contract/ is up to date")
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        shutil.copytree(Path(tmp), OUT_DIR)
    print(f"generated {OUT_DIR.relative_to(ROOT)}/ from proto/")


if __name__ == "__main__":
    main()
