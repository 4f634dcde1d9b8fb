"""Chart specs (issue 21): Altair per run versus the spec built once (``dashboard.charts``).

``python -m bench.charts [--repeat 50]``

For each chart template the dashboard draws: the median time to build the Altair chart and
convert it with ``to_dict()`` (what ``st.altair_chart`` does on every script run, validating
every channel against the Vega-Lite schema), against the time a run of the page spends on the
same chart with the spec built and validated once per process (a deep copy of the kept dict).
Target: the kept spec costs at most 10 % of the per-run conversion. The page-level effect is in
``python -m bench.pages`` (Connection metrics and Requirements due draw these charts).
"""

from __future__ import annotations

import argparse
import copy
import sys
from functools import partial

import altair as alt

from bench.common import Figure, median_seconds, report
from dashboard import charts

BENCHMARK = "charts"
LIMIT = 0.10
#: The charts of the dashboard and the arguments its pages pass.
CHARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("volume_and_rate", ("Week of",)), ("funnel", ()), ("failure_reasons", ("Week of",)),
    ("duration_distribution", ()), ("median_by_week", ("minutes",)), ("requirements_due", ()),
    ("bank_failures_by_reason", ()),
)


def per_run(name: str, args: tuple[str, ...]) -> None:
    """What st.altair_chart would do each run: build the chart, convert and validate it."""
    with alt.theme.enable("none"):
        charts.TEMPLATES[name](*args).to_dict()


def kept(name: str, args: tuple[str, ...]) -> None:
    """What the page does each run: copy the spec built once."""
    copy.deepcopy(charts.spec(name, *args))


def figures(repeat: int) -> list[Figure]:
    found = []
    for name, args in CHARTS:
        charts.spec(name, *args)  # built (and validated) once, as on a page's first run
        altair_run = median_seconds(partial(per_run, name, args), repeat=repeat)
        kept_run = median_seconds(partial(kept, name, args), repeat=repeat)
        found.append(Figure(
            BENCHMARK, f"{name}: kept spec / Altair per run", kept_run * 1000, "ms",
            f"≤ {LIMIT:.0%} of Altair's {altair_run * 1000:.1f} ms",
            ratio=kept_run / altair_run, limit=LIMIT,
            details={"altair_per_run_ms": round(altair_run * 1000, 3),
                     "kept_spec_ms": round(kept_run * 1000, 4)}))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--backend", default="sqlite", help="ignored: no database is involved")
    args = parser.parse_args(argv)
    report(figures(args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
