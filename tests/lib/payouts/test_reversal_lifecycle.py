"""Reversals get the payout's lifecycle (issue 17, defect 2): claim, conditional finish, window,
two-person approval above the threshold, a token and the likely-duplicate guard."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from lib.errors import ConflictError, PermissionDeniedError
from lib.models import AuditLog, Payout, PayoutReversal, PayoutStatus, ReversalStatus
from lib.payouts.approval import approve_payout
from lib.payouts.duplicates import LikelyDuplicateError
from lib.payouts.execution import execute_payout
from lib.payouts.reversal import (
    approve_reversal,
    execute_reversal,
    reject_reversal,
    request_reversal,
    retry_unsettled_reversals,
    reverse_payout,
)
from tests.factories import make_settings
from tests.lib.payouts.conftest import StripeWorld
from tests.lib.payouts.helpers import ADMIN, ADMIN_2, FINANCE
from tests.lib.payouts.test_execution import _request


def _paid(world: StripeWorld, amount: str = "25.00", token: str = "t") -> Payout:
    world.emu.set_balance(1_000_000, "usd")
    freelancer = world.freelancer(email=f"{token}@example.com")
    payout_id = _request(world, freelancer.id, token=token, amount=amount)
    with world.session_factory.begin() as session:
        if session.get_one(Payout, payout_id).status == PayoutStatus.PENDING_APPROVAL:
            approve_payout(session, operator=FINANCE, payout_id=payout_id)
    payout = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                            operator=ADMIN)
    assert payout.status == PayoutStatus.PAID
    return payout


def _reversal(world: StripeWorld, reversal_id: int) -> PayoutReversal:
    with world.session_factory() as session:
        row = session.get(PayoutReversal, reversal_id)
        assert row is not None
        return row


def _reserved(world: StripeWorld, payout_id: int) -> int:
    with world.session_factory() as session:
        return session.get_one(Payout, payout_id).amount_reversed_minor


def _stripe_reversed(world: StripeWorld, payout: Payout) -> int:
    assert payout.stripe_transfer_id is not None
    return int(world.gateway.retrieve_transfer(payout.stripe_transfer_id)["amount_reversed"])


def test_two_retries_of_one_refused_reversal_release_its_reservation_once(world):
    """Two executors of one unknown reversal whose key Stripe answers with a saved refusal.

    Before the claim both sent, both got the (replayed) refusal and both released the amount:
    the reservation counted less than was really reversed, so more could be reversed later.
    """
    payout = _paid(world)
    first = reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                           operator=ADMIN, payout_id=payout.id, amount="10.00", reason="part")
    assert first.status == ReversalStatus.SUCCEEDED
    # The freelancer spent the rest: Stripe will refuse the next reversal (and save the refusal).
    world.emu.set_balance(0, "usd", account=payout.stripe_account_id)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers/", method="POST")
    second = reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                            operator=ADMIN, payout_id=payout.id, amount="15.00", reason="rest")
    assert second.status == ReversalStatus.UNKNOWN
    assert _reserved(world, payout.id) == 2500
    # Both retries are in flight at once: the first is held after Stripe replayed the refusal.
    world.emu.inject_fault("delay", path="/v1/transfers/", method="POST", seconds=1.0,
                           phase="after")
    results: list[PayoutReversal] = []
    threads = [threading.Thread(target=lambda: results.append(execute_reversal(
        world.session_factory, gateway=world.gateway, operator=ADMIN, reversal_id=second.id)))
        for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.emu.wait_idle()
    final = _reversal(world, second.id)
    assert final.status == ReversalStatus.FAILED and final.error_code == "balance_insufficient"
    assert _reserved(world, payout.id) == 1000 == _stripe_reversed(world, payout)


def test_a_late_answer_never_overwrites_a_settled_reversal(world):
    payout = _paid(world)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers/", method="POST")
    reversal = reverse_payout(world.session_factory, gateway=world.gateway,
                              settings=world.settings, operator=ADMIN, payout_id=payout.id,
                              amount=None, reason="cancelled")
    assert reversal.status == ReversalStatus.UNKNOWN
    done = execute_reversal(world.session_factory, gateway=world.gateway, operator=ADMIN,
                            reversal_id=reversal.id)
    assert done.status == ReversalStatus.SUCCEEDED
    again = execute_reversal(world.session_factory, gateway=world.gateway, operator=ADMIN,
                             reversal_id=reversal.id)
    assert again.status == ReversalStatus.SUCCEEDED
    with world.session_factory() as session:
        assert session.get(Payout, payout.id).status == PayoutStatus.REVERSED
    assert _stripe_reversed(world, payout) == 2500 == _reserved(world, payout.id)


def test_an_unknown_reversal_past_the_key_window_is_never_sent_again(world):
    payout = _paid(world)
    world.emu.inject_fault("http_500", path="/v1/transfers/", method="POST")
    reversal = reverse_payout(world.session_factory, gateway=world.gateway,
                              settings=world.settings, operator=ADMIN, payout_id=payout.id,
                              amount=None, reason="cancelled")
    assert reversal.status == ReversalStatus.UNKNOWN
    with world.session_factory.begin() as session:
        row = session.get(PayoutReversal, reversal.id)
        row.submitted_at -= timedelta(hours=25)
        row.created_at -= timedelta(hours=25)
    world.emu.advance_clock(25 * 3600)
    with pytest.raises(ConflictError, match="reconcile"):
        execute_reversal(world.session_factory, gateway=world.gateway, operator=ADMIN,
                         reversal_id=reversal.id)
    assert retry_unsettled_reversals(world.session_factory, gateway=world.gateway,
                                     operator=ADMIN) == []
    assert _stripe_reversed(world, payout) == 0
    assert _reversal(world, reversal.id).status == ReversalStatus.UNKNOWN


def test_the_sweeper_settles_unknown_reversals_with_their_keys(world):
    payout = _paid(world)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers/", method="POST")
    reversal = reverse_payout(world.session_factory, gateway=world.gateway,
                              settings=world.settings, operator=ADMIN, payout_id=payout.id,
                              amount="5.00", reason="fee")
    assert reversal.status == ReversalStatus.UNKNOWN
    (swept,) = retry_unsettled_reversals(world.session_factory, gateway=world.gateway,
                                         operator=ADMIN)
    assert swept.status == ReversalStatus.SUCCEEDED and _stripe_reversed(world, payout) == 500


def test_a_large_reversal_waits_for_a_second_operator(world):
    settings = make_settings(stripe_api_base=world.emu.base_url,
                             stripe_connect_base=world.emu.base_url,
                             payout_approval_threshold_minor=100_000)
    payout = _paid(world, amount="3000.00")
    # Approved by a second operator: the payout itself was above the threshold.
    reversal = reverse_payout(world.session_factory, gateway=world.gateway, settings=settings,
                              operator=ADMIN, payout_id=payout.id, amount="1500.00",
                              reason="duplicate invoice")
    assert reversal.status == ReversalStatus.PENDING_APPROVAL
    assert _reserved(world, payout.id) == 150_000 and _stripe_reversed(world, payout) == 0
    with pytest.raises(ConflictError, match="approval"):
        execute_reversal(world.session_factory, gateway=world.gateway, operator=ADMIN,
                         reversal_id=reversal.id)
    with world.session_factory.begin() as session, pytest.raises(PermissionDeniedError):
        approve_reversal(session, operator=ADMIN, reversal_id=reversal.id)
    with world.session_factory.begin() as session:
        approve_reversal(session, operator=FINANCE, reversal_id=reversal.id)
    done = execute_reversal(world.session_factory, gateway=world.gateway, operator=ADMIN,
                            reversal_id=reversal.id)
    assert done.status == ReversalStatus.SUCCEEDED and done.approved_by == "fiona"
    assert _stripe_reversed(world, payout) == 150_000


def test_a_rejected_reversal_releases_its_reservation_and_sent_ones_cannot_be_rejected(world):
    payout = _paid(world, amount="3000.00")
    pending = request_reversal(world.session_factory, operator=ADMIN, payout_id=payout.id,
                               amount="2000.00", reason="x", settings=world.settings)
    assert pending.status == ReversalStatus.PENDING_APPROVAL
    with world.session_factory.begin() as session:
        reject_reversal(session, operator=ADMIN_2, reversal_id=pending.id, reason="not agreed")
    assert _reserved(world, payout.id) == 0
    small = reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                           operator=ADMIN, payout_id=payout.id, amount="10.00", reason="fee")
    with world.session_factory.begin() as session, pytest.raises(ConflictError):
        reject_reversal(session, operator=ADMIN_2, reversal_id=small.id, reason="too late")
    assert _reserved(world, payout.id) == 1000 == _stripe_reversed(world, payout)


def test_a_token_returns_the_same_reversal_and_the_guard_names_the_earlier_one(world):
    settings = make_settings(stripe_api_base=world.emu.base_url,
                             stripe_connect_base=world.emu.base_url,
                             payout_duplicate_window_days=7)
    payout = _paid(world)
    kwargs = {"operator": ADMIN, "payout_id": payout.id, "amount": "5.00", "reason": "fee",
              "settings": settings}
    first = request_reversal(world.session_factory, client_request_token="api:alice:r1", **kwargs)
    again = request_reversal(world.session_factory, client_request_token="api:alice:r1", **kwargs)
    assert again.id == first.id
    with pytest.raises(LikelyDuplicateError) as refused:
        request_reversal(world.session_factory, **kwargs)
    assert refused.value.earlier_id == first.id and f"#{first.id}" in refused.value.message
    second = request_reversal(world.session_factory, confirm_duplicate_of=first.id, **kwargs)
    assert second.id != first.id and _reserved(world, payout.id) == 1000
    with world.session_factory() as session:
        results = [e.result for e in session.scalars(
            select(AuditLog).where(AuditLog.action == "payout.reverse").order_by(AuditLog.id))]
    assert results == ["pending", "duplicate", "refused:likely_duplicate", "pending"]
