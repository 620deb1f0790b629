"""Runs every benchmarks/bench_*.py module's main(), or only those named: python -m benchmarks [name ...].

The bare limits (bench_limits) run first, so every project figure can be printed
as a share of the limit measured in the same run; all figures also go to JSON.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from benchmarks import results


def main() -> None:
    wanted = set(sys.argv[1:])
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    modules.sort(key=lambda name: name != "bench_limits")
    for name in modules:
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        print(f"== {name}", flush=True)
        before = len(results.FIGURES)
        importlib.import_module(f"benchmarks.{name}").main()
        for figure in results.FIGURES[before:]:
            print(f"  {figure.name}: {figure.value:,.1f} {figure.unit}", flush=True)
    print(results.summary())
    print(f"figures as JSON: {results.write_json()}")


if __name__ == "__main__":
    main()
