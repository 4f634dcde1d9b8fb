"""Two people decide rows no retry may settle (issue 17): past the key window, saved 500s."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from lib.db import utcnow
from lib.errors import ConflictError, PermissionDeniedError, ValidationError
from lib.models import AuditLog, DecisionStatus, Payout, PayoutStatus
from lib.payouts.decisions import (
    awaiting_decision,
    confirm_decision,
    propose_decision,
    withdraw_decision,
)
from lib.payouts.execution import execute_payout
from tests.lib.payouts.helpers import ADMIN, ADMIN_2, FINANCE
from tests.lib.payouts.test_execution import _request


def _expired_unknown(world, *, executed: bool) -> Payout:
    """A payout whose answer was lost two days ago (Stripe did or did not execute it)."""
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault("commit_then_drop" if executed else "http_500", path="/v1/transfers",
                           method="POST")
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    with world.session_factory.begin() as session:
        row = session.get(Payout, payout_id)
        assert row is not None and row.status == PayoutStatus.UNKNOWN
        row.submitted_at = row.created_at = utcnow() - timedelta(days=2)
        return row


def _propose(world, payout, outcome, transfer=None, operator=ADMIN):
    return propose_decision(world.session_factory, gateway=world.gateway, operator=operator,
                            subject="payout", subject_id=payout.id, outcome=outcome,
                            stripe_object_id=transfer, reason="Checked Stripe's dashboard")


def test_not_paid_needs_two_people_and_no_transfer_at_stripe(world):
    payout = _expired_unknown(world, executed=False)
    with world.session_factory() as session:
        (row,) = awaiting_decision(session, operator=FINANCE)
    assert (row.subject, row.subject_id) == ("payout", payout.id) and "23 h" in row.why
    decision = _propose(world, payout, "not_paid")
    with pytest.raises(ConflictError, match="already proposed"):
        _propose(world, payout, "not_paid", operator=FINANCE)
    with pytest.raises(PermissionDeniedError, match="second operator"):
        confirm_decision(world.session_factory, gateway=world.gateway, operator=ADMIN,
                         decision_id=decision.id)
    with world.session_factory() as session:
        assert session.get(Payout, payout.id).status == PayoutStatus.UNKNOWN
    done = confirm_decision(world.session_factory, gateway=world.gateway, operator=FINANCE,
                            decision_id=decision.id)
    assert done.status == DecisionStatus.CONFIRMED and done.decided_by == "fiona"
    with world.session_factory() as session:
        row = session.get(Payout, payout.id)
        assert (row.status, row.error_code) == (PayoutStatus.FAILED, "decided_not_paid")
        actions = [e.action for e in session.scalars(
            select(AuditLog).where(AuditLog.action.like("payout.decision%")))]
    assert actions == ["payout.decision_propose", "payout.decision_confirm"]
    assert world.transfers() == []


def test_not_paid_is_refused_when_stripe_paid_and_paid_needs_the_right_transfer(world):
    payout = _expired_unknown(world, executed=True)
    (transfer,) = world.transfers()
    with pytest.raises(ConflictError, match=transfer["id"]):
        _propose(world, payout, "not_paid")
    with pytest.raises(ValidationError, match="tr_"):
        _propose(world, payout, "paid")
    other = world.gateway.create_transfer(amount_minor=999, currency="usd",
                                          destination=payout.stripe_account_id,
                                          idempotency_key="other-1", metadata={})
    with pytest.raises(ConflictError, match="not this payout"):
        _propose(world, payout, "paid", other.id)
    decision = _propose(world, payout, "paid", transfer["id"])
    confirm_decision(world.session_factory, gateway=world.gateway, operator=ADMIN_2,
                     decision_id=decision.id)
    with world.session_factory() as session:
        row = session.get(Payout, payout.id)
        assert (row.status, row.stripe_transfer_id) == (PayoutStatus.PAID, transfer["id"])


def test_a_saved_500_is_for_people_at_once(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault("http_500", path="/v1/transfers", method="POST")  # saved
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    with world.session_factory() as session:
        (row,) = awaiting_decision(session, operator=FINANCE)
        payout = session.get(Payout, payout_id)
    assert row.subject_id == payout_id and "saved 500" in row.why
    decision = _propose(world, payout, "not_paid")
    confirm_decision(world.session_factory, gateway=world.gateway, operator=FINANCE,
                     decision_id=decision.id)
    with world.session_factory() as session:
        assert session.get(Payout, payout_id).status == PayoutStatus.FAILED


def test_rows_a_retry_can_settle_are_not_for_people(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    # A 500 before execution (not saved under the key): a retry settles it.
    world.emu.inject_fault("http_500", path="/v1/transfers", method="POST", saved=False)
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    with world.session_factory() as session:
        assert awaiting_decision(session, operator=FINANCE) == []
        payout = session.get(Payout, payout_id)
    with pytest.raises(ConflictError, match="retrying"):
        _propose(world, payout, "not_paid")


def test_a_withdrawn_proposal_frees_the_row_for_another(world):
    payout = _expired_unknown(world, executed=False)
    first = _propose(world, payout, "not_paid")
    with world.session_factory.begin() as session:
        withdraw_decision(session, operator=FINANCE, decision_id=first.id, reason="wrong row")
    second = _propose(world, payout, "not_paid", operator=FINANCE)
    assert second.id != first.id and second.status == DecisionStatus.OPEN
