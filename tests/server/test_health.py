import subprocess
import sys

from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from lib.db import make_session_factory
from lib.settings import PROJECT_ROOT
from server.app import create_app
from tests.factories import make_settings


def test_healthz_reports_database_ok(session_factory: sessionmaker[Session]) -> None:
    app = create_app(make_settings(), session_factory=session_factory)
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_reports_unreachable_database(tmp_path) -> None:
    # A SQLite path inside a file cannot be opened: the database is unreachable.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    broken = make_session_factory(create_engine(f"sqlite:///{blocker}/db.sqlite"))
    app = create_app(make_settings(), session_factory=broken)
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unreachable"}


def test_openapi_is_served(session_factory: sessionmaker[Session]) -> None:
    app = create_app(make_settings(), session_factory=session_factory)
    with TestClient(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert "/healthz" in response.json()["paths"]


def test_missing_setting_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "--port", "1"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "STRIPE_SECRET_KEY": "sk_test_x", "HOME": "/tmp"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "STRIPE_CONNECT_CLIENT_ID is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert "sk_test_x" not in result.stderr + result.stdout
