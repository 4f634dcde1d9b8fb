"""Failed bank payouts page (issue 21): each role, reasons in words per freelancer, the
payment-settings link (audited, and the companion accepts it), the export."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lib.bank_payouts import record_payout
from lib.db import utcnow
from lib.freelancer_links import LOGIN_PATH, SETTINGS_PATH
from lib.models import AuditLog
from server.app import create_app
from server.links import LOGIN_PATH as SERVER_LOGIN_PATH
from server.pages import SETTINGS_PATH as SERVER_SETTINGS_PATH
from tests.factories import TEST_JWT_SECRET, make_settings
from tests.factories_dashboard import (
    add_freelancer,
    open_page,
    page_text,
    run_page_directly,
)


def _fail(session_factory, *, code: str, name: str, amount: int = 9_900) -> int:
    with session_factory.begin() as session:
        freelancer = add_freelancer(session, name=name)
        created = int(utcnow().timestamp()) - 86_400
        record_payout(session, payout={
            "id": f"po_{name.split()[0].lower()}", "object": "payout", "amount": amount,
            "currency": "usd", "status": "failed", "failure_code": code, "created": created},
            account_id=str(freelancer.stripe_account_id), event_created=utcnow())
        return freelancer.id


@pytest.mark.parametrize("user", ["admin", "finance"])
def test_failures_per_freelancer_in_plain_words(app, session_factory, user) -> None:
    _fail(session_factory, code="account_closed", name="Ada Lovelace")
    _fail(session_factory, code="invalid_account_number", name="Alan Turing", amount=4_200)
    at = open_page(app, "bank_payouts.py", user)
    assert not at.exception
    [people] = [t.value for t in at.dataframe if "What they should do" in t.value.columns]
    assert set(people["Freelancer"]) == {"Ada Lovelace", "Alan Turing"}
    ada = people[people["Freelancer"] == "Ada Lovelace"].iloc[0]
    assert (ada["Reason"], ada["Amount that failed"], ada["State"]) == (
        "The bank account has been closed.", "$99.00 USD", "Still failing")
    assert {m.label: m.value for m in at.metric}[
        "Still to fix their bank details"] == "2"
    assert at.get("vega_lite_chart")
    for element in at.dataframe:
        assert all("_" not in str(c) for c in element.value.columns)
        assert "None" not in element.value.to_string()


def test_nothing_failed(app) -> None:
    at = open_page(app, "bank_payouts.py", "finance")
    assert "No bank payout failed in the last 30 days." in page_text(at)


def test_the_settings_link_is_audited_and_signs_the_freelancer_in(
    app, session_factory, monkeypatch,
) -> None:
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    freelancer_id = _fail(session_factory, code="no_account", name="Grace Hopper")
    at = open_page(app, "bank_payouts.py", "finance")
    at.button(key="bank_payouts_link").click().run()
    assert not at.exception
    [code] = at.code
    url = code.value
    assert urlsplit(url).path == LOGIN_PATH == SERVER_LOGIN_PATH
    assert SETTINGS_PATH == SERVER_SETTINGS_PATH
    with session_factory() as session:
        [entry] = session.scalars(select(AuditLog).where(
            AuditLog.action == "freelancer.settings_link"))
    assert (entry.actor, entry.target, entry.result) == ("finance", f"freelancer:{freelancer_id}",
                                                         "issued")
    settings = make_settings()
    with TestClient(create_app(settings, session_factory=session_factory)) as client:
        response = client.get(urlsplit(url).path + "?" + urlsplit(url).query,
                              follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"].endswith(SETTINGS_PATH)


def test_without_jwt_secret_the_page_says_what_to_do(app, session_factory) -> None:
    _fail(session_factory, code="no_account", name="Grace Hopper")
    at = open_page(app, "bank_payouts.py", "admin")
    at.button(key="bank_payouts_link").click().run()
    assert not at.exception and not at.code
    assert any("JWT_SECRET is not set for the dashboard" in e.value for e in at.error)


def test_manager_is_refused(app, dashboard_env) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(app, "bank_payouts.py", "manager")
    at = run_page_directly("bank_payouts.py", "manager")
    assert [e.value for e in at.error] == ["manager (manager) may not view bank payouts."]
