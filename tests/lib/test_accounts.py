from datetime import UTC, datetime, timedelta

from lib.accounts import get_account, mark_deauthorized, upsert_account, upsert_accounts
from tests.lib.test_account_status import account

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_upsert_inserts_with_promoted_columns(session_factory) -> None:
    acct = account(country="US", requirements={"currently_due": ["a", "b"],
                                                "current_deadline": 1_900_000_000})
    with session_factory.begin() as session:
        assert upsert_account(session, account=acct, fetched_at=T0)
    with session_factory() as session:
        row = get_account(session, stripe_id="acct_1")
        assert row is not None
        assert row.status == "RESTRICTED"
        assert row.currently_due_count == 2
        assert row.current_deadline == datetime.fromtimestamp(1_900_000_000, tz=UTC)
        assert row.transfers_capability == "active"
        assert row.raw["id"] == "acct_1"


def test_older_fetch_never_overwrites_newer(session_factory) -> None:
    newer = account(payouts_enabled=False, requirements={"past_due": ["x"]})
    older = account()
    with session_factory.begin() as session:
        upsert_account(session, account=newer, fetched_at=T0 + timedelta(seconds=5))
    with session_factory.begin() as session:
        assert upsert_account(session, account=older, fetched_at=T0) is False
    with session_factory() as session:
        row = get_account(session, stripe_id="acct_1")
        assert row is not None and row.status == "DISABLED"


def test_newer_fetch_overwrites(session_factory) -> None:
    with session_factory.begin() as session:
        upsert_account(session, account=account(payouts_enabled=False,
                                                 requirements={"past_due": ["x"]}), fetched_at=T0)
    with session_factory.begin() as session:
        assert upsert_account(session, account=account(), fetched_at=T0 + timedelta(seconds=1))
    with session_factory() as session:
        row = get_account(session, stripe_id="acct_1")
        assert row is not None and row.status == "ACTIVE" and row.past_due_count == 0


def test_mark_deauthorized_keeps_row(session_factory) -> None:
    with session_factory.begin() as session:
        upsert_account(session, account=account(), fetched_at=T0)
    with session_factory.begin() as session:
        mark_deauthorized(session, stripe_id="acct_1", at=T0)
        mark_deauthorized(session, stripe_id="acct_unknown", at=T0)
    with session_factory() as session:
        row = get_account(session, stripe_id="acct_1")
        assert row is not None and row.deauthorized_at == T0


def test_a_page_writes_only_the_rows_it_is_newer_than(session_factory) -> None:
    """One page, several rows: the guard is per row, and the count says what was written."""
    ids = [f"acct_{n}" for n in range(250)]
    with session_factory.begin() as session:
        upsert_account(session, account=account(id="acct_7", email="webhook@example.com",
                                                 requirements={"past_due": ["x"]}),
                       fetched_at=T0 + timedelta(seconds=5))
        upsert_account(session, account=account(id="acct_200", email="old@example.com"),
                       fetched_at=T0 - timedelta(seconds=5))
    page = [account(id=stripe_id, email=f"{stripe_id}@example.com") for stripe_id in ids]
    with session_factory.begin() as session:
        assert upsert_accounts(session, accounts=page, fetched_at=T0) == 249
    with session_factory.begin() as session:
        assert upsert_accounts(session, accounts=page[:3], fetched_at=T0 - timedelta(1)) == 0
    with session_factory() as session:
        kept = get_account(session, stripe_id="acct_7")
        assert kept is not None and kept.email == "webhook@example.com"
        assert kept.past_due_count == 1 and kept.raw["email"] == "webhook@example.com"
        assert kept.synced_at == T0 + timedelta(seconds=5)
        for stripe_id in ("acct_0", "acct_200", "acct_249"):
            row = get_account(session, stripe_id=stripe_id)
            assert row is not None and row.email == f"{stripe_id}@example.com"
            assert row.raw["email"] == row.email and row.synced_at == T0


def test_the_mirror_keeps_exactly_what_stripe_sent(session_factory) -> None:
    """Raw object and promoted columns survive the page upsert unchanged on both databases."""
    acct = account(id="acct_raw", email="zoë.o'brien+\"q\"@example.com", country="DE",
                   created=1_700_000_123, livemode=False,
                   requirements={"currently_due": ["individual.dob.day"],
                                 "current_deadline": 1_900_000_000},
                   business_profile={"name": "Café \\ Ünïcode ✓", "mcc": None,
                                     "support_phone": "+49 30 123"},
                   metadata={"freelancer_id": "42", "nested": "[1, {\"a\": null}]"})
    at = datetime(2026, 11, 1, 12, 30, 45, 123456, tzinfo=UTC)
    with session_factory.begin() as session:
        assert upsert_accounts(session, accounts=[acct], fetched_at=at) == 1
    with session_factory() as session:
        row = get_account(session, stripe_id="acct_raw")
        assert row is not None
        assert row.raw == acct
        assert row.email == acct["email"] and row.country == "DE" and row.livemode is False
        assert row.synced_at == at
        assert row.stripe_created == datetime.fromtimestamp(1_700_000_123, tz=UTC)
        assert row.current_deadline == datetime.fromtimestamp(1_900_000_000, tz=UTC)
        assert row.requirements == acct["requirements"] and row.currently_due_count == 1
        assert row.charges_enabled is True and row.deauthorized_at is None
