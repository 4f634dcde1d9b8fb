"""Shared fixtures: a migrated database per test on SQLite, or on PostgreSQL when asked.

``make test`` runs the suite on SQLite, then again with ``CONNECT_OPS_TEST_BACKEND=postgresql``
when ``TEST_DATABASE_URL`` is set (CI always sets it). On PostgreSQL each test session gets its
own freshly created database, so parallel runs and helpers never share rows.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from lib.db import make_engine, make_session_factory
from lib.migrate import upgrade
from lib.models import Base
from lib.settings import normalise_database_url

if TYPE_CHECKING:
    from emulator.testing import EmulatorHandle

# authlib.deprecate adds a global "always" filter for authlib's deprecation warnings when first
# imported; imported while a module is collected (the browser test's OIDC provider imports it),
# that filter would outrank pyproject's filterwarnings. Imported here, while pytest loads this
# file, the filter is dropped with that phase's own, and pyproject's exceptions hold.
importlib.import_module("authlib.deprecate")

_SETTING_PREFIXES = ("STRIPE_", "EMULATOR_", "AUTH_", "PAYOUT_", "WORKER_", "WEBHOOK_", "SYNC_",
                     "SMTP_", "ALERT_", "OUTBOX_", "OUTREACH_")
_SETTING_NAMES = {"DATABASE_URL", "JWT_SECRET", "FRONTEND_URL", "BACKEND_URL", "LOG_LEVEL"}


#: Streamlit's script runner (AppTest) replaces sys.modules["__main__"] with the page it ran and
#: leaves it there; a later multiprocessing "spawn" child would then re-run that page as its
#: main module and die, and the pool would hang replacing workers. Put the real one back.
_REAL_MAIN = sys.modules["__main__"]


@pytest.fixture(autouse=True)
def _real_main_module() -> Iterator[None]:
    yield
    sys.modules["__main__"] = _REAL_MAIN


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the machine's Stripe or app settings; each passes what it needs."""
    for name in list(os.environ):
        if name in _SETTING_NAMES or name.startswith(_SETTING_PREFIXES):
            monkeypatch.delenv(name, raising=False)


def _backend() -> str:
    return os.environ.get("CONNECT_OPS_TEST_BACKEND", "sqlite")


def _postgres_server_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    return normalise_database_url(url) if url else None


def pytest_report_header(config: pytest.Config) -> str:
    return f"connect-ops database backend: {_backend()}"


@pytest.fixture(scope="session")
def database_backend() -> str:
    return _backend()


@pytest.fixture(scope="session")
def _pg_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    if _backend() != "postgresql":
        yield None
        return
    server_url = _postgres_server_url()
    if not server_url:
        pytest.exit("CONNECT_OPS_TEST_BACKEND=postgresql needs TEST_DATABASE_URL", returncode=2)
    name = f"connect_ops_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (much faster than migrating each time)."""
    path = tmp_path_factory.mktemp("db-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _truncate_all(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def database_url(_pg_database: str | None, _sqlite_template: Path, tmp_path: Path) -> str:
    """The URL of an empty, migrated database for this test."""
    if _pg_database is not None:
        return _pg_database
    path = tmp_path / "connect_ops.db"
    shutil.copy(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def engine(database_url: str, _pg_database: str | None) -> Iterator[Engine]:
    engine = make_engine(database_url)
    if _pg_database is not None:
        _truncate_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def requires_postgresql() -> pytest.MarkDecorator:
    """Skip unless the suite runs on PostgreSQL (row locks, real concurrency)."""
    return pytest.mark.skipif(
        _backend() != "postgresql",
        reason="needs PostgreSQL: run with TEST_DATABASE_URL set (make test does, CI always does)",
    )


@pytest.fixture(scope="session")
def _shared_emulator() -> Iterator[EmulatorHandle]:
    """One Stripe emulator for the session (uvicorn in a thread on a free port)."""
    from emulator.testing import running_emulator

    with running_emulator() as handle:
        yield handle


@pytest.fixture
def emulator(_shared_emulator: EmulatorHandle) -> EmulatorHandle:
    """The session's emulator, reset to a fresh platform for this test."""
    _shared_emulator.reset()
    _shared_emulator.clear_faults()
    return _shared_emulator
