"""The Reconciliation page: run for a period, unknowns resolved, mismatches listed, export."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lib.db import utcnow
from lib.errors import PermissionDeniedError
from lib.freelancers import get_freelancer
from lib.models import Payout, PayoutStatus
from lib.payouts import execute_payout, reconcile, request_payout
from tests.dashboard import emulator_env
from tests.dashboard.emulator_env import (
    OPERATORS,
    errors,
    open_page,
    run_page_script,
    texts,
)

stripe_env, world = emulator_env.stripe_env, emulator_env.world  # fixtures


def unknown_payout(world) -> int:
    """A payout whose transfer was made but whose answer was lost."""
    fid = world.freelancer()
    with world.session_factory.begin() as session:
        payout_id = request_payout(session, operator=OPERATORS["admin"], freelancer_id=fid,
                                   amount="42.00", currency="usd", description="Lost answer",
                                   client_request_token=None, settings=world.settings).id
    world.emulator.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    payout = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                            operator=OPERATORS["admin"])
    assert payout.status == PayoutStatus.UNKNOWN
    return payout_id


def stray_transfer(world) -> str:
    """A transfer at Stripe that no ledger row knows."""
    fid = world.freelancer(name="Stray Target")
    with world.session_factory() as session:
        account = get_freelancer(session, freelancer_id=fid).stripe_account_id
    return world.gateway.create_transfer(amount_minor=700, currency="usd", destination=account,
                                         idempotency_key="stray-transfer-1").id


@pytest.mark.parametrize("role", ["admin", "finance"])
def test_empty_database_then_an_empty_run(app, stripe_env, role: str) -> None:
    at = open_page(app, "reconciliation.py", role)
    assert not at.exception, at.exception
    assert "Choose a period and run the reconciliation." in texts(at)
    at = at.button(key="reconciliation_run").click().run()
    assert not at.exception, at.exception
    assert "No mismatches" in texts(at)
    assert [m.value for m in at.metric][:3] == ["0", "0", "0"]


def test_unknown_is_resolved_and_a_stray_transfer_is_a_mismatch(app, world) -> None:
    payout_id = unknown_payout(world)
    transfer_id = stray_transfer(world)
    at = open_page(app, "reconciliation.py", "finance")
    at = at.button(key="reconciliation_run").click().run()
    assert not at.exception, at.exception
    with world.session_factory() as session:
        assert session.get(Payout, payout_id).status == PayoutStatus.PAID
    mismatches, resolved = at.dataframe[0].value, at.dataframe[1].value
    assert list(mismatches["Finding"]) == ["Missing ledger"]
    assert list(mismatches["Stripe transfer"]) == [transfer_id]
    assert list(resolved["Payout #"]) == [payout_id]
    assert "1 mismatch(es) need a person." in errors(at)
    assert at.get("download_button")
    # Running again finds the row already paid: nothing left to resolve.
    at = at.button(key="reconciliation_run").click().run()
    assert "Unknown payouts resolved as paid" not in texts(at)


def test_manager_is_refused(app, stripe_env) -> None:
    at = app(as_user="manager").run()
    with pytest.raises(ValueError):
        at.switch_page("../pages/reconciliation.py")
    at = run_page_script("reconciliation.py", "manager")
    assert not at.exception
    assert errors(at) == ["manager (manager) may not reconcile."]


def test_lib_refuses_the_manager(world) -> None:
    with pytest.raises(PermissionDeniedError):
        reconcile(world.session_factory, gateway=world.gateway, operator=OPERATORS["manager"],
                  since=utcnow() - timedelta(days=1))


# ---- issue 17: two people decide rows no retry may settle; drift is listed -----------------------

def expired_payout(world) -> int:
    """A payout sent two days ago whose outcome Stripe never told us (and it never paid)."""
    fid = world.freelancer(name="Old Unknown")
    with world.session_factory.begin() as session:
        payout = request_payout(session, operator=OPERATORS["admin"], freelancer_id=fid,
                                amount="42.00", currency="usd", description="Lost long ago",
                                client_request_token=None, settings=world.settings)
        payout.status, payout.error_code = "unknown", "stripe_connection_error"
        payout.submitted_at = payout.created_at = utcnow() - timedelta(days=2)
        return payout.id


def test_two_people_decide_an_expired_unknown_payout(app, world) -> None:
    payout_id = expired_payout(world)
    at = open_page(app, "reconciliation.py", "finance")
    assert "Needs a person's decision" in texts(at)
    at.radio(key="reconciliation_decide_outcome").set_value("not_paid")
    at.text_input(key="reconciliation_decide_reason").input("Not in Stripe's dashboard")
    at = at.button(key="FormSubmitter:reconciliation_propose-Propose this decision").click().run()
    assert not at.exception, at.exception
    assert "a second person confirms" in texts(at)
    (confirm,) = [b for b in at.button if b.key and b.key.startswith("reconciliation_confirm_")]
    assert confirm.disabled  # the proposer cannot confirm
    assert confirm.key is not None
    other = open_page(app, "reconciliation.py", "admin")
    other = other.button(key=confirm.key).click().run()
    assert not other.exception, other.exception
    assert "confirmed" in texts(other)
    with world.session_factory() as session:
        row = session.get(Payout, payout_id)
        assert (row.status, row.error_code) == ("failed", "decided_not_paid")


def test_rows_for_a_person_are_paged_fifty_at_a_time(app, world) -> None:
    """55 expired rows: page 1 shows 50, page 2 the other 5, and the form offers that page's."""
    fid = world.freelancer(name="Many Unknowns")
    with world.session_factory.begin() as session:
        ids = []
        for n in range(55):
            payout = request_payout(session, operator=OPERATORS["admin"], freelancer_id=fid,
                                    amount=f"{n + 1}.00", currency="usd",
                                    description=f"Lost {n}", client_request_token=None,
                                    settings=world.settings)
            payout.status, payout.error_code = "unknown", "stripe_connection_error"
            payout.submitted_at = payout.created_at = utcnow() - timedelta(days=2)
            session.flush()
            ids.append(payout.id)
    at = open_page(app, "reconciliation.py", "finance")
    assert not at.exception, at.exception
    (table,) = [d.value for d in at.dataframe if "First sent" in d.value.columns]
    assert table["Payout"].tolist() == ids[:50]
    assert "Page 1 of 2 · 55 rows" in texts(at)
    at.number_input(key="reconciliation_awaiting_page").set_value(2)
    at = at.run()
    assert not at.exception, at.exception
    (table,) = [d.value for d in at.dataframe if "First sent" in d.value.columns]
    assert table["Payout"].tolist() == ids[50:]
    assert len(at.selectbox(key="reconciliation_decide_row").options) == 5


