"""The Approvals page: a second operator approves (then it is sent) or rejects with a reason."""

from __future__ import annotations

import pytest

from lib.errors import PermissionDeniedError
from lib.models import Freelancer, Payout, PayoutStatus
from lib.payouts import approve_payout, reject_payout, request_payout
from tests.dashboard import emulator_env
from tests.dashboard.emulator_env import (
    OPERATORS,
    errors,
    open_page,
    run_page_script,
    texts,
)
from tests.factories_dashboard import add_payout

stripe_env, world = emulator_env.stripe_env, emulator_env.world  # fixtures


def big_request(world, requested_by: str = "admin") -> int:
    fid = world.freelancer(name="Bea Big")
    with world.session_factory.begin() as session:
        payout = request_payout(session, operator=OPERATORS[requested_by], freelancer_id=fid,
                                amount="1,500.00", currency="usd", description="Milestone",
                                client_request_token=None, settings=world.settings)
        assert payout.status == PayoutStatus.PENDING_APPROVAL
        return payout.id


def status_of(world, payout_id: int) -> Payout:
    with world.session_factory() as session:
        return session.get(Payout, payout_id)


@pytest.mark.parametrize("role", ["admin", "finance"])
def test_nothing_waiting_on_an_empty_database(app, stripe_env, role: str) -> None:
    at = open_page(app, "approvals.py", role)
    assert not at.exception, at.exception
    assert "Nothing is waiting for approval." in texts(at)


def test_finance_approves_and_the_payout_is_sent(app, world) -> None:
    payout_id = big_request(world)
    at = open_page(app, "approvals.py", "finance")
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["#"]) == [payout_id]
    at = at.button(key="approvals_approve").click().run()
    assert not at.exception, at.exception
    payout = status_of(world, payout_id)
    assert payout.status == PayoutStatus.PAID and payout.approved_by == "finance"
    assert f"approved and paid: Stripe transfer {payout.stripe_transfer_id}" in texts(at)
    assert "Nothing is waiting for approval." in texts(at)
    assert world.transfers() == 1


def test_own_request_cannot_be_approved(app, world) -> None:
    payout_id = big_request(world, requested_by="admin")
    at = open_page(app, "approvals.py", "admin")
    assert "You requested this payout" in texts(at)
    at = at.button(key="approvals_approve").click().run()
    assert not at.exception
    assert errors(at) == [f"admin requested payout {payout_id} and cannot approve it: "
                          "a second operator must."]
    assert status_of(world, payout_id).status == PayoutStatus.PENDING_APPROVAL
    assert world.transfers() == 0


def test_reject_needs_a_reason(app, world) -> None:
    payout_id = big_request(world)
    at = open_page(app, "approvals.py", "finance")
    at = at.button(key="approvals_reject").click().run()
    assert errors(at) == ["A rejection needs a reason."]
    at.text_input(key="approvals_reason").input("Duplicate invoice")
    at = at.button(key="approvals_reject").click().run()
    assert not at.exception
    payout = status_of(world, payout_id)
    assert payout.status == PayoutStatus.REJECTED
    assert payout.rejection_reason == "Duplicate invoice"
    assert f"Payout #{payout_id} rejected." in texts(at)


def test_manager_is_refused(app, stripe_env) -> None:
    at = app(as_user="manager").run()
    with pytest.raises(ValueError):
        at.switch_page("../pages/approvals.py")
    at = run_page_script("approvals.py", "manager")
    assert not at.exception
    assert errors(at) == ["manager (manager) may not approve payout."]


def test_lib_refuses_the_manager(world) -> None:
    payout_id = big_request(world)
    with world.session_factory() as session:
        with pytest.raises(PermissionDeniedError):
            approve_payout(session, operator=OPERATORS["manager"], payout_id=payout_id)
        with pytest.raises(PermissionDeniedError):
            reject_payout(session, operator=OPERATORS["manager"], payout_id=payout_id,
                          reason="no")


def test_a_long_queue_is_paged_fifty_at_a_time(app, world) -> None:
    """Issue 22: the page reads one page of the queue, whatever its length."""
    fid = world.freelancer(name="Queue Q")
    with world.session_factory.begin() as session:
        freelancer = session.get_one(Freelancer, fid)
        for _ in range(53):
            add_payout(session, freelancer=freelancer,
                       status=PayoutStatus.PENDING_APPROVAL.value)
    at = open_page(app, "approvals.py", "finance")
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 50
    assert any("53 rows" in c.value for c in at.caption), [c.value for c in at.caption]
    at.number_input(key="approvals_page").set_value(2).run()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 3
