"""`sandbox replay record|run`: the load replayer's command line."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from clients.replay.record import RecordOptions, record
from clients.replay.report import Slo, live_table, parse_slo, result_json, write_html, write_json
from clients.replay.runner import Progress, RunOptions, RunResult, replay
from clients.replay.traffic import Day, read_day

app = typer.Typer(help="Replay a day of register traffic at N times real speed and measure it end to end.")
console = Console(soft_wrap=True, highlight=False)

Address = Annotated[str, typer.Option(envvar="REGISTRY_REPLAY_ADDRESS", help="The sandbox's gRPC address.")]
DEFAULT_ADDRESS = "127.0.0.1:50051"


@app.command("record")
def record_command(
    date: Annotated[str, typer.Option(help="The day to record, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option(help="Where to write the day (JSON lines).")],
    address: Address = DEFAULT_ADDRESS,
    seed: Annotated[int, typer.Option(help="Seed of the day's traffic: the same seed gives the same file.")] = 1,
    schools: Annotated[int, typer.Option(min=1, help="How many schools send enrolment traffic.")] = 50,
    pupils_per_school: Annotated[int, typer.Option(min=0, help="Enrolments each school has before the day.")] = 15,
    brp_messages: Annotated[int, typer.Option(min=0, help="BRP change messages in the day.")] = 10_000,
    seed_size: Annotated[str, typer.Option(help="Seed size of the fresh sandbox: small, medium, full.")] = "medium",
    register_seed: Annotated[int, typer.Option(help="Seed of the fresh sandbox's registers.")] = 20260101,
    sandbox_key: Annotated[
        str, typer.Option(help="Read this sandbox instead of a fresh one (its clock must be on --date).")
    ] = "",
    synthetic_bsns: Annotated[
        bool,
        typer.Option(
            help="WARNING: BSNs a real person may hold. Seed the size's full number of persons (medium 14,940) and "
            "give births synthetic BSNs beyond the official test range; without it at most 1,200 persons."
        ),
    ] = False,
) -> None:
    """Record a day: BRP's change feed plus the enrolment traffic of --schools schools, each with its time."""
    try:
        day_date = dt.date.fromisoformat(date)
    except ValueError:
        raise typer.BadParameter(f"{date!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
    options = RecordOptions(
        address=address,
        date=day_date,
        out=out,
        seed=seed,
        schools=schools,
        pupils_per_school=pupils_per_school,
        brp_messages=brp_messages,
        seed_size=seed_size,
        register_seed=register_seed,
        sandbox_key=sandbox_key,
        synthetic_bsns=synthetic_bsns,
    )
    try:
        day = asyncio.run(record(options))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    except grpc.aio.AioRpcError as error:
        console.print(f"[red]the sandbox at {address} answered {error.code().name}: {error.details()}[/]")
        raise typer.Exit(2) from None
    counts = ", ".join(f"{k} {v}" for k, v in day.header.counts.items())
    console.print(f"wrote {len(day.messages)} messages for {day_date} to {out} ({counts})")


@app.command("run")
def run_command(
    day_file: Annotated[Path, typer.Argument(help="A day written by `sandbox replay record`.")],
    address: Address = DEFAULT_ADDRESS,
    speed: Annotated[float, typer.Option(help="Open model: play the day's own timing N times faster.")] = 100.0,
    rate: Annotated[
        float | None, typer.Option(help="Open model: a fixed arrival rate (messages/s) instead of --speed.")
    ] = None,
    max_throughput: Annotated[
        bool, typer.Option("--max", help="Closed model: as fast as --concurrency callers can go.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="With --max: callers in flight.")] = 8,
    duration: Annotated[float, typer.Option(min=0.1, help="Stop sending after this many seconds.")] = 900.0,
    settle: Annotated[float, typer.Option(min=0, help="Then wait at most this long for answers and feedback.")] = 30.0,
    slo: Annotated[
        list[str] | None, typer.Option(help='Threshold that fails the run, e.g. "feedback.p99<50ms", "errors<0.1%".')
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON result here.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    sandbox_key: Annotated[
        str, typer.Option(help="Replay into this sandbox instead of a fresh one (seeded as the day was recorded).")
    ] = "",
) -> None:
    """Play a recorded day back (the same traffic every time); exit 1 when a check or an SLO fails."""
    if speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    if rate is not None and rate <= 0:
        raise typer.BadParameter("must be positive", param_hint="--rate")
    if rate is not None and max_throughput:
        raise typer.BadParameter("--rate is an open-model rate; --max is the closed model: choose one")
    try:
        slos: list[Slo] = [parse_slo(text) for text in slo or []]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--slo") from None
    try:
        day = read_day(day_file)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="DAY_FILE") from None
    options = RunOptions(
        address=address,
        speed=speed,
        rate=rate,
        closed=max_throughput,
        concurrency=concurrency,
        duration=duration,
        settle=settle,
        sandbox_key=sandbox_key,
    )
    console.print(
        f"replaying {day.header.date}: {len(day.setup)} setup + {len(day.timed)} messages,"
        f" {len(day.header.schools)} schools listening; {options.mode}; at most {duration:g} s + {settle:g} s"
    )
    progress = Progress()
    try:
        result = asyncio.run(_run_with_display(day, options, progress))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    except grpc.aio.AioRpcError as error:
        console.print(f"[red]the sandbox at {address} answered {error.code().name}: {error.details()}[/]")
        raise typer.Exit(2) from None
    figures = result_json(result, slos)
    _print(figures)
    if json_out:
        write_json(figures, json_out)
        console.print(f"JSON result: {json_out}")
    if html_out:
        write_html(result, figures, html_out)
        console.print(f"HTML report: {html_out}")
    if not figures["passed"]:
        raise typer.Exit(1)


async def _run_with_display(day: Day, options: RunOptions, progress: Progress) -> RunResult:
    task = asyncio.create_task(replay(day, options, progress=progress))
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            while not task.done():
                live.update(live_table(progress))
                await asyncio.wait([task], timeout=0.25)
    else:
        # Not a terminal (CI logs): a line every 10 seconds instead of a redrawn table.
        while not task.done():
            await asyncio.wait([task], timeout=10)
            if not task.done():
                console.print(
                    f"{progress.phase}: sent {progress.sent}/{progress.planned}, answered {progress.answered},"
                    f" errors {progress.errors}, feedback {progress.feedback}"
                )
    return await task


def _print(figures: dict[str, Any]) -> None:
    table = Table(title="latency (ms), from the intended send time")
    for column in ("histogram", "count", "p50", "p90", "p99", "p99.9", "max"):
        table.add_column(column, justify="right")
    for name, summary in figures["latency_ms"].items():
        table.add_row(
            name, str(summary["count"]), *(f"{summary[k]:.1f}" for k in ("p50", "p90", "p99", "p99.9", "max"))
        )
    console.print(table)
    messages, throughput, errors = figures["messages"], figures["throughput"], figures["errors"]
    console.print(
        f"sent {messages['sent']}/{messages['planned']} in {figures['duration_s']:.1f} s;"
        f" offered {throughput['offered_per_s']}/s, sent {throughput['sent_per_s']}/s,"
        f" answered {throughput['achieved_per_s']}/s"
    )
    console.print(f"errors: {errors['count']} ({100 * errors['rate']:.3f}%) {errors['by_status_and_reason'] or ''}")
    if figures["refused"]:
        console.print(f"functional refusals: {figures['refused']}")
    verdict = figures["correctness"]
    colour = "green" if verdict["passed"] else "red"
    console.print(
        f"[{colour}]exactly once: {verdict['expected_feedback']} expected feedbacks checked,"
        f" {verdict['feedback_arrived']} arrived, problems {verdict['problems'] or 'none'};"
        f" {verdict['funding_counts_checked']} funding counts compared[/]"
    )
    for example in verdict["examples"]:
        console.print(f"  [red]{example}[/]")
    for check in figures["slo"]:
        mark = "[green]pass[/]" if check["passed"] else "[red]FAIL[/]"
        console.print(f"SLO {check['slo']}: {check['value']} -> {mark}")
    for note in figures["notes"]:
        console.print(f"[yellow]note: {note}[/]")


if __name__ == "__main__":
    app()
