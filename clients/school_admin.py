"""A school's administration package in miniature: registers enrolments in ROD and follows the feedback pushed to it.

    python -m clients.school_admin run --school 25BE --generate 100 --inbox inbox.jsonl
    python -m clients.school_admin register --school 25BE --csv enrolments.csv
    python -m clients.school_admin follow --school 25BE --inbox inbox.jsonl

Feedback is processed exactly once across restarts: each one is appended to
the inbox file (JSON lines, flushed to disk) before the cursor moves on, and a
restarted client resumes after the last cursor in its inbox. The cursor is also
acknowledged to ROD (AcknowledgeFeedback), so another package could resume there.
Uses only the public gRPC API.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, rio_pb2, rio_pb2_grpc, rod_pb2, rod_pb2_grpc
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.dates import from_proto_date, to_proto_date
from services.common.errors import read_details

app = typer.Typer(help="A school's administration package: register enrolments, follow ROD's feedback.")
console = Console(soft_wrap=True, highlight=False)

# What `--generate` sends for the fields a sector requires (mbo: BOL voltijd; ho: voltijd), as CSV values.
_GENERATED_FIELDS = {
    common_pb2.SECTOR_MBO: {"leerweg": "BOL", "intensity": "VT"},
    common_pb2.SECTOR_HO: {"study_mode": "VOLTIJD"},
}
# CSV values of the sector fields and their contract enums.
_LEERWEG = {"BOL": rod_pb2.MBO_LEERWEG_BOL, "BBL": rod_pb2.MBO_LEERWEG_BBL}
_INTENSITY = {"VT": rod_pb2.MBO_INTENSITY_VOLTIJD, "DT": rod_pb2.MBO_INTENSITY_DEELTIJD}
_STUDY_MODE = {
    "VOLTIJD": rod_pb2.HO_STUDY_MODE_VOLTIJD,
    "DEELTIJD": rod_pb2.HO_STUDY_MODE_DEELTIJD,
    "DUAAL": rod_pb2.HO_STUDY_MODE_DUAAL,
}

# Ages (on the start date) of the pupils `--generate` picks, per sector: ROD's funded ages (services/rod/README.md).
_GENERATED_AGES = {
    common_pb2.SECTOR_PO: (4, 12),
    common_pb2.SECTOR_VO: (12, 17),
    common_pb2.SECTOR_MBO: (16, 22),
    common_pb2.SECTOR_HO: (17, 25),
}

Address = Annotated[str, typer.Option(envvar="SCHOOL_ADMIN_ADDRESS", help="The sandbox's gRPC address.")]
SandboxKey = Annotated[str, typer.Option(envvar="SCHOOL_ADMIN_SANDBOX_KEY", help="The sandbox key (x-sandbox-key).")]
School = Annotated[str, typer.Option(envvar="SCHOOL_ADMIN_SCHOOL", help="The school's BRIN code, for example 25BE.")]
CsvPath = Annotated[
    Path | None,
    typer.Option(
        "--csv",
        help="CSV with bsn,location_code,course_code,begin_date[,end_date]; mbo adds leerweg (BOL/BBL) and"
        " intensity (VT/DT), ho study_mode (VOLTIJD/DEELTIJD/DUAAL).",
    ),
]
Count = Annotated[int, typer.Option("--generate", help="Without --csv: how many enrolments to generate.")]
Skip = Annotated[int, typer.Option(help="Without --csv: skip this many fitting persons first.")]
Begin = Annotated[str, typer.Option(help="Without --csv: start date (ISO) of generated enrolments.")]
RunId = Annotated[str, typer.Option(help="Idempotency key prefix: the same run id never registers twice.")]
Inbox = Annotated[Path, typer.Option(help="Where processed feedback is kept (JSON lines).")]
Subscriber = Annotated[str, typer.Option(help="Subscriber name for acknowledgements.")]
DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_INBOX = Path("feedback-inbox.jsonl")


@dataclass(frozen=True)
class Connection:
    channel: grpc.Channel
    sandbox_key: str
    school: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((SANDBOX_KEY, self.sandbox_key), (INSTITUTION_CODE, self.school))

    @property
    def rod(self) -> rod_pb2_grpc.RodServiceStub:
        return rod_pb2_grpc.RodServiceStub(self.channel)


@dataclass(frozen=True)
class EnrolmentLine:
    """One enrolment to register: CSV columns bsn, location_code, course_code, begin_date[, end_date].

    Mbo adds leerweg (BOL, BBL) and intensity (VT, DT); ho adds study_mode (VOLTIJD, DEELTIJD, DUAAL).
    """

    bsn: str
    location_code: str
    course_code: str
    begin_date: dt.date
    end_date: dt.date | None = None
    leerweg: str = ""
    intensity: str = ""
    study_mode: str = ""


def read_csv(path: Path) -> list[EnrolmentLine]:
    with path.open(newline="") as handle:
        return [
            EnrolmentLine(
                row["bsn"].strip(),
                row["location_code"].strip(),
                row["course_code"].strip(),
                dt.date.fromisoformat(row["begin_date"].strip()),
                dt.date.fromisoformat(row["end_date"].strip()) if (row.get("end_date") or "").strip() else None,
                (row.get("leerweg") or "").strip().upper(),
                (row.get("intensity") or "").strip().upper(),
                (row.get("study_mode") or "").strip().upper(),
            )
            for row in csv.DictReader(handle)
        ]


def _pages(fetch: object) -> Iterator[object]:
    token = ""
    while True:
        assert callable(fetch)
        answer = fetch(common_pb2.PageRequest(page_size=500, page_token=token))
        yield answer
        token = answer.page.next_page_token
        if not token:
            return


def generate(connection: Connection, count: int, begin: dt.date, skip: int = 0) -> list[EnrolmentLine]:
    """`count` enrolments at the school's first offering, for persons of a fitting age from the sandbox's BRP."""
    metadata = ((SANDBOX_KEY, connection.sandbox_key),)
    rio = rio_pb2_grpc.RioServiceStub(connection.channel)
    providers = rio.ListProviders(
        rio_pb2.ListProvidersRequest(institution_code=connection.school, reference_date=to_proto_date(begin)),
        metadata=metadata,
    ).providers
    if not providers:
        raise typer.BadParameter(f"RIO knows no school {connection.school} on {begin}")
    provider = providers[0]
    offerings = rio.ListCourseOfferings(
        rio_pb2.ListCourseOfferingsRequest(provider_code=provider.provider_code, reference_date=to_proto_date(begin)),
        metadata=metadata,
    ).offerings
    if not offerings:
        raise typer.BadParameter(f"school {connection.school} offers no course on {begin}")
    offering = offerings[0]
    youngest, oldest = _GENERATED_AGES.get(provider.sector, (5, 25))
    fields = _GENERATED_FIELDS.get(provider.sector, {})
    brp = brp_pb2_grpc.BrpServiceStub(connection.channel)
    lines: list[EnrolmentLine] = []
    for answer in _pages(
        lambda page: brp.ListPersons(
            brp_pb2.ListPersonsRequest(
                born_on_or_after=to_proto_date(begin.replace(year=begin.year - oldest - 1)),
                born_on_or_before=to_proto_date(begin.replace(year=begin.year - youngest)),
                only_resident=True,
                page=page,
            ),
            metadata=metadata,
        )
    ):
        for person in answer.persons:  # type: ignore[attr-defined]
            lines.append(
                EnrolmentLine(
                    person.bsn,
                    offering.location_code,
                    offering.course_code,
                    begin,
                    leerweg=fields.get("leerweg", ""),
                    intensity=fields.get("intensity", ""),
                    study_mode=fields.get("study_mode", ""),
                )
            )
        if len(lines) >= count + skip:
            break
    return lines[skip : skip + count]


def register_all(connection: Connection, lines: list[EnrolmentLine], run_id: str) -> tuple[int, int]:
    """Registers each line under an idempotency key derived from run_id, so a rerun registers nothing twice."""
    accepted = refused = 0
    for index, line in enumerate(lines):
        key = f"{run_id}-{index}"
        request = rod_pb2.RegisterEnrolmentRequest(
            idempotency_key=key,
            document_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"school-admin:{connection.school}:{key}")),
            pupil=rod_pb2.PupilId(bsn=line.bsn),
            institution_code=connection.school,
            periods=[
                rod_pb2.EnrolmentPeriod(
                    begin_date=to_proto_date(line.begin_date),
                    end_date=to_proto_date(line.end_date),
                    location_code=line.location_code,
                    course_code=line.course_code,
                )
            ],
            sequence=1,
            # An unknown CSV value goes out as 0 (unset), which ROD refuses for the sector that needs it.
            mbo_leerweg=_LEERWEG.get(line.leerweg, 0),  # type: ignore[arg-type]
            mbo_intensity=_INTENSITY.get(line.intensity, 0),  # type: ignore[arg-type]
            ho_study_mode=_STUDY_MODE.get(line.study_mode, 0),  # type: ignore[arg-type]
        )
        try:
            answer = connection.rod.RegisterEnrolment(request, metadata=connection.metadata)
        except grpc.RpcError as error:
            refused += 1
            reason, violations = read_details(error)
            fields = ", ".join(f"{v.field}: {v.description}" for v in violations)
            console.print(f"[red]refused[/] {line.bsn}: {reason or error.code().name} {fields}")
            continue
        accepted += 1
        console.print(
            f"[green]registered[/] {line.bsn} -> {answer.enrolment.enrolment_id} (feedback {answer.feedback_cursor})"
        )
    return accepted, refused


# --- the inbox: processed feedback, durable before the cursor moves ---


def last_cursor(inbox: Path) -> int:
    """The cursor of the last feedback in the inbox (0 when empty). A torn last line (a kill mid-write) is ignored."""
    if not inbox.exists():
        return 0
    cursor = 0
    with inbox.open() as handle:
        for line in handle:
            try:
                cursor = int(json.loads(line)["cursor"])
            except (ValueError, KeyError):
                continue
    return cursor


def _repair(inbox: Path) -> None:
    """Drops a torn last line, so the next append starts on a fresh line."""
    if not inbox.exists():
        return
    data = inbox.read_bytes()
    if data and not data.endswith(b"\n"):
        inbox.write_bytes(data[: data.rfind(b"\n") + 1])


def feedback_record(feedback: rod_pb2.Feedback) -> dict[str, object]:
    record = MessageToDict(feedback, preserving_proto_field_name=True)
    record["cursor"] = feedback.cursor
    return record


def show(feedback: rod_pb2.Feedback) -> None:
    trigger = rod_pb2.FeedbackTrigger.Name(feedback.trigger).removeprefix("FEEDBACK_TRIGGER_").lower()
    pupil = feedback.pupil.bsn or feedback.pupil.onderwijsnummer
    parts = []
    for decision in feedback.funding:
        count_date = from_proto_date(decision.count_date)
        status = "D" if decision.status == rod_pb2.FUNDING_STATUS_FINAL else "V"
        colour = "green" if decision.funded else "red"
        parts.append(f"[{colour}]{count_date} {'funded' if decision.funded else 'not funded'} ({status})[/]")
        if not decision.funded:
            parts.append(",".join(decision.reason_codes))
    if feedback.outcome == rod_pb2.FEEDBACK_OUTCOME_REJECTED:
        refusals = "; ".join(f"{s.code} {s.parameters.get('field', '')}: {s.text}" for s in feedback.signals)
        console.print(
            f"#{feedback.cursor} [red]rejected[/] document {feedback.document_id} pupil {pupil or '-'}"
            f" enrolment {feedback.enrolment_id[:8] or '-'} {refusals}"
        )
        return
    signals = " ".join(f"[yellow]{s.code}[/]" for s in feedback.signals)
    console.print(
        f"#{feedback.cursor} {trigger} pupil {pupil} enrolment {feedback.enrolment_id[:8]} {' '.join(parts)} {signals}"
    )


def follow_feedback(connection: Connection, inbox: Path, subscriber: str, stop_after: int = 0) -> int:
    """Streams the school's feedback after the inbox's last cursor, processing each exactly once; returns how many."""
    _repair(inbox)
    after = last_cursor(inbox)
    console.print(f"[bold]following feedback for {connection.school} after cursor {after}[/]")
    processed = 0
    call = connection.rod.StreamFeedback(
        rod_pb2.StreamFeedbackRequest(after_cursor=after), metadata=connection.metadata
    )
    with inbox.open("a") as handle:
        for feedback in call:
            handle.write(json.dumps(feedback_record(feedback), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            show(feedback)
            connection.rod.AcknowledgeFeedback(
                rod_pb2.AcknowledgeFeedbackRequest(subscriber=subscriber, cursor=feedback.cursor),
                metadata=connection.metadata,
            )
            processed += 1
            if stop_after and processed >= stop_after:
                call.cancel()
                break
    return processed


def _connect(address: str, sandbox_key: str, school: str) -> Connection:
    return Connection(grpc.insecure_channel(address), sandbox_key, school)


def _lines(connection: Connection, csv_path: Path | None, count: int, begin: str, skip: int) -> list[EnrolmentLine]:
    if csv_path is not None:
        return read_csv(csv_path)
    return generate(connection, count, dt.date.fromisoformat(begin), skip)


@app.command()
def register(
    sandbox_key: SandboxKey,
    school: School,
    address: Address = DEFAULT_ADDRESS,
    csv_path: CsvPath = None,
    count: Count = 10,
    skip: Skip = 0,
    begin: Begin = "2026-08-15",
    run_id: RunId = "",
) -> None:
    """Register enrolments for the school, from a CSV file or generated from the sandbox's persons and offerings."""
    connection = _connect(address, sandbox_key, school)
    lines = _lines(connection, csv_path, count, begin, skip)
    accepted, refused = register_all(connection, lines, run_id or f"{school}-{uuid.uuid4().hex[:8]}")
    console.print(f"[bold]{accepted} registered, {refused} refused[/]")


