"""Benchmark databases of a test's own: under tmp_path (SQLite) or a uniquely named PG database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import bench.common
from lib.settings import normalise_database_url


def drop_databases(prefix: str) -> None:
    """Drop the PostgreSQL databases whose names start with ``prefix``."""
    server = make_url(normalise_database_url(os.environ["TEST_DATABASE_URL"]))
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        names: Sequence[str] = conn.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
            {"p": f"{prefix}%"}).scalars().all()
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def bench_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                   database_backend: str) -> Iterator[str]:
    """Point bench.common at this test's databases and results file; yields the backend."""
    monkeypatch.setattr(bench.common, "BENCH_DATA", tmp_path / "bench")
    monkeypatch.setattr(bench.common, "RESULTS_FILE", tmp_path / "results.jsonl")
    prefix = f"connect_ops_benchtest_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(bench.common, "POSTGRES_BENCH_DATABASE", prefix)
    yield database_backend
    if database_backend == "postgresql":
        drop_databases(prefix)
