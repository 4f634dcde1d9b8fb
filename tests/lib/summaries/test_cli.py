"""``python -m lib.summaries``: check finds a corrupted summary (exit 1), rebuild repairs it."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.models import SummaryCheck, SummaryCount
from lib.summaries.__main__ import main
from tests.factories_dashboard import add_attempt, add_freelancer


def test_check_rebuild_check(database_url: str, session_factory: sessionmaker[Session],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    with session_factory.begin() as session:
        freelancer = add_freelancer(session, state="active")
        add_attempt(session, freelancer_id=freelancer.id, started_at=freelancer.created_at,
                    outcome="succeeded")
    assert main(["check"]) == 0
    with session_factory.begin() as session:
        session.add(SummaryCount(kind="attempts", day="2001-01-01", k1="oauth", k2="failed",
                                 k3="", n=5, amount=0))
    assert main(["check"]) == 1
    assert main(["rebuild"]) == 0
    assert main(["compact"]) == 0
    assert main(["check"]) == 0
    with session_factory() as session:
        checks = session.scalars(select(SummaryCheck).order_by(SummaryCheck.id)).all()
    assert [(c.mismatches, c.repaired) for c in checks] == [
        (0, False), (1, False), (0, True), (0, False)]
    assert checks[1].details["differences"][0]["day"] == "2001-01-01"
