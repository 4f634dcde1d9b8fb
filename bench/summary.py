"""Render the figures of the last run as Markdown tables, for ``bench/RESULTS.md``.

``python -m bench.summary [--results bench/results/latest.jsonl] [--since ISO-TIME]``

Reads what :func:`bench.common.report` appended, keeps the newest figure of each (benchmark,
backend, name), and prints one table per benchmark and backend in the order they ran.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS_FILE

VERDICT = {True: "met", False: "**not met**", None: ""}


def load(path: Path, *, since: str | None = None) -> list[dict[str, Any]]:
    """The newest row of each (benchmark, backend, name), in first-seen order."""
    newest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if since and str(row.get("at", "")) < since:
            continue
        key = (row["benchmark"], row["backend"], row["name"])
        newest.pop(key, None)  # re-insert: the order follows the newest run
        newest[key] = row
    return list(newest.values())


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def render(rows: list[dict[str, Any]]) -> str:
    """Markdown: a heading per benchmark and backend, a table of its figures."""
    lines: list[str] = []
    current: tuple[str, str] | None = None
    for row in rows:
        group = (row["benchmark"], row["backend"])
        if group != current:
            current = group
            lines += ["", f"### {row['benchmark']} — {row['backend']}", "",
                      "| Figure | Value | Ratio | Target | |", "|---|---:|---:|---|---|"]
        ratio = "" if row.get("ratio") is None else f"{row['ratio']:.2f}"
        lines.append(f"| {row['name']} | {_number(float(row['value']))} {row['unit']} | {ratio} "
                     f"| {row['target']} | {VERDICT[row.get('met')]} |")
    return "\n".join(lines).lstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS_FILE)
    parser.add_argument("--since", help="only figures measured at or after this ISO time")
    args = parser.parse_args(argv)
    if not args.results.exists():
        sys.stderr.write(f"No results at {args.results}: run `make bench` first.\n")
        return 2
    sys.stdout.write(render(load(args.results, since=args.since)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
