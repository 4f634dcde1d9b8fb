"""Sync and backfill from the emulator through the unmodified SDK."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from lib.accounts import get_account, upsert_account
from lib.db import make_session_factory, utcnow
from lib.errors import PermissionDeniedError, StripeRateLimitError
from lib.freelancers import create_freelancer
from lib.models import AuditLog, ConnectedAccount, ConnectionAttempt
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway
from lib.sync import (
    MAX_ATTEMPTS,
    SyncRateLimitedError,
    main,
    refresh_account,
    sync_all_accounts,
)
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
        mirrored = get_account(session, stripe_id=account_id)
        assert mirrored is not None and mirrored.status == "ACTIVE"
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


def _mirrored_ids(session_factory) -> set[str]:
    with session_factory() as session:
        return set(session.scalars(select(ConnectedAccount.stripe_id)))


def test_rate_limit_is_capped_and_says_what_was_synced(gateway, emulator,
                                                       session_factory) -> None:
    """Issue 8: a page refused MAX_ATTEMPTS times stops the sync with a domain error."""
    ids = _accounts(gateway, 7)  # Stripe lists newest first
    listed = ids[::-1]
    sleeps: list[float] = []

    def arm_after_first_page(done: int, more: bool) -> None:
        if done == 2:  # page 2 may already be fetched (prefetch): page 2 or page 3 is refused
            emulator.inject_fault("rate_limit", "/v1/accounts", method="GET",
                                  count=MAX_ATTEMPTS)

    with pytest.raises(SyncRateLimitedError) as caught:
        sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN, page_size=2,
                          progress=arm_after_first_page, sleep=sleeps.append)
    error = caught.value
    assert isinstance(error, StripeRateLimitError) and error.code == "stripe_rate_limited"
    assert sleeps == [1.0, 2.0, 4.0, 8.0]  # MAX_ATTEMPTS attempts, exponential, then no more
    report = error.report
    assert report.synced in (2, 4) and report.pages == report.synced // 2
    assert report.rate_limited == MAX_ATTEMPTS and report.skipped_stale == 0
    # What the error says was synced is exactly what the mirror holds: a prefix of the list.
    assert _mirrored_ids(session_factory) == set(listed[:report.synced])
    assert error.resume_after == listed[report.synced - 1]
    assert f"{report.synced} account(s) in {report.pages} page(s) were synced" in error.message
    assert f"after {MAX_ATTEMPTS} attempts" in error.message
    assert error.stripe_code == "rate_limit" and error.request_id
    with session_factory() as session:
        entry = session.scalars(select(AuditLog).where(
            AuditLog.action == "sync.all_accounts")).one()
    assert entry.result == "failed:stripe_rate_limited"
    assert entry.input["synced"] == report.synced
    assert entry.input["resume_after"] == error.resume_after
    # The faults are used up: a rerun completes and writes the rest.
    rerun = sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN, page_size=2,
                              sleep=sleeps.append)
    assert rerun.synced == 7 and rerun.rate_limited == 0
    assert _mirrored_ids(session_factory) == set(ids)


def test_rate_limit_cap_is_an_argument(gateway, emulator, session_factory) -> None:
    _accounts(gateway, 1)
    emulator.inject_fault("lock_timeout", "/v1/accounts", method="GET", count=2)
    sleeps: list[float] = []
    with pytest.raises(SyncRateLimitedError) as caught:
        sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN,
                          max_attempts=2, sleep=sleeps.append)
    assert sleeps == [1.0]
    assert caught.value.stripe_code == "lock_timeout"
    assert caught.value.report.synced == 0 and caught.value.resume_after is None
    assert "0 account(s) in 0 page(s) were synced" in caught.value.message
    assert "the first page" in caught.value.message
    assert _mirrored(session_factory) == 0


def test_stripe_should_retry_false_stops_at_once(gateway, emulator, session_factory) -> None:
    _accounts(gateway, 1)
    emulator.inject_fault("lock_timeout", "/v1/accounts", method="GET", count=1,
                          should_retry=False)
    sleeps: list[float] = []
    with pytest.raises(SyncRateLimitedError) as caught:
        sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN,
                          sleep=sleeps.append)
    assert sleeps == [] and caught.value.report.rate_limited == 1
    assert "Stripe asked us not to retry" in caught.value.message
    assert sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN).synced == 1


def test_retry_after_is_honoured_within_max_backoff(gateway, emulator, session_factory) -> None:
    _accounts(gateway, 1)
    emulator.inject_fault("rate_limit", "/v1/accounts", method="GET", count=2, retry_after=5)
    sleeps: list[float] = []
    report = sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN,
                               sleep=sleeps.append, max_backoff=4.0)
    assert sleeps == [4.0, 4.0]  # Retry-After 5 s, capped at max_backoff
    assert report.rate_limited == 2 and report.synced == 1
    emulator.inject_fault("rate_limit", "/v1/accounts", method="GET", count=1, retry_after=3)
    sync_all_accounts(session_factory, gateway=gateway, operator=ADMIN, sleep=sleeps.append)
    assert sleeps[2:] == [3.0]  # longer than the first backoff (1 s): Retry-After wins


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
        mirrored = get_account(session, stripe_id=account_id)
        assert mirrored is not None and mirrored.email == "newer@example.com"


def test_refresh_one_account_and_roles(gateway, emulator, session_factory) -> None:
    account_id = _accounts(gateway, 1)[0]
    assert refresh_account(session_factory, gateway=gateway, operator=ADMIN,
                           account_id=account_id)
    finance = Operator.from_role_names("fiona", ["finance"])
    with pytest.raises(PermissionDeniedError):
        sync_all_accounts(session_factory, gateway=gateway, operator=finance)
    with pytest.raises(PermissionDeniedError):
        refresh_account(session_factory, gateway=gateway, operator=finance, account_id=account_id)


@pytest.fixture
def process_logging() -> Iterator[None]:
    """Put back the logging a CLI's ``configure_logging`` replaces for the whole process.

    Left in place, the root handler writes to this test's captured stderr after capsys closed
    it, and every later test that logs gets "--- Logging error ---" on its own stderr.
    """
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("", "stripe", "httpx", "httpcore")}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_command_line(emulator, database_url, engine, monkeypatch, tmp_path, capsys,
                      process_logging) -> None:
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


def test_default_sleep_never_waits_less_than_asked(monkeypatch) -> None:
    import lib.sync

    slept: list[float] = []
    monkeypatch.setattr("lib.sync.time.sleep", slept.append)
    for _ in range(50):
        lib.sync.jittered_sleep(2.0)
    assert all(2.0 <= s <= 3.0 for s in slept) and len(set(slept)) > 1
