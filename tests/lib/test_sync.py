"""Sync and backfill from the emulator through the unmodified SDK."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from lib.accounts import get_account, upsert_account
from lib.db import make_session_factory, utcnow
from lib.errors import PermissionDeniedError
from lib.freelancers import create_freelancer
from lib.models import AuditLog, ConnectedAccount, ConnectionAttempt
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway
from lib.sync import main, refresh_account, sync_all_accounts
from tests.factories import make_settings

ADMIN = Operator.from_role_names("alice", ["admin"])


@pytest.fixture
def gateway(emulator) -> StripeGateway:
    return StripeGateway(make_settings(stripe_api_base=emulator.base_url,
                                       stripe_connect_base=emulator.base_url))


def _accounts(gateway: StripeGateway, n: int) -> list[str]:
    return [gateway.create_express_account(email=f"f{i}@example.com", country="US", metadata={},
                                           idempotency_key=f"sync-{i}").id for i in range(n)]


def _mirrored(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(ConnectedAccount))


def test_backfill_pages_through_every_account(gateway, emulator, session_factory) -> None:
    ids = _accounts(gateway, 7)
    progress: list[tuple[int, bool]] = []
    report = sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN,
                               progress=lambda n, more: progress.append((n, more)), page_size=3)
    total = len(ids)  # only connected accounts are listed, as on Stripe
    assert report.synced == total and report.pages == 3
    assert progress == [(3, True), (6, True), (total, False)]
    assert _mirrored(session_factory) == total
    with session_factory() as session:
        assert all(get_account(session, stripe_id=i) is not None for i in ids)
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "sync.all_accounts")).one()
    assert audit.input["synced"] == total


def test_sync_is_idempotent_and_reflects_changes(gateway, emulator, session_factory) -> None:
    account_id = _accounts(gateway, 1)[0]
    sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN)
    emulator.set_account(account_id, onboarding="complete")
    sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN)
    with session_factory() as session:
        assert get_account(session, stripe_id=account_id).status == "ACTIVE"
    assert _mirrored(session_factory) == 1


def test_rate_limit_backs_off_and_retries_the_same_page(gateway, emulator,
                                                        session_factory) -> None:
    _accounts(gateway, 4)
    emulator.inject_fault("rate_limit", "/v1/accounts", method="GET", count=2)
    sleeps: list[float] = []
    report = sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN,
                               page_size=100, sleep=sleeps.append)
    assert report.rate_limited == 2 and sleeps == [1.0, 2.0]
    assert report.synced == 4


def test_newer_webhook_data_is_not_overwritten_by_a_slower_sync(gateway, emulator,
                                                                session_factory) -> None:
    account_id = _accounts(gateway, 1)[0]
    emulator.set_account(account_id, onboarding="complete")
    newer = gateway.retrieve_account(account_id).data
    with session_factory.begin() as session:
        # A webhook already stored a fetch made "in the future" relative to the sync's page.
        upsert_account(session, account=dict(newer, email="newer@example.com"),
                       fetched_at=utcnow().replace(year=utcnow().year + 1))
    report = sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN)
    assert report.skipped_stale == 1
    with session_factory() as session:
        assert get_account(session, stripe_id=account_id).email == "newer@example.com"


def test_refresh_one_account_and_roles(gateway, emulator, session_factory) -> None:
    account_id = _accounts(gateway, 1)[0]
    assert refresh_account(session_factory, gateway=gateway, operator=ADMIN,
                           account_id=account_id)
    finance = Operator.from_role_names("fiona", ["finance"])
    with pytest.raises(PermissionDeniedError):
        sync_all_accounts(session_factory, gateway=gateway, operator=finance)
    with pytest.raises(PermissionDeniedError):
        refresh_account(session_factory, gateway=gateway, operator=finance, account_id=account_id)


def test_command_line(emulator, database_url, engine, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_cli")
    monkeypatch.setenv("STRIPE_API_BASE", emulator.base_url)
    monkeypatch.setenv("STRIPE_CONNECT_BASE", emulator.base_url)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        freelancer_id = create_freelancer(session, name="Ada", email="ada@example.com").id
        session.add(ConnectionAttempt(freelancer_id=freelancer_id, method="oauth",
                                      issued_by="admin",
                                      started_at=utcnow() - timedelta(days=2)))
    assert main([]) == 0
    with factory() as session:
        assert session.scalars(select(ConnectionAttempt.outcome)).one() == "abandoned"
    assert main(["--account", "acct_missing"]) == 1
    assert "acct_missing" in capsys.readouterr().err
    monkeypatch.delenv("STRIPE_SECRET_KEY")
    assert main([]) == 2
    assert "STRIPE_SECRET_KEY is not set" in capsys.readouterr().err
