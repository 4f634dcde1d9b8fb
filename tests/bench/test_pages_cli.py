"""bench.pages at tiny sizes: every page is timed cold and warm and printed against the floor."""

from __future__ import annotations

import json

import pytest

from bench import pages
from dashboard.navigation import PAGES


@pytest.mark.slow
def test_the_cli_prints_every_page_against_the_floor(bench_location, tmp_path, capsys) -> None:
    code = pages.main(["--backend", bench_location, "--small", "8", "--large", "16",
                       "--repeat", "1", "--no-memory", "--widgets-accounts", "4"])

    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert any("empty page (framework floor)" in line for line in lines)
    for spec in PAGES:
        floor_line = next(line for line in lines if f"{spec.title} @16 cold / floor" in line)
        growth_line = next(line for line in lines if f"{spec.title} @16 / @8 cold" in line)
        assert "ratio" in floor_line and "<= 3x floor" in floor_line
        assert "<= 1.5x page @8" in growth_line
        assert any(f"{spec.title} @16 warm / floor" in line for line in lines)
        # Issue 22: the same page on an empty (migrated, no rows) database, and the ratio to it.
        empty_line = next(line for line in lines if f"{spec.title} @16 / empty database cold"
                          in line)
        assert "<= 2x page on empty db" in empty_line
        assert any(f"{spec.title} on an empty database cold / floor" in line for line in lines)
        widgets_line = next(line for line in lines
                            if f"{spec.title} @16 / its widgets' floor cold" in line)
        assert "<= 2x page with its widgets drawn on 4 accounts" in widgets_line
        assert any(f"{spec.title} database time @16 / @8 cold" in line for line in lines)
    recorded = [json.loads(line) for line in
                (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(recorded) == 1 + 7 * len(PAGES)
    timed = [r for r in recorded if r["name"] != "empty page (framework floor)"]
    assert all(r["value"] > 0 and r["ratio"] > 0 and r["backend"] == bench_location
               for r in timed)
    # A cold run redoes the page's reads: every page queried the database, even an empty one.
    assert all(r["details"]["queries_16"] > 0 for r in timed)
    assert all(r["details"]["queries_empty"] > 0 and r["details"]["cold_empty_ms"] > 0
               for r in timed)
    # The widgets each page drew are counted at every size (what the widgets' floor is for).
    assert all(r["details"]["cold_widgets_ms"] > 0 for r in timed)
    drawn = timed[0]["details"]["widgets_drawn"]
    assert set(drawn) == {"empty", "widgets_floor", "8", "16"}
    assert any(r["details"]["widgets_drawn"]["16"] for r in timed)
    # ... and the time those queries took is measured, a part of the page's own.
    assert all(0 < r["details"]["sql_16_ms"] < r["details"]["cold_16_ms"] for r in timed)


def test_both_sizes_at_once_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(pages.ACCOUNTS_ENV, "1000 1000000")
    assert pages._accounts_from_env() == [1000, 1000000]
    monkeypatch.setenv(pages.ACCOUNTS_ENV, "1000")
    with pytest.raises(SystemExit):
        pages._accounts_from_env()
    monkeypatch.delenv(pages.ACCOUNTS_ENV)
    assert pages._accounts_from_env() is None


def test_passes_are_merged_into_one_timing_per_page() -> None:
    """``--passes``: every pass's samples count, so the medians span the whole run."""
    from bench._pages_apptest import PageTiming

    first = PageTiming(cold=0.010, warm=0.004, cold_samples=[0.009, 0.010, 0.011],
                       warm_samples=[0.004], queries=7, cold_sql=0.002)
    second = PageTiming(cold=0.030, warm=0.006, cold_samples=[0.029, 0.030, 0.031],
                        warm_samples=[0.006], queries=7, cold_sql=0.004, errors=["late"])
    both = pages.merged([first, second])
    assert both.cold_samples == [0.009, 0.010, 0.011, 0.029, 0.030, 0.031]
    assert both.cold == pytest.approx(0.020) and both.warm == pytest.approx(0.005)
    assert (both.queries, both.errors, both.cold_sql) == (7, ["late"], pytest.approx(0.003))


def test_passes_must_be_positive(capsys) -> None:
    with pytest.raises(SystemExit):
        pages.main(["--backend", "sqlite", "--passes", "0"])
    assert "--passes >= 1" in capsys.readouterr().err


def test_a_floor_that_draws_fewer_widgets_is_named() -> None:
    from bench._pages_apptest import PageTiming

    floor = PageTiming(cold=0.01, warm=0.01, widgets={"metric": 2, "vega_lite_chart": 3})
    large = PageTiming(cold=0.02, warm=0.01,
                       widgets={"metric": 4, "dataframe": 1, "vega_lite_chart": 3})
    assert pages.fewer_widgets(floor, large) == {"metric": [2, 4], "dataframe": [0, 1]}
    assert pages.fewer_widgets(large, floor) == {}
