"""bench.writes at a tiny size: both sides measured, the ratio reported, summaries exact."""

from __future__ import annotations

from bench import writes


def test_writes_side_by_side_at_a_tiny_size(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("bench.common.BENCH_DATA", tmp_path)
    figures = writes.measure("sqlite", writes=20, accounts=5)
    assert [f.name.split(":")[0] for f in figures] == [
        "webhook intake", "account upsert", "payout status change"]
    for figure in figures:
        assert figure.ratio is not None and figure.ratio > 0 and figure.limit == 1.2
        assert figure.details["writes"] == 20
