"""What a run leaves behind: SLO checks, the JSON result, the HTML report (plotly, offline) and the live view."""

from __future__ import annotations

import html
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from clients.replay.metrics import Metrics, per_second
from clients.replay.runner import Progress, RunResult

if TYPE_CHECKING:
    import plotly.graph_objects as go

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_SLO = re.compile(r"^\s*([A-Za-z_][\w.]*?)\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*(ms|s|us|%|/s)?\s*$")
_STAT = re.compile(r"^(?P<histogram>.+)\.(?P<stat>p\d+(?:\.\d+)?|max|mean)$")
# Plain (non-latency) metrics an SLO may name, and their unit.
_PLAIN = {"errors": "%", "refused": "%", "achieved_rate": "/s", "missing": "", "duplicates": ""}
_TO_MS = {"ms": 1.0, "s": 1000.0, "us": 0.001, None: 1.0}


@dataclass(frozen=True)
class Slo:
    text: str
    metric: str
    op: str
    threshold: float
    unit: str | None

    def value(self, figures: dict[str, Any]) -> float | None:
        if self.metric == "errors":
            return 100.0 * float(figures["errors"]["rate"])
        if self.metric == "refused":
            sent = max(int(figures["messages"]["sent"]), 1)
            return 100.0 * sum(figures["refused"].values()) / sent
        if self.metric == "achieved_rate":
            return float(figures["throughput"]["achieved_per_s"])
        if self.metric == "missing":
            return float(figures["correctness"]["problems"].get("missing", 0))
        if self.metric == "duplicates":
            problems = figures["correctness"]["problems"]
            return float(problems.get("duplicate", 0) + problems.get("duplicate_by_cause", 0))
        found = _STAT.match(self.metric)
        assert found is not None
        summary = figures["latency_ms"].get(found["histogram"])
        if summary is None or not summary.get("count"):
            return None
        return float(summary[found["stat"]])

    def check(self, figures: dict[str, Any]) -> dict[str, Any]:
        value = self.value(figures)
        threshold = self.threshold * _TO_MS.get(self.unit, 1.0) if _STAT.match(self.metric) else self.threshold
        passed = value is not None and _OPERATORS[self.op](value, threshold)
        return {"slo": self.text, "value": value, "threshold": threshold, "passed": passed}


def parse_slo(text: str) -> Slo:
    """ "feedback.p99<50ms", "feedback.brp.p99.9<=200ms", "errors<0.1%", "achieved_rate>=25/s"."""
    found = _SLO.match(text)
    if found is None:
        raise ValueError(f"--slo {text!r}: write METRIC<VALUE, for example feedback.p99<50ms or errors<0.1%")
    metric, op, number, unit = found.groups()
    if metric in _PLAIN:
        if (unit or "") not in ("", _PLAIN[metric]):
            raise ValueError(f"--slo {text!r}: {metric} is measured in {_PLAIN[metric] or 'a count'}, not {unit}")
    else:
        stat = _STAT.match(metric)
        if stat is None:
            raise ValueError(
                f"--slo {text!r}: unknown metric {metric!r}; use a histogram and a statistic (feedback.p99,"
                f" call.RegisterEnrolment.p50, stream_lag.max) or one of {', '.join(_PLAIN)}"
            )
        if unit not in _TO_MS:
            raise ValueError(f"--slo {text!r}: a latency is in ms, s or us, not {unit}")
        if stat["stat"].startswith("p") and not 0 < float(stat["stat"][1:]) <= 100:
            raise ValueError(f"--slo {text!r}: a percentile is between 0 and 100")
    return Slo(text, metric, op, float(number), unit)


def result_json(result: RunResult, slos: list[Slo]) -> dict[str, Any]:
    figures = result.figures()
    figures["slo"] = [slo.check(figures) for slo in slos]
    figures["passed"] = result.verdict.passed and all(s["passed"] for s in figures["slo"])
    return figures


def write_json(figures: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


# ---- HTML ----

_HEADLINE = ("feedback", "feedback.school", "feedback.brp", "feedback.other_enrolment", "calls", "stream_lag")


def _latency_over_time(metrics: Metrics) -> go.Figure:
    import plotly.graph_objects as go

    figure = go.Figure()
    for name in ("calls", "feedback.school", "feedback.brp"):
        samples = metrics.timelines.get(name, [])
        figure.add_trace(
            go.Scattergl(
                x=[s.at for s in samples],
                y=[s.seconds * 1000 for s in samples],
                mode="markers",
                marker={"size": 3},
                name=name,
            )
        )
    figure.update_layout(
        title="Latency over time (from the intended send time)",
        xaxis_title="seconds into the replayed day",
        yaxis_title="ms",
        yaxis_type="log",
    )
    return figure


def _percentiles(metrics: Metrics) -> go.Figure:
    import plotly.graph_objects as go

    figure = go.Figure()
    for name in _HEADLINE:
        curve = metrics.get(name).curve()
        if not curve:
            continue
        # The classic HDR plot: x is 1/(1-p), so the tail gets the room.
        xs = [1 / (1 - p / 100) if p < 100 else 1e5 for p, _ in curve]
        figure.add_trace(
            go.Scatter(
                x=xs, y=[v for _, v in curve], mode="lines+markers", name=name, text=[f"p{p:g}" for p, _ in curve]
            )
        )
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    figure.update_layout(
        title="Percentile distribution",
        xaxis={
            "type": "log",
            "title": "percentile",
            "tickvals": ticks,
            "ticktext": ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "max"],
        },
        yaxis_title="ms",
    )
    return figure


