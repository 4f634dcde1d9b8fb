"""The Accounts page flags new, unconfirmed payout destinations and lets an admin confirm one
with a reason (issue 19); finance sees the flag but cannot confirm."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from lib.models import AuditLog, Freelancer
from tests.factories_dashboard import add_freelancer, open_page, page_text


def _held(session_factory, name: str) -> tuple[int, str]:
    """A connected freelancer whose account a connect flow just made their destination."""
    with session_factory.begin() as session:
        freelancer = add_freelancer(session, state="active", name=name)
        freelancer.unconfirmed_account_id = freelancer.stripe_account_id
        return freelancer.id, str(freelancer.stripe_account_id)


@pytest.mark.parametrize("user", ["admin", "finance"])
def test_unconfirmed_destinations_are_flagged(app, session_factory, user) -> None:
    with session_factory.begin() as session:
        add_freelancer(session, state="active", name="Carl Confirmed")
    _, account_id = _held(session_factory, "Nina New")
    at = open_page(app, "accounts.py", user)
    assert not at.exception
    (held,) = [w.value for w in at.warning if "destination" in w.value]
    assert "1 new payout destination not confirmed yet" in held
    flagged = at.dataframe[0].value                       # above the accounts table
    assert list(flagged["Freelancer"]) == ["Nina New"]
    assert list(flagged["New account"]) == [account_id]


def test_nothing_flagged_when_every_destination_is_confirmed(app, session_factory) -> None:
    with session_factory.begin() as session:
        add_freelancer(session, state="active", name="Carl Confirmed")
    at = open_page(app, "accounts.py", "admin")
    # (Admins may also be warned that no background worker runs here: not this page's business.)
    assert not at.exception and not [w for w in at.warning if "destination" in w.value]
    assert "not confirmed" not in page_text(at)


def test_an_admin_confirms_with_a_reason(app, session_factory) -> None:
    fid, account_id = _held(session_factory, "Nina New")
    at = open_page(app, "accounts.py", "admin")
    at.selectbox(key="accounts_detail_freelancer").select(fid).run()
    assert "New payout destination, not confirmed." in page_text(at)

    at.button(key="FormSubmitter:accounts_confirm_destination_form-Confirm this destination"
              ).click().run()
    assert [e.value for e in at.error] == [
        "Give the reason for confirming this destination (how the freelancer confirmed it, "
        "a ticket): it is kept in the audit log."]
    with session_factory() as session:
        assert session.get_one(Freelancer, fid).unconfirmed_account_id == account_id

    at.text_input(key="accounts_confirm_destination_reason").input("Phoned Nina, ticket 4411")
    at.button(key="FormSubmitter:accounts_confirm_destination_form-Confirm this destination"
              ).click().run()
    assert not at.exception and not at.error
    assert f"{account_id} is confirmed: payouts to it may go." in page_text(at)
    assert "New payout destination, not confirmed." not in page_text(at)
    with session_factory() as session:
        assert session.get_one(Freelancer, fid).unconfirmed_account_id is None
        [entry] = session.scalars(select(AuditLog).where(
            AuditLog.action == "connect.destination_confirm")).all()
    assert (entry.actor, entry.actor_role, entry.detail) == ("admin", "admin",
                                                             "Phoned Nina, ticket 4411")


def test_finance_sees_the_hold_but_cannot_confirm(app, session_factory) -> None:
    fid, _ = _held(session_factory, "Nina New")
    at = open_page(app, "accounts.py", "finance")
    at.selectbox(key="accounts_detail_freelancer").select(fid).run()
    assert not at.exception
    assert "New payout destination, not confirmed." in page_text(at)
    assert "accounts_confirm_destination_reason" not in [t.key for t in at.text_input]