@app.command()
def follow(
    sandbox_key: SandboxKey,
    school: School,
    address: Address = DEFAULT_ADDRESS,
    inbox: Inbox = DEFAULT_INBOX,
    subscriber: Subscriber = "school-admin",
    stop_after: Annotated[int, typer.Option(help="Stop after this many feedbacks (0: follow for ever).")] = 0,
) -> None:
    """Follow the school's feedback, printing each as it arrives; a restart resumes after the last one processed."""
    follow_feedback(_connect(address, sandbox_key, school), inbox, subscriber, stop_after)


@app.command()
def run(
    sandbox_key: SandboxKey,
    school: School,
    address: Address = DEFAULT_ADDRESS,
    csv_path: CsvPath = None,
    count: Count = 0,
    skip: Skip = 0,
    begin: Begin = "2026-08-15",
    run_id: RunId = "run",
    inbox: Inbox = DEFAULT_INBOX,
    subscriber: Subscriber = "school-admin",
) -> None:
    """Register (idempotently) and then follow the school's feedback until stopped."""
    connection = _connect(address, sandbox_key, school)
    if csv_path is not None or count:
        lines = _lines(connection, csv_path, count, begin, skip)
        accepted, refused = register_all(connection, lines, run_id)
        console.print(f"[bold]{accepted} registered, {refused} refused[/]")
    follow_feedback(connection, inbox, subscriber)


if __name__ == "__main__":
    app()