def test_drift_reported_by_transfer_events_is_listed(app, world) -> None:
    from lib.payouts.webhooks import apply_transfer_event

    fid = world.freelancer(name="Drifty")
    with world.session_factory.begin() as session:
        payout = request_payout(session, operator=OPERATORS["admin"], freelancer_id=fid,
                                amount="9.00", currency="usd", description="Rejected one",
                                client_request_token=None, settings=world.settings)
        payout.status = "rejected"
        key, account = payout.idempotency_key, payout.stripe_account_id
        payout_id = payout.id
    world.emulator.set_balance(100_000, "usd")
    transfer = world.gateway.create_transfer(amount_minor=900, currency="usd",
                                             destination=account, idempotency_key=key,
                                             metadata={"ledger_key": key})
    apply_transfer_event(world.session_factory, gateway=world.gateway,
                         event={"id": "evt_d", "type": "transfer.created",
                                "data": {"object": {"id": transfer.id}}})
    at = open_page(app, "reconciliation.py", "finance")
    assert "Drift reported by Stripe's events" in texts(at)
    (table,) = [d.value for d in at.dataframe if "Ledger says" in d.value.columns]
    assert table["Payout"].tolist() == [payout_id] and table["Ledger says"].tolist() == [
        "Rejected"]
def test_the_workers_daily_run_is_stored_and_shown(app, world) -> None:
    from lib.jobs import WORKER_OPERATOR
    from lib.reconciliation_runs import run_scheduled_reconciliation

    transfer_id = stray_transfer(world)
    at = open_page(app, "reconciliation.py", "finance")
    assert "The worker's daily run has not stored a report yet." in texts(at)
    stored = run_scheduled_reconciliation(world.session_factory, gateway=world.gateway,
                                          operator=WORKER_OPERATOR)
    assert (stored.status, stored.mismatches) == ("ok", 1)
    at = open_page(app, "reconciliation.py", "finance")
    assert not at.exception, at.exception
    assert "1 transfer(s) checked, 1 mismatch(es), 0 unknown payout(s) settled." in errors(at)
    assert list(at.dataframe[0].value["stripe_transfer_id"]) == [transfer_id]
    assert "Choose a period and run the reconciliation." in texts(at)  # the manual run is apart
