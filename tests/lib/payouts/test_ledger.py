"""Requesting payouts: the ledger row, its key, double submits, refusals that write nothing."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from lib.models import AuditLog, Payout, PayoutStatus
from lib.money import Money, MoneyError
from lib.payouts.ledger import needs_approval, request_payout
from lib.roles import Operator
from tests.factories import make_settings
from tests.lib.payouts.helpers import ADMIN, FINANCE, MANAGER, add_freelancer, payout_count

SETTINGS = make_settings(payout_approval_threshold_minor=100_000, payout_max_minor=5_000_000)


def _request(session: Session, freelancer_id: int, amount: Any = "100.50",
             currency: str = "usd", token: str | None = "tok-1", *,
             operator: Operator = ADMIN, **kw: Any) -> Payout:
    """A request as the form sends it; ``amount`` is Any: the refusals of a float are tested."""
    return request_payout(
        session, operator=operator, freelancer_id=freelancer_id, amount=amount,
        currency=currency, description="June invoice", client_request_token=token,
        settings=SETTINGS, **kw,
    )


@pytest.fixture
def freelancer_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory.begin() as session:
        return add_freelancer(session).id


def test_request_writes_a_pending_row_with_an_id_derived_key(session_factory, freelancer_id):
    with session_factory.begin() as session:
        payout = _request(session, freelancer_id)
    assert payout.status == PayoutStatus.PENDING
    assert payout.amount_minor == 10050 and payout.currency == "usd"
    assert payout.idempotency_key.startswith(f"connectops-payout-{payout.id}-")
    assert payout.stripe_account_id is not None
    assert payout.requested_by == "alice"
    with session_factory() as session:
        entries = session.scalars(select(AuditLog).where(AuditLog.action == "payout.request")).all()
    assert [e.result for e in entries] == ["pending"]
    assert entries[0].idempotency_key == payout.idempotency_key


def test_keys_differ_between_rows_even_across_databases(session_factory, freelancer_id):
    with session_factory.begin() as session:
        a = _request(session, freelancer_id, token="a")
        b = _request(session, freelancer_id, token="b")
    assert a.idempotency_key != b.idempotency_key
    # The nonce makes payout 1 of another database a different key.
    assert a.idempotency_key.rsplit("-", 1)[1] != b.idempotency_key.rsplit("-", 1)[1]


def test_same_token_twice_returns_the_same_row(session_factory, freelancer_id):
    with session_factory.begin() as session:
        first = _request(session, freelancer_id)
    with session_factory.begin() as session:
        second = _request(session, freelancer_id, amount="100.5")
    assert second.id == first.id
    assert payout_count(session_factory) == 1


@pytest.mark.parametrize("change", [{"amount": "100.51"}, {"currency": "eur"}, {"other": True}])
def test_token_reused_for_another_payout_is_a_conflict(session_factory, freelancer_id, change):
    with session_factory.begin() as session:
        _request(session, freelancer_id)
        other_id = add_freelancer(session).id
    with session_factory.begin() as session:
        target = other_id if change.pop("other", False) else freelancer_id
        with pytest.raises(ConflictError, match="cannot be reused"):
            _request(session, target, **change)
    assert payout_count(session_factory) == 1


@pytest.mark.parametrize(
    ("amount", "currency", "fragment"),
    [
        ("-5", "usd", "positive"), ("0", "usd", "positive"), ("1.005", "usd", "decimal"),
        ("NaN", "usd", "finite"), ("1e3", "usd", "exponent"), ("", "usd", "empty"),
        ("50000.01", "usd", "maximum"), ("10.5", "jpy", "decimals"), ("12.345", "kwd", "third"),
        ("10", "xyz", "not supported"), ("abc", "usd", "not a number"),
    ],
)
def test_bad_amounts_are_refused_and_nothing_is_written(
    session_factory, freelancer_id, amount, currency, fragment
):
    with session_factory.begin() as session, pytest.raises(MoneyError, match=fragment):
        _request(session, freelancer_id, amount=amount, currency=currency)
    assert payout_count(session_factory) == 0


def test_float_amounts_are_refused(session_factory, freelancer_id):
    with session_factory.begin() as session, pytest.raises(MoneyError, match="float"):
        _request(session, freelancer_id, amount=100.5)
    assert payout_count(session_factory) == 0


def test_decimal_and_money_inputs(session_factory, freelancer_id):
    with session_factory.begin() as session:
        a = _request(session, freelancer_id, amount=Decimal("12.30"), token="d")
        b = _request(session, freelancer_id, amount=Money(1230, "usd"), token="m")
        with pytest.raises(ValidationError, match="EUR"):
            _request(session, freelancer_id, amount=Money(1230, "eur"), token="x")
    assert a.amount_minor == b.amount_minor == 1230


def test_unknown_or_unconnected_freelancer(session_factory):
    with session_factory.begin() as session:
        lonely = add_freelancer(session, account_id=None).id
    with session_factory.begin() as session, pytest.raises(NotFoundError):
        _request(session, 999_999)
    with session_factory.begin() as session, pytest.raises(ConflictError, match="no connected"):
        _request(session, lonely)
    assert payout_count(session_factory) == 0


@pytest.mark.parametrize("operator", [FINANCE, MANAGER, None])
def test_only_admins_request(session_factory, freelancer_id, operator):
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError):
        _request(session, freelancer_id, operator=operator)
    assert payout_count(session_factory) == 0


def test_refusals_are_audited_when_a_factory_is_given(session_factory, freelancer_id):
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError):
        _request(session, freelancer_id, operator=MANAGER, audit_refusals_with=session_factory)
    with session_factory() as session:
        entry = session.scalars(select(AuditLog)).one()
    assert entry.actor == "mia" and entry.result == "refused:permission_denied"


@pytest.mark.parametrize(
    ("amount", "currency", "needs"),
    # Per currency (issue 17): derived from the USD base, ¥150,000 and KWD 300 are about $1,000.
    [("999.99", "usd", False), ("1000", "usd", True), ("149999", "jpy", False),
     ("150000", "jpy", True), ("299.990", "kwd", False), ("300", "kwd", True)],
)
def test_threshold_compares_wire_minor_units(session_factory, freelancer_id, amount, currency,
                                             needs):
    with session_factory.begin() as session:
        payout = _request(session, freelancer_id, amount=amount, currency=currency)
    expected = PayoutStatus.PENDING_APPROVAL if needs else PayoutStatus.PENDING
    assert payout.status == expected
    assert needs_approval(SETTINGS, Money(payout.amount_minor, currency)) is needs


def test_description_is_checked(session_factory, freelancer_id):
    with session_factory.begin() as session, pytest.raises(ValidationError, match="500"):
        request_payout(session, operator=ADMIN, freelancer_id=freelancer_id, amount="1",
                       currency="usd", description="x" * 501, client_request_token="t",
                       settings=SETTINGS)


def test_fifty_threads_submitting_one_request_make_one_row(session_factory, freelancer_id):
    barrier = threading.Barrier(50)
    ids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit() -> None:
        try:
            barrier.wait()
            with session_factory.begin() as session:
                payout = _request(session, freelancer_id, token="double-click")
                found = payout.id
            with lock:
                ids.append(found)
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(ids) == 50 and len(set(ids)) == 1
    assert payout_count(session_factory) == 1


# ---- the likely-duplicate guard (issue 17) -----------------------------------------------------

GUARDED = make_settings(payout_duplicate_window_days=7)


def _guarded(session, freelancer_id, *, token=None, description="June invoice", **kw):
    return request_payout(session, operator=ADMIN, freelancer_id=freelancer_id, amount="100.50",
                          currency="usd", description=description, client_request_token=token,
                          settings=GUARDED, **kw)


def test_a_second_request_for_the_same_money_names_the_first(session_factory, freelancer_id):
    from lib.payouts.duplicates import LikelyDuplicateError

    with session_factory.begin() as session:
        first = _guarded(session, freelancer_id, token="form-1")
    # Another form (another token), another tab, or an API call without Idempotency-Key.
    for token in ("form-2", None):
        with session_factory.begin() as session, pytest.raises(LikelyDuplicateError) as refused:
            _guarded(session, freelancer_id, token=token, description="  june   INVOICE ")
        assert refused.value.earlier_id == first.id and f"#{first.id}" in refused.value.message
    assert payout_count(session_factory) == 1
    # The same token is a replay, not a duplicate: the row comes back.
    with session_factory.begin() as session:
        assert _guarded(session, freelancer_id, token="form-1").id == first.id
    # Confirmed as a second payment naming the first: a new row.
    with session_factory.begin() as session:
        second = _guarded(session, freelancer_id, token="form-3", confirm_duplicate_of=first.id)
    assert second.id != first.id and payout_count(session_factory) == 2
    # Another description is another payment.
    with session_factory.begin() as session:
        assert _guarded(session, freelancer_id, description="July invoice").id not in (
            first.id, second.id)


def test_failed_rejected_or_old_payouts_are_not_duplicates(session_factory, freelancer_id):
    from datetime import timedelta

    from lib.models import Payout

    with session_factory.begin() as session:
        first = _guarded(session, freelancer_id)
        session.get(Payout, first.id).status = PayoutStatus.REJECTED
    with session_factory.begin() as session:
        second = _guarded(session, freelancer_id)
        session.get(Payout, second.id).created_at -= timedelta(days=8)
    with session_factory.begin() as session:
        assert _guarded(session, freelancer_id).id not in (first.id, second.id)