def _throughput(metrics: Metrics, seconds: float) -> go.Figure:
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, moments in (
        ("sent", metrics.sent_at),
        ("answered", metrics.answered_at),
        ("feedback received", metrics.feedback_at),
    ):
        counts = per_second(moments, seconds)
        figure.add_trace(go.Scatter(x=list(range(len(counts))), y=counts, mode="lines", name=name))
    figure.update_layout(title="Throughput", xaxis_title="seconds into the replayed day", yaxis_title="per second")
    return figure


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(result: RunResult, figures: dict[str, Any], path: Path) -> None:
    """One self-contained page: plotly.js is inlined once, so the report opens offline."""
    # Imported here: plotly takes a moment to import, and `sandbox up` imports this command line.
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    latency_rows = [
        [name, str(s["count"]), *(f"{s[k]:.1f}" for k in ("p50", "p90", "p99", "p99.9", "max"))]
        for name, s in figures["latency_ms"].items()
    ]
    verdict = figures["correctness"]
    slo_rows = [
        [s["slo"], "-" if s["value"] is None else f"{s['value']:.3f}", "pass" if s["passed"] else "FAIL"]
        for s in figures["slo"]
    ]
    errors = [[k, str(v)] for k, v in figures["errors"]["by_status_and_reason"].items()] or [["none", "0"]]
    refused = [[k, str(v)] for k, v in figures["refused"].items()] or [["none", "0"]]
    plots = "".join(
        pio.to_html(f, include_plotlyjs=False, full_html=False, default_height="420px")
        for f in (
            _latency_over_time(result.metrics),
            _percentiles(result.metrics),
            _throughput(result.metrics, result.day_seconds),
        )
    )
    status = "PASSED" if figures["passed"] else "FAILED"
    messages = figures["messages"]
    throughput = figures["throughput"]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Replay {html.escape(figures["file"]["date"])}: {status}</title>
<script>{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;margin:2em;}} table{{border-collapse:collapse;margin:1em 0;}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right;}} td:first-child,th:first-child{{text-align:left;}}
.PASSED{{color:#186a3b;}} .FAILED{{color:#b03a2e;}}</style></head><body>
<h1>Replay of {html.escape(figures["file"]["date"])}: <span class="{status}">{status}</span></h1>
<p>{html.escape(figures["mode"])} against {html.escape(figures["address"])},
sandbox {html.escape(figures["sandbox_id"])};
{messages["sent"]} of {messages["planned"]} messages sent in {figures["duration_s"]:.1f} s
(offered {throughput["offered_per_s"]}/s, sent {throughput["sent_per_s"]}/s, answered {throughput["achieved_per_s"]}/s);
{figures["errors"]["count"]} errors; {verdict["feedback_arrived"]} feedbacks received.</p>
<h2>Correctness</h2>
<p>Expected feedback: {verdict["expected_feedback"]};
problems: {html.escape(json.dumps(verdict["problems"]))};
funding counts checked: {verdict["funding_counts_checked"]}; cause trail checked: {verdict["cause_trail_checked"]}.</p>
{_table([[e] for e in verdict["examples"]], ["examples"]) if verdict["examples"] else ""}
<h2>SLOs</h2>{_table(slo_rows, ["slo", "value", "result"]) if slo_rows else "<p>none given</p>"}
<h2>Latency (ms)</h2>{_table(latency_rows, ["histogram", "count", "p50", "p90", "p99", "p99.9", "max"])}
<h2>Errors by status and reason</h2>{_table(errors, ["status and reason", "count"])}
<h2>Functional refusals</h2>{_table(refused, ["status and reason", "count"])}
{plots}
<p>Notes: {html.escape("; ".join(figures["notes"]) or "none")}</p>
</body></html>
"""
    path.write_text(page)


# ---- live ----


def live_table(progress: Progress) -> Table:
    metrics = progress.metrics
    table = Table(title=f"replay: {progress.phase}", show_header=True)
    for column in ("sent", "answered", "errors", "feedback", "call p99 ms", "feedback p99 ms"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{progress.sent}/{progress.planned}",
        str(progress.answered),
        str(progress.errors),
        str(progress.feedback),
        f"{metrics.get('calls').percentile_ms(99):.1f}",
        f"{metrics.get('feedback').percentile_ms(99):.1f}",
    )
    return table
