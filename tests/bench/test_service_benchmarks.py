"""The service benchmarks' command lines at tiny sizes: they run, stop by themselves and print
every figure with its target and ratio. No time is asserted (a shared machine is noisy)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

import bench.common
from bench.__main__ import ORDER
from bench.loadgen import build_request, run_load, run_paced


@pytest.fixture
def results(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_backend: str) -> Path:
    """Benchmark databases and the results file under tmp_path, never the project's."""
    monkeypatch.setattr(bench.common, "BENCH_DATA", tmp_path / "bench-data")
    path = tmp_path / "latest.jsonl"
    monkeypatch.setattr(bench.common, "RESULTS_FILE", path)
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(module: str, args: list[str], backend: str, capsys: pytest.CaptureFixture[str]
         ) -> str:
    main = importlib.import_module(f"bench.{module}").main
    assert main(["--backend", backend, *args]) == 0
    return capsys.readouterr().out


@pytest.mark.timeout(120)
def test_companion_measures_every_endpoint_against_the_floor(results, database_backend,
                                                              capsys) -> None:
    out = _run("companion", ["--duration", "0.3", "--concurrency", "4"], database_backend, capsys)
    rows = {r["name"]: r for r in _rows(results)}
    endpoints = ["/healthz", "callback invalid_state", "freelancer status",
                 "webhook intake (signed)"]
    assert set(rows) == {"floor: bare Starlette GET", "floor: bare Starlette POST",
                         "floor: Starlette POST + one INSERT and commit", *endpoints}
    for name in endpoints:
        row = rows[name]
        assert row["backend"] == database_backend and row["unit"] == "req/s"
        # Webhook intake is held to the floor that does its database work (issue 18).
        intake = name == "webhook intake (signed)"
        assert row["value"] > 0 and row["ratio"] > 0 and row["limit"] == (0.7 if intake else 0.5)
        # Only the expected answer was counted, and nothing else came back.
        assert set(row["details"]["statuses"]) == {str(row["details"]["expected_status"])}
        assert row["details"]["transport_errors"] == 0
        assert name in out
    assert "target ≥ 50 % of the floor's rps" in out and "≥ 70 % of the insert floor" in out


@pytest.mark.timeout(120)
def test_sync_reports_backfill_beside_the_emulators_own_cost(results, database_backend,
                                                              capsys) -> None:
    out = _run("sync", ["--accounts", "30"], database_backend, capsys)
    rows = {r["name"]: r for r in _rows(results)}
    backfill = rows["backfill 30 accounts"]
    assert backfill["details"]["synced"] == 30
    assert backfill["ratio"] == pytest.approx(backfill["value"] / 2000)
    assert backfill["limit"] == 1.0 and backfill["higher_is_better"]
    assert rows["emulator alone: page GET /v1/accounts"]["value"] > 0
    assert "≥ 2,000 accounts/s" in out and "emulator alone" in out


@pytest.mark.timeout(120)
def test_payouts_pays_with_one_and_several_operators(results, database_backend, capsys) -> None:
    out = _run("payouts", ["--payouts", "6", "--operators", "3"], database_backend, capsys)
    rows = {r["name"]: r for r in _rows(results)}
    one, three = rows["1 operator: paid payouts"], rows["3 operators: paid payouts"]
    assert one["details"]["paid"] == 6 and three["details"]["paid"] == 6
    assert one["details"]["not_paid"] == three["details"]["not_paid"] == 0
    assert three["ratio"] == pytest.approx(three["value"] / one["value"])
    assert "N/1 scaling" in out


@pytest.mark.timeout(300)
def test_webhooks_settle_every_event_of_the_mix(results, database_backend, capsys) -> None:
    out = _run("webhooks", ["--events", "60", "--concurrency", "4", "--paced-seconds", "0.3"],
               database_backend, capsys)
    rows = {r["name"]: r for r in _rows(results)}
    intake = rows["intake only: 60 balance.available"]
    e2e = rows["end to end: 60 mixed events"]
    assert intake["details"]["statuses"] == {"200": 60}
    assert e2e["details"]["statuses"] == {"200": 60}
    assert e2e["details"]["unsettled"] == {}
    mix = e2e["details"]["mix"]
    assert mix["duplicates"] == 6 and mix["account.updated"] > 0
    # Duplicates are stored once: 54 distinct mixed events were added, and processed.
    assert e2e["details"]["stored_distinct"] == 54
    assert e2e["ratio"] == pytest.approx(e2e["value"] / intake["value"])
    workers = [1, 2] if database_backend == "postgresql" else [1]
    for count in workers:
        label = f"{count} worker{'s' if count > 1 else ''}"
        at = f"at 100 events/s, {label}"
        for name in (f"intake p50 {at}", f"intake p99 {at}", f"processing lag p50 {at}",
                     f"processing lag p99 {at}", f"processing rate {at}"):
            row = rows[name]
            assert row["unit"] in ("ms", "events/s") and row["value"] > 0, name
            assert row["details"]["events"] == 30 and row["details"]["transport_errors"] == 0
        assert rows[f"intake p50 {at}"]["details"]["statuses"] == {"200": 30}
        assert rows[f"processing lag p50 {at}"]["details"]["processed"] > 0
    assert "end to end" in out and "processing lag p99" in out


def test_load_generator_refuses_an_unbounded_cycle_and_an_empty_list() -> None:
    with pytest.raises(ValueError, match="duration or a request count"):
        run_load(1, [build_request("GET", "/", port=1)])
    with pytest.raises(ValueError, match="at least one request"):
        run_load(1, [], cycle=False)
    with pytest.raises(ValueError, match="positive rate"):
        run_paced(1, [build_request("GET", "/", port=1)], rate=0)


def test_make_bench_runs_the_benchmarks_in_order() -> None:
    # Issue 21 added the chart specs after the pages they are drawn on; issue 22 the writes.
    assert ORDER == ("pages", "charts", "companion", "sync", "payouts", "webhooks", "writes")
    for name in ORDER:
        assert callable(importlib.import_module(f"bench.{name}").main)
