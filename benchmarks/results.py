"""Figures of one `make bench` run: each project figure beside the bare limit measured in the same run."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_PATH_ENV = "REGISTRY_BENCH_RESULTS"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    backend: str = ""
    # The bare limit this figure is bounded by (a Figure name of bench_limits), if any.
    limit: str = ""


FIGURES: list[Figure] = []


def record(name: str, value: float, unit: str, *, backend: str = "", limit: str = "") -> None:
    FIGURES.append(Figure(name, value, unit, backend, limit))


def summary() -> str:
    """One line per figure, with its ratio to its limit when both were measured in this run."""
    limits = {f.name: f for f in FIGURES}
    lines = ["", "== summary (figure, and its share of the bare limit measured in this run)"]
    for figure in FIGURES:
        line = f"  {figure.name:60s} {figure.value:>12,.1f} {figure.unit}"
        limit = limits.get(figure.limit)
        if limit is not None and limit.value:
            line += f"   {100 * figure.value / limit.value:6.2f} % of {limit.name}"
        lines.append(line)
    return "\n".join(lines)


def write_json() -> Path:
    path = Path(os.environ.get(RESULTS_PATH_ENV, ".bench/results.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(f) for f in FIGURES], indent=2) + "\n")
    return path
