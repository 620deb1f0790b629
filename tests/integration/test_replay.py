"""A small replay against a real in-process sandbox: record a day, play it back fast, account for every feedback."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from clients.replay.record import RecordOptions, record
from clients.replay.report import parse_slo, result_json, write_html, write_json
from clients.replay.runner import RunOptions, replay
from clients.replay.traffic import read_day
from tests.conftest import SandboxHarness

DAY = dt.date(2027, 9, 1)
# Ten hours of the day in about two seconds.
FAST = 20_000.0


@pytest.mark.slow
async def test_a_replayed_day_delivers_every_feedback_exactly_once_and_the_report_says_so(
    sandbox: SandboxHarness, tmp_path: Path
) -> None:
    path = tmp_path / "day.jsonl"
    await record(
        RecordOptions(
            address=sandbox.address,
            date=DAY,
            out=path,
            seed=3,
            schools=4,
            pupils_per_school=12,
            brp_messages=300,
            seed_size="small",
        )
    )
    day = read_day(path)
    assert 300 < len(day.timed) < 600

    result = await replay(day, RunOptions(address=sandbox.address, speed=FAST, duration=60, settle=20))

    assert result.verdict.passed, result.verdict.examples
    assert result.verdict.trail_checked
    sent = result.ledger.sent.values()
    assert all(s.status for s in sent), "every message was sent within the duration"
    answered_school = [s for s in sent if s.message.kind != "brp" and s.status in ("ok", "refused")]
    # Each school message's own feedback, plus feedback BRP and other schools' messages caused.
    assert result.verdict.expected >= len(answered_school) > 100
    causes = {a.feedback.cause.trigger for a in result.ledger.arrivals}
    assert {1, 2} <= {int(c) for c in causes}, "school-message and BRP-caused feedback both arrived"
    timed_school = [s for s in answered_school if s.message.phase == "day"]
    assert result.metrics.get("feedback.school").count == len(timed_school)
    assert result.metrics.get("feedback.brp").count >= 1

    figures = result_json(result, [parse_slo("errors<0.1%"), parse_slo("feedback.p99<1ms")])
    json_path, html_path = tmp_path / "result.json", tmp_path / "report.html"
    write_json(figures, json_path)
    write_html(result, figures, html_path)
    written = json.loads(json_path.read_text())
    assert written["correctness"]["passed"] is True
    assert {"p50", "p90", "p99", "p99.9", "max"} <= set(written["latency_ms"]["feedback.brp"])
    assert written["messages"]["sent"] == len(day.timed)
    # One microsecond for feedback cannot be met: the SLO fails, and with it the run.
    assert [s["passed"] for s in written["slo"]] == [True, False]
    assert written["passed"] is False
    page = html_path.read_text()
    for title in ("Latency over time", "Percentile distribution", "Throughput", "feedback.brp"):
        assert title in page
    # Works offline: plotly.js is inlined (megabytes of it), no script is fetched.
    assert "<script src=" not in page and len(page) > 1_000_000
