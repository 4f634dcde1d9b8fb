"""bench.generate at tiny sizes: the asked counts, the demo's state mix, reuse of a database."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.generate import Sizes, ensure_database, generate, matches, read_marker, write_marker
from lib.account_status import ConnectionStatus
from lib.db import make_engine
from lib.models import (
    AttemptOutcome,
    AuditLog,
    ConnectedAccount,
    ConnectionAttempt,
    Freelancer,
    Payout,
    PayoutReversal,
    PayoutStatus,
    RequirementCode,
    WebhookEvent,
    WebhookStatus,
)
from lib.requirement_index import codes_of

SIZES = Sizes(accounts=240, attempts=1_500, payouts=300, webhook_events=120, audit_entries=200)


def _count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_generates_the_asked_counts_with_the_demo_state_mix(engine, session_factory) -> None:
    counts = generate(engine, SIZES, seed=11)

    with session_factory() as session:
        assert _count(session, Freelancer) == counts["freelancers"] == 240
        assert _count(session, ConnectionAttempt) == 1_500
        assert _count(session, Payout) == 300
        assert _count(session, WebhookEvent) == 120
        assert _count(session, AuditLog) == 200
        statuses = Counter(session.scalars(
            select(ConnectedAccount.status).join(
                Freelancer, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)))
        not_connected = session.scalar(select(func.count()).select_from(Freelancer).where(
            Freelancer.stripe_account_id.is_(None)))
        stale = session.scalar(select(func.count()).select_from(Freelancer).where(
            Freelancer.disconnected_at.is_not(None)))
        outcomes = Counter(session.scalars(select(ConnectionAttempt.outcome)))
        reasons = set(session.scalars(select(ConnectionAttempt.failure_reason).where(
            ConnectionAttempt.outcome == AttemptOutcome.FAILED.value)))
        payouts = Counter(session.scalars(select(Payout.status)))
        events = Counter(session.scalars(select(WebhookEvent.status)))
        deadlines = list(session.scalars(select(ConnectedAccount.current_deadline).where(
            ConnectedAccount.status == ConnectionStatus.RESTRICTED.value,
            ConnectedAccount.current_deadline.is_not(None))))
        attached = session.execute(
            select(ConnectedAccount.requirements).join(
                Freelancer, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)).all()
        index_rows = _count(session, RequirementCode)
        reversals = _count(session, PayoutReversal)
        succeeded_with_account = session.scalar(
            select(func.count()).select_from(ConnectionAttempt).join(
                Freelancer, Freelancer.id == ConnectionAttempt.freelancer_id).where(
                ConnectionAttempt.outcome == AttemptOutcome.SUCCEEDED.value,
                ConnectionAttempt.stripe_account_id == Freelancer.stripe_account_id))

    # Every account state of the demo, ACTIVE the largest (16 of 48 there), 12 of 48 unconnected.
    assert set(statuses) == {s.value for s in ConnectionStatus} - {"NOT_CONNECTED"}
    assert statuses.most_common(1)[0][0] == ConnectionStatus.ACTIVE.value
    assert 0.20 <= statuses[ConnectionStatus.ACTIVE.value] / 240 <= 0.50
    assert 0.12 <= not_connected / 240 <= 0.40
    assert 0 < stale < not_connected
    assert deadlines, "restricted accounts have deadlines"
    # Each connected freelancer's last attempt succeeded with their account; every outcome,
    # every failure reason, every ledger state and webhook status occurs.
    assert succeeded_with_account == sum(statuses.values())
    assert set(outcomes) == {o.value for o in AttemptOutcome}
    assert reasons == {"access_denied", "invalid_state", "exchange_failed", "server_error",
                       "missing_parameters", "account_already_connected"}
    assert set(payouts) == {s.value for s in PayoutStatus}
    assert payouts.most_common(1)[0][0] == PayoutStatus.PAID.value
    assert reversals == payouts[PayoutStatus.REVERSED.value]
    assert set(events) == {s.value for s in WebhookStatus}
    # The requirement index was rebuilt from the attached accounts.
    assert index_rows == sum(len(codes_of(r)) for (r,) in attached) > 0


def test_ids_continue_after_the_generated_rows(engine, session_factory) -> None:
    """PostgreSQL sequences are moved past the ids the generator chose (the app inserts later)."""
    generate(engine, Sizes.scaled(20), seed=1)
    with session_factory.begin() as session:
        entry = AuditLog(actor="admin", action="auth.login", result="ok")
        session.add(entry)
        session.flush()
        assert entry.id == Sizes.scaled(20).audit_entries + 1


def test_an_existing_database_is_reused_until_its_record_differs(bench_location) -> None:
    backend = bench_location
    sizes = Sizes.scaled(12)
    url = ensure_database(backend, "reuse", sizes, seed=5)
    engine = make_engine(url)
    try:
        first = read_marker(engine)
        assert first is not None
        assert first["sizes"]["accounts"] == 12 and first["seed"] == 5
        assert first["alembic_head"] and first["counts"]["freelancers"] == 12
        assert matches(engine, sizes, 5)
        assert not matches(engine, sizes, 6)
        assert not matches(engine, Sizes.scaled(13), 5)
    finally:
        engine.dispose()

    assert ensure_database(backend, "reuse", sizes, seed=5) == url
    engine = make_engine(url)
    try:
        assert read_marker(engine) == first        # reused: not generated again
    finally:
        engine.dispose()

    ensure_database(backend, "reuse", sizes, seed=6)
    engine = make_engine(url)
    try:
        again = read_marker(engine)
        assert again is not None and again["seed"] == 6
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Freelancer)).scalar() == 12
    finally:
        engine.dispose()


def test_the_same_seed_and_time_give_the_same_rows(tmp_path) -> None:
    """Determinism: ``ensure_database`` reuses a database by its seed, so a seed is its rows."""
    from datetime import UTC, datetime

    from lib.migrate import upgrade

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    dumps = []
    for name in ("first", "second", "third"):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        try:
            upgrade(engine)
            generate(engine, Sizes.scaled(60), seed=4 if name != "third" else 5, now=now)
            with engine.connect() as conn:
                dumps.append({model.__tablename__: conn.execute(
                    select(model.__table__).order_by(*model.__table__.primary_key)).all()
                    for model in (Freelancer, ConnectedAccount, ConnectionAttempt, Payout,
                                  PayoutReversal, WebhookEvent, AuditLog, RequirementCode)})
        finally:
            engine.dispose()
    assert dumps[0] == dumps[1]
    assert dumps[0]["freelancers"] != dumps[2]["freelancers"]


@pytest.mark.parametrize("drop_triggers", [True, False])
def test_the_summaries_equal_a_recount_after_the_load(engine, drop_triggers) -> None:
    """Issue 22: the load (triggers dropped, or firing per row) ends with summaries equal to a
    recount and the triggers in place, so the next write moves them."""
    from lib.db import make_session_factory
    from lib.summaries import maintenance

    generate(engine, Sizes.scaled(10), seed=2, drop_triggers=drop_triggers)
    factory = make_session_factory(engine)
    with factory() as session:
        assert maintenance.check(session).ok
        before = maintenance.stored(session)[0]
    with factory.begin() as session:
        session.add(Freelancer(name="After", email="after@example.com"))
    with factory() as session:
        assert maintenance.check(session).ok
        assert maintenance.stored(session)[0] != before


def test_a_database_from_an_older_schema_is_migrated_in_place(bench_location) -> None:
    """Issue 22: migrations 0013, 0016, 0017 and 0018 create and backfill the summaries of an
    existing database (and 0016–0018 downgrade cleanly);
    the benchmark's databases take that path instead of being generated again."""
    from lib.db import make_session_factory
    from lib.migrate import downgrade
    from lib.summaries import maintenance

    backend = bench_location
    sizes = Sizes.scaled(12)
    url = ensure_database(backend, "older", sizes, seed=3)
    engine = make_engine(url)
    try:
        generated = read_marker(engine)
        assert generated is not None
        downgrade(engine, "0012")                  # as if generated before issue 22
        write_marker(engine, generated | {"alembic_head": "0012"})
        assert not matches(engine, sizes, 3)
    finally:
        engine.dispose()

    migrated = _migrated_not_generated(backend, sizes, url, generated)
    assert migrated["alembic_head"] == generated["alembic_head"]
    engine = make_engine(url)
    try:
        assert matches(engine, sizes, 3)
        with make_session_factory(engine)() as session:
            result = maintenance.check(session)
            assert result.ok and result.keys_compared > 10   # backfilled, not empty
            # 0016 too: the funnel's per-freelancer rows, and their per-day counts.
            kinds = {key[0] for key in maintenance.stored(session)[0]}
            assert {"funnel_issued", "funnel_returned", "funnel_connected"} <= kinds
            assert _every_account_keys(session)
        # 0018 alone: the requirements kind gains its every-account key (and loses it going
        # back down, so the older schema's check holds there). The record still names the
        # newest revision, as a build that ran while a migration was written records it: the
        # schema's own revision decides.
        downgrade(engine, "0017")
        with make_session_factory(engine)() as session:
            assert not _every_account_keys(session)
        recorded = read_marker(engine)
        assert recorded is not None and recorded["alembic_head"] == generated["alembic_head"]
    finally:
        engine.dispose()
    _migrated_not_generated(backend, sizes, url, generated)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            assert _every_account_keys(session) and maintenance.check(session).ok
    finally:
        engine.dispose()


def _migrated_not_generated(backend: str, sizes: Sizes, url: str,
                            generated: dict[str, Any]) -> dict[str, Any]:
    """``ensure_database`` again: the same database, migrated in place, not generated anew."""
    assert ensure_database(backend, "older", sizes, seed=3) == url
    engine = make_engine(url)
    try:
        marker = read_marker(engine)
    finally:
        engine.dispose()
    assert marker is not None and marker["generated_at"] == generated["generated_at"]
    assert "migrated_in_seconds" in marker
    return marker


def _every_account_keys(session) -> int:
    """How many deadline days hold the Requirements total's key (migration 0018)."""
    from lib.summaries import maintenance
    from lib.summaries.requirements import EVERY_ACCOUNT, KIND

    return sum(1 for key in maintenance.stored(session)[0]
               if key[0] == KIND and (key[2], key[3]) == EVERY_ACCOUNT)
