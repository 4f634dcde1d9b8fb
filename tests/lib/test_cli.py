"""lib.cli: every command line's start-up, and its one-line errors with their exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy import event as sa_event

from lib import cli
from lib.cli import CommandContext, run_command
from lib.errors import ConfigurationError, ConflictError


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    # configure_logging replaces the root handlers, which pytest's capture relies on.
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)


def test_a_missing_setting_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[CommandContext] = []

    def body(context: CommandContext) -> int:
        ran.append(context)
        return 0

    code = run_command("connect-ops test", body, require=("STRIPE_SECRET_KEY",))
    err = capsys.readouterr().err
    assert code == 2 and ran == []
    assert err.startswith("connect-ops test: STRIPE_SECRET_KEY is not set") and err.count("\n") == 1


@pytest.mark.parametrize(("error", "code"), [
    (ConfigurationError("JWT_SECRET is not set."), 2),
    (ConflictError("Payout 7 is paid."), 1),
])
def test_a_domain_error_in_the_body_is_one_line(
    capsys: pytest.CaptureFixture[str], error: Exception, code: int,
) -> None:
    def body(_context: CommandContext) -> int:
        raise error

    assert run_command("connect-ops test", body) == code
    assert capsys.readouterr().err == f"connect-ops test: {error}\n"


def test_the_body_gets_the_database_on_first_use_and_it_is_disposed() -> None:
    seen: dict[str, object] = {}
    disposed: list[Engine] = []

    def body(context: CommandContext) -> int:
        seen["before"] = "engine" in context.__dict__
        with context.factory() as session:
            seen["one"] = session.scalar(text("SELECT 1"))
        sa_event.listen(context.engine, "engine_disposed", disposed.append)
        return 3

    assert run_command("connect-ops test", body) == 3
    assert seen == {"before": False, "one": 1}
    assert len(disposed) == 1


def test_a_command_that_never_uses_the_database_opens_none() -> None:
    contexts: list[CommandContext] = []

    def body(context: CommandContext) -> int:
        contexts.append(context)
        return 0

    assert run_command("connect-ops test", body, log=False) == 0
    assert "engine" not in contexts[0].__dict__ and "gateway" not in contexts[0].__dict__
