"""The migrated schema is the models' schema, and the database guards what matters."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from lib.migrate import downgrade, upgrade
from lib.models import AuditLog, Base, Freelancer, OAuthState, Payout, WebhookEvent


def test_migrated_schema_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_every_model_table_exists(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def test_migrations_downgrade_and_upgrade_cleanly(engine: Engine) -> None:
    downgrade(engine)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert {t.name for t in Base.metadata.sorted_tables} <= set(inspect(engine).get_table_names())


def _freelancer(session: Session, email: str = "ada@example.com") -> Freelancer:
    freelancer = Freelancer(name="Ada", email=email)
    session.add(freelancer)
    session.flush()
    return freelancer


def test_times_come_back_aware_utc(session_factory: sessionmaker[Session]) -> None:
    moment = datetime(2026, 11, 28, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with session_factory.begin() as session:
        freelancer = _freelancer(session)
        freelancer.connected_at = moment
    with session_factory() as session:
        loaded = session.get(Freelancer, freelancer.id)
        assert loaded is not None and loaded.connected_at == moment
        assert loaded.connected_at.tzinfo is not None
        assert loaded.connected_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        with session_factory.begin() as session:
            freelancer = _freelancer(session)
            freelancer.connected_at = datetime(2026, 1, 1)


def test_idempotency_key_is_unique(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        freelancer_id = _freelancer(session).id

    def payout(session: Session) -> None:
        session.add(
            Payout(freelancer_id=freelancer_id, amount_minor=100, currency="usd",
                   idempotency_key="payout-1", requested_by="admin")
        )

    with session_factory.begin() as session:
        payout(session)
    with pytest.raises(IntegrityError):
        with session_factory.begin() as session:
            payout(session)


def test_payout_amount_must_be_positive(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        freelancer_id = _freelancer(session).id
    with pytest.raises(IntegrityError):
        with session_factory.begin() as session:
            session.add(
                Payout(freelancer_id=freelancer_id, amount_minor=0, currency="usd",
                       idempotency_key="payout-zero", requested_by="admin")
            )


def test_payout_status_is_constrained(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        freelancer_id = _freelancer(session).id
    with pytest.raises(IntegrityError):
        with session_factory.begin() as session:
            session.add(
                Payout(freelancer_id=freelancer_id, amount_minor=5, currency="usd",
                       idempotency_key="payout-odd", requested_by="admin", status="maybe")
            )


def test_event_ids_and_state_hashes_are_unique(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        session.add(WebhookEvent(stripe_event_id="evt_1", type="account.updated",
                                 endpoint="connect", payload={}))
    with pytest.raises(IntegrityError):
        with session_factory.begin() as session:
            session.add(WebhookEvent(stripe_event_id="evt_1", type="account.updated",
                                     endpoint="connect", payload={}))
    with session_factory.begin() as session:
        freelancer_id = _freelancer(session).id
        expires = datetime.now(UTC) + timedelta(hours=1)
        session.add(OAuthState(state_hash="a" * 64, freelancer_id=freelancer_id,
                               issued_by="admin", expires_at=expires))
    with pytest.raises(IntegrityError):
        with session_factory.begin() as session:
            session.add(OAuthState(state_hash="a" * 64, freelancer_id=freelancer_id,
                                   issued_by="admin", expires_at=expires))


def test_one_stripe_account_belongs_to_one_freelancer(session_factory) -> None:
    with session_factory.begin() as session:
        _freelancer(session, "a@example.com").stripe_account_id = "acct_1"
    with pytest.raises(IntegrityError):
        with session_factory.begin() as session:
            _freelancer(session, "b@example.com").stripe_account_id = "acct_1"


def test_audit_log_is_append_only_in_the_orm(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        entry = AuditLog(actor="admin", action="test", result="ok")
        session.add(entry)
    with pytest.raises(PermissionError):
        with session_factory.begin() as session:
            loaded = session.get(AuditLog, entry.id)
            assert loaded is not None
            loaded.result = "rewritten"
    with pytest.raises(PermissionError):
        with session_factory.begin() as session:
            session.delete(session.get(AuditLog, entry.id))


def test_audit_log_is_append_only_in_the_database(engine: Engine, session_factory) -> None:
    with session_factory.begin() as session:
        session.add(AuditLog(actor="admin", action="test", result="ok"))
    for statement in ("UPDATE audit_log SET result = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT result FROM audit_log")).scalar_one() == "ok"
