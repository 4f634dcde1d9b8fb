"""Render the figures of the last run as Markdown tables, for ``bench/RESULTS.md``.

``python -m bench.summary [--results bench/results/latest.jsonl] [--since ISO-TIME]``

Reads what :func:`bench.common.report` appended, keeps the newest figure of each (benchmark,
backend, name), and prints one table per benchmark and backend in the order they ran. The page
benchmark also gets one row per page (issue 22): its cold run on an empty database, at the small
and the large size, and the large size against the small one, the empty database and the floor.
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
    lines += _page_tables(rows)
    return "\n".join(lines).lstrip() + "\n"


def _short(count: int) -> str:
    """1000 -> '1k', 1000000 -> '1M' (as the figures' names say: bench.pages.short)."""
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count >= 1000 and count % 1000 == 0 else str(count)


def _ratio(value: object, limit: float) -> str:
    if not isinstance(value, int | float):
        return ""
    return f"{value:.2f}" if value <= limit else f"**{value:.2f}**"


def _sql(details: dict[str, Any], small: str, large: str) -> str:
    """The database's share of a cold run at each size ('' for runs before it was measured)."""
    keys = ("sql_empty_ms", f"sql_{small}_ms", f"sql_{large}_ms")
    if not all(key in details for key in keys):
        return ""
    return " / ".join(_number(float(details[key])) for key in keys)


def _page_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Per backend, one row per page from the details of bench.pages' figures (issue 22)."""
    pages: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        details = row.get("details") or {}
        if row["benchmark"] == "pages" and "empty_ratio" in details:
            pages.setdefault(row["backend"], {})[str(details["page"])] = details
    lines: list[str] = []
    for backend, by_page in pages.items():
        first = next(iter(by_page.values()))
        s, b = _short(int(first["small"])), _short(int(first["large"]))
        lines += ["", f"### pages per page — {backend} (cold runs, ms; ratios over target "
                      "in bold)", "",
                  f"| Page | empty db | widgets' floor | @{s} | @{b} | @{b} / @{s} (≤ 1.5×) "
                  f"| @{b} / empty (≤ 2×) | @{b} / widgets' floor (≤ 2×) "
                  f"| @{b} / floor (≤ 3×) | database ms: empty / @{s} / @{b} |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for page, d in by_page.items():
            large_ms = float(d.get(f"cold_{b}_ms", 0.0))
            floor_ms = float(d.get("floor_ms") or 0.0)
            widgets = d.get("cold_widgets_ms")
            fewer = " (draws fewer)" if d.get("widgets_floor_draws_fewer") else ""
            lines.append(
                f"| {page} | {_number(float(d['cold_empty_ms']))} "
                f"| {'' if widgets is None else _number(float(widgets)) + fewer} "
                f"| {_number(float(d.get(f'cold_{s}_ms', 0.0)))} | {_number(large_ms)} "
                f"| {_ratio(d.get('growth_ratio'), 1.5)} | {_ratio(d.get('empty_ratio'), 2.0)} "
                f"| {_ratio(d.get('widgets_ratio'), 2.0)} "
                f"| {_ratio(large_ms / floor_ms if floor_ms else None, 3.0)} "
                f"| {_sql(d, s, b)} |")
    return lines


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
