"""bench.summary turns the results file into the tables of bench/RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path

from bench.summary import load, main, render


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _row(name: str, value: float, *, at: str, met: bool | None, ratio: float | None = 1.5,
         backend: str = "sqlite") -> dict[str, object]:
    return {"benchmark": "pages", "backend": backend, "name": name, "value": value, "unit": "ms",
            "ratio": ratio, "target": "≤ 3× floor", "met": met, "at": at}


def test_newest_figure_of_each_name_wins(tmp_path: Path) -> None:
    results = tmp_path / "latest.jsonl"
    _write(results, [_row("Overview", 40.0, at="2026-01-01T00:00:00", met=False),
                     _row("Accounts", 9.0, at="2026-01-01T00:00:00", met=True),
                     _row("Overview", 8.0, at="2026-01-02T00:00:00", met=True)])

    rows = load(results)

    assert [(r["name"], r["value"]) for r in rows] == [("Accounts", 9.0), ("Overview", 8.0)]
    assert [r["name"] for r in load(results, since="2026-01-02")] == ["Overview"]


def test_tables_per_benchmark_and_backend(tmp_path: Path) -> None:
    text = render([_row("Overview", 1234.5, at="x", met=False),
                   _row("floor", 2.0, at="x", met=None, ratio=None),
                   _row("Overview", 8.0, at="x", met=True, backend="postgresql")])

    assert "### pages — sqlite" in text and "### pages — postgresql" in text
    assert "| Overview | 1,234 ms | 1.50 | ≤ 3× floor | **not met** |" in text
    assert "| floor | 2.00 ms |  | ≤ 3× floor |  |" in text
    assert "| Overview | 8.00 ms | 1.50 | ≤ 3× floor | met |" in text


def test_a_row_per_page_with_the_empty_database_and_both_ratios() -> None:
    details = {"page": "Overview", "small": 1000, "large": 1000000, "floor_ms": 10.0,
               "cold_empty_ms": 20.0, "cold_1k_ms": 25.0, "cold_1M_ms": 45.0,
               "growth_ratio": 1.8, "empty_ratio": 2.25, "cold_widgets_ms": 30.0,
               "widgets_ratio": 1.5}
    row = _row("Overview @1M / empty database cold", 45.0, at="x", met=False, ratio=2.25)

    text = render([row | {"details": details}])

    assert "### pages per page — sqlite" in text
    assert ("| Page | empty db | widgets' floor | @1k | @1M | @1M / @1k (≤ 1.5×) "
            "| @1M / empty (≤ 2×) | @1M / widgets' floor (≤ 2×) ") in text
    assert "| Overview | 20.0 | 30.0 | 25.0 | 45.0 | **1.80** | **2.25** | 1.50 | **4.50** |" in text
    # A floor that drew fewer widgets than the page at 1M says so beside its time.
    fewer = render([row | {"details": details | {"widgets_floor_draws_fewer": {"metric": [2, 4]}}}])
    assert "| Overview | 20.0 | 30.0 (draws fewer) | 25.0 |" in fewer


def test_missing_results_is_a_clear_exit(tmp_path: Path, capsys) -> None:
    assert main(["--results", str(tmp_path / "none.jsonl")]) == 2
    assert "make bench" in capsys.readouterr().err
