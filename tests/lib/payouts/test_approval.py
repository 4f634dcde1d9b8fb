"""Two-person approval, enforced in lib: roles, self-approval, races, rejection reasons."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.errors import ConflictError, ConnectOpsError, PermissionDeniedError, ValidationError
from lib.models import AuditLog, Payout, PayoutStatus
from lib.payouts.approval import approve_payout, reject_payout
from lib.payouts.ledger import request_payout
from lib.roles import Operator, Role, canonical_username
from tests.factories import make_settings
from tests.lib.payouts.helpers import ADMIN, ADMIN_2, FINANCE, FINANCE_2, MANAGER, add_freelancer

SETTINGS = make_settings(payout_approval_threshold_minor=100_000)


def _big_payout(session_factory: sessionmaker[Session], amount: str = "2500.00") -> int:
    with session_factory.begin() as session:
        freelancer = add_freelancer(session)
        payout = request_payout(
            session, operator=ADMIN, freelancer_id=freelancer.id, amount=amount, currency="usd",
            description="big", client_request_token=None, settings=SETTINGS,
        )
        return payout.id


def _status(session_factory: sessionmaker[Session], payout_id: int) -> Payout:
    with session_factory() as session:
        payout = session.get(Payout, payout_id)
        assert payout is not None
        return payout


def test_finance_approves_another_operators_request(session_factory):
    payout_id = _big_payout(session_factory)
    assert _status(session_factory, payout_id).status == PayoutStatus.PENDING_APPROVAL
    with session_factory.begin() as session:
        payout = approve_payout(session, operator=FINANCE, payout_id=payout_id)
    assert payout.status == PayoutStatus.PENDING
    row = _status(session_factory, payout_id)
    assert row.approved_by == "fiona" and row.approved_at is not None


def test_another_admin_may_approve(session_factory):
    payout_id = _big_payout(session_factory)
    with session_factory.begin() as session:
        assert approve_payout(session, operator=ADMIN_2, payout_id=payout_id).status == "pending"


def test_requester_can_never_approve_their_own_even_as_admin(session_factory):
    payout_id = _big_payout(session_factory)
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError, match="second"):
        approve_payout(session, operator=ADMIN, payout_id=payout_id,
                       audit_refusals_with=session_factory)
    assert _status(session_factory, payout_id).status == PayoutStatus.PENDING_APPROVAL
    with session_factory() as session:
        refusal = session.scalars(
            select(AuditLog).where(AuditLog.action == "payout.approve")
        ).one()
    assert refusal.result == "refused:permission_denied" and refusal.actor == "alice"


def test_manager_cannot_approve_or_reject(session_factory):
    payout_id = _big_payout(session_factory)
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError):
        approve_payout(session, operator=MANAGER, payout_id=payout_id)
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError):
        reject_payout(session, operator=MANAGER, payout_id=payout_id, reason="no")
    assert _status(session_factory, payout_id).status == PayoutStatus.PENDING_APPROVAL


def test_below_threshold_needs_no_approval_and_cannot_be_approved(session_factory):
    payout_id = _big_payout(session_factory, amount="999.99")
    assert _status(session_factory, payout_id).status == PayoutStatus.PENDING
    with session_factory.begin() as session, pytest.raises(ConflictError, match="not awaiting"):
        approve_payout(session, operator=FINANCE, payout_id=payout_id)


def test_approving_twice_is_a_conflict(session_factory):
    payout_id = _big_payout(session_factory)
    with session_factory.begin() as session:
        approve_payout(session, operator=FINANCE, payout_id=payout_id)
    with session_factory.begin() as session, pytest.raises(ConflictError):
        approve_payout(session, operator=FINANCE_2, payout_id=payout_id)


def test_concurrent_approvers_one_wins(session_factory):
    payout_id = _big_payout(session_factory)
    operators = [FINANCE, FINANCE_2, ADMIN_2] * 4
    barrier = threading.Barrier(len(operators))
    outcomes: list[str] = []
    lock = threading.Lock()

    def decide(operator) -> None:
        barrier.wait()
        try:
            with session_factory.begin() as session:
                approve_payout(session, operator=operator, payout_id=payout_id)
            result = "won"
        except ConnectOpsError as exc:
            result = exc.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=decide, args=(op,)) for op in operators]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1
    assert set(outcomes) == {"won", "conflict"}
    with session_factory() as session:
        approvals = session.scalars(
            select(AuditLog).where(AuditLog.action == "payout.approve",
                                   AuditLog.result == "approved")
        ).all()
    assert len(approvals) == 1


def test_reject_needs_a_reason_and_records_it(session_factory):
    payout_id = _big_payout(session_factory)
    with session_factory.begin() as session, pytest.raises(ValidationError, match="reason"):
        reject_payout(session, operator=FINANCE, payout_id=payout_id, reason="  ")
    with session_factory.begin() as session:
        payout = reject_payout(session, operator=FINANCE, payout_id=payout_id,
                               reason="Duplicate of invoice 7")
    assert payout.status == PayoutStatus.REJECTED
    row = _status(session_factory, payout_id)
    assert row.rejected_by == "fiona" and row.rejection_reason == "Duplicate of invoice 7"
    with session_factory.begin() as session, pytest.raises(ConflictError):
        approve_payout(session, operator=FINANCE_2, payout_id=payout_id)
    with session_factory.begin() as session, pytest.raises(ConflictError):
        reject_payout(session, operator=FINANCE_2, payout_id=payout_id, reason="again")


def test_requester_may_withdraw_their_own_request(session_factory):
    payout_id = _big_payout(session_factory)
    with session_factory.begin() as session:
        assert reject_payout(session, operator=ADMIN, payout_id=payout_id,
                             reason="typo").status == "rejected"


def test_unknown_payout(session_factory):
    with session_factory.begin() as session, pytest.raises(ConnectOpsError) as info:
        approve_payout(session, operator=FINANCE, payout_id=12345)
    assert info.value.code == "not_found"


# ---- one identity per operator across dashboard, API tokens and CLI (issue 17, defect 5) --------

_ALICE_API = Operator("Alice", frozenset({Role.ADMIN}))  # an API token's subject as typed
_ALICE_DASHBOARD = Operator("alice", frozenset({Role.ADMIN}))  # streamlit-authenticator lowers


@pytest.mark.parametrize("spelling", ["Alice", "ALICE", " alice ", "ａｌｉｃｅ"])
def test_a_request_under_one_spelling_cannot_be_approved_under_another(session_factory, spelling):
    with session_factory.begin() as session:
        freelancer = add_freelancer(session)
        payout_id = request_payout(
            session, operator=Operator(spelling, frozenset({Role.ADMIN})),
            freelancer_id=freelancer.id, amount="2500.00", currency="usd", description="big",
            client_request_token=None, settings=SETTINGS,
        ).id
    assert _status(session_factory, payout_id).requested_by == "alice"
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError, match="second"):
        approve_payout(session, operator=_ALICE_DASHBOARD, payout_id=payout_id)
    assert _status(session_factory, payout_id).status == PayoutStatus.PENDING_APPROVAL


def test_a_row_written_before_canonical_names_still_binds_its_requester(session_factory):
    """Rows written with a mixed-case requester keep the two-person rule."""
    payout_id = _big_payout(session_factory)
    with session_factory.begin() as session:
        session.get(Payout, payout_id).requested_by = "Arthur"
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError):
        approve_payout(session, operator=ADMIN_2, payout_id=payout_id)
    with session_factory.begin() as session:
        assert approve_payout(session, operator=_ALICE_API, payout_id=payout_id).status == "pending"


def test_operator_names_are_canonical():
    assert _ALICE_API.username == "alice" == _ALICE_DASHBOARD.username
    assert canonical_username("Straße") == canonical_username("STRASSE")
    assert _ALICE_API.is_same_person("ALICE") and not _ALICE_API.is_same_person(None)
