"""The outreach action on Requirements due and Accounts, the Outbox and Alerts pages, and the
alerts on the Overview (AppTest: every role, the refusals, the confirmed bulk send)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib.alerts import KINDS, evaluate_rules, save_rule
from lib.db import utcnow
from lib.models import (
    AlertRule,
    AuditLog,
    MessageStatus,
    OutboxMessage,
    OutreachBatch,
    OutreachContact,
    WebhookEvent,
)
from lib.roles import Operator, Role
from tests.factories_dashboard import add_freelancer, open_page, page_text, run_page_directly

ADMIN = Operator("admin", frozenset({Role.ADMIN}))


def _table_with(at, column: str):
    """The first table on the page with ``column`` (AppTest does not expose a table's key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _count(session_factory: sessionmaker[Session], model: type) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("user", ["admin", "finance"])
def test_an_operator_emails_selected_freelancers_after_a_preview(
    app, session_factory, user: str,
) -> None:
    with session_factory.begin() as session:
        due = [add_freelancer(session, state="disabled", name=f"Dee {n}").id for n in range(3)]
        add_freelancer(session, state="pending_verification", name="Vera Waiting")
    at = open_page(app, "requirements.py", user)
    assert not at.exception
    table = at.dataframe[-1].value
    assert {"Last contacted", "Times contacted", "Since the last email"} <= set(table.columns)
    at.multiselect(key="requirements_outreach_who").set_value(due[:2]).run()
    at.button(key="requirements_outreach_preview_button").click().run()
    assert not at.exception
    assert "2 freelancer(s) will get an email" in page_text(at)
    assert _count(session_factory, OutboxMessage) == 0  # nothing before the confirmation
    confirm = at.button(key="requirements_outreach_confirm")
    assert confirm.label == "Confirm and send 2 emails"
    confirm.click().run()
    assert not at.exception
    assert "2 email(s) queued" in page_text(at)
    assert _count(session_factory, OutboxMessage) == 2
    with session_factory() as session:
        by = set(session.scalars(select(OutreachContact.created_by)))
    assert by == {user}
    # The table now says who was contacted.
    table = at.dataframe[-1].value.set_index("Freelancer")
    assert table.loc["Dee 0", "Times contacted"] == 1
    assert table.loc["Dee 0", "Since the last email"] == "not delivered yet"
    assert table.loc["Dee 2", "Times contacted"] == 0


def test_all_matching_the_filter_not_contacted_lately(app, session_factory) -> None:
    with session_factory.begin() as session:
        due = [add_freelancer(session, state="disabled", name=f"Dee {n}").id for n in range(4)]
    at = open_page(app, "requirements.py", "admin")
    at.number_input(key="requirements_not_contacted_days").set_value(7).run()
    at.checkbox(key="requirements_outreach_all").check().run()
    at.button(key="requirements_outreach_preview_button").click().run()
    at.button(key="requirements_outreach_confirm").click().run()
    assert not at.exception
    assert _count(session_factory, OutboxMessage) == 4
    with session_factory() as session:
        emailed = sorted(session.scalars(select(OutreachContact.freelancer_id)))
    assert emailed == sorted(due)
    # Contacted now: the filter leaves nobody to email.
    at.run()
    assert "No connected account has anything due" in page_text(at)


def test_cancel_and_a_rerun_of_the_confirmation_send_nothing_twice(app, session_factory) -> None:
    with session_factory.begin() as session:
        fid = add_freelancer(session, state="disabled", name="Dee").id
    at = open_page(app, "requirements.py", "admin")
    at.multiselect(key="requirements_outreach_who").set_value([fid]).run()
    at.button(key="requirements_outreach_preview_button").click().run()
    at.button(key="requirements_outreach_cancel").click().run()
    assert _count(session_factory, OutreachBatch) == 0
    at.multiselect(key="requirements_outreach_who").set_value([fid]).run()
    at.button(key="requirements_outreach_preview_button").click().run()
    preview = at.session_state["requirements_outreach_preview"]
    at.button(key="requirements_outreach_confirm").click().run()
    # The same confirmation arriving again (a resubmitted run) finds the batch recorded.
    at.session_state["requirements_outreach_preview"] = preview
    at.run()
    at.button(key="requirements_outreach_confirm").click().run()
    assert not at.exception
    assert "1 already recorded by an earlier run of this batch" in page_text(at)
    assert (_count(session_factory, OutreachBatch), _count(session_factory, OutboxMessage)) == (1, 1)


def test_the_accounts_detail_emails_one_freelancer_and_lists_what_was_sent(
    app, session_factory,
) -> None:
    with session_factory.begin() as session:
        fid = add_freelancer(session, state="disabled", name="Dora Due").id
    at = open_page(app, "accounts.py", "admin")
    at.selectbox(key="accounts_detail_freelancer").select(fid).run()
    assert "No requirement email sent yet." in page_text(at)
    at.button(key=f"accounts_outreach_{fid}_preview_button").click().run()
    at.button(key=f"accounts_outreach_{fid}_confirm").click().run()
    assert not at.exception
    history = _table_with(at, "About")
    assert list(history["About"]) == ["Bank account or debit card for payouts"]
    assert list(history["Delivery"]) == ["pending"]


def test_the_outbox_shows_errors_and_an_admin_retries(app, session_factory) -> None:
    with session_factory.begin() as session:
        save_rule(session, operator=ADMIN, kind="webhook_dead_letters", name="Dead letters",
                  params={"threshold": 0}, email_recipients="ops@example.com")
        session.add(WebhookEvent(stripe_event_id="evt_1", type="account.updated",
                                 endpoint="connect", status="dead", attempts=10, payload={}))
    evaluate_rules(session_factory)
    with session_factory.begin() as session:
        session.execute(update(OutboxMessage).values(
            status="dead", attempts=8, last_error="delivery_failed: The SMTP server answered "
            "550: mailbox unavailable"))
    at = open_page(app, "outbox.py", "admin")
    assert not at.exception
    table = _table_with(at, "Last error")
    assert list(table["Status"]) == ["dead"]
    assert "550: mailbox unavailable" in table["Last error"][0]
    at.selectbox(key="outbox_message").select(1).run()
    assert "Last error: delivery_failed" in page_text(at)
    at.button(key="outbox_retry").click().run()
    assert not at.exception
    assert "queued again" in page_text(at)
    with session_factory() as session:
        message = session.scalars(select(OutboxMessage)).one()
        entry = session.scalars(select(AuditLog).where(AuditLog.action == "outbox.retry")).one()
    assert (message.status, message.attempts) == (MessageStatus.PENDING.value, 0)
    assert entry.actor == "admin"


@pytest.mark.parametrize(("page", "role", "message"), [
    ("outbox.py", "finance", "finance (finance) may not view outbox."),
    ("alerts.py", "finance", "finance (finance) may not manage alerts."),
    ("alerts.py", "manager", "manager (manager) may not manage alerts."),
])
def test_the_admin_pages_refuse_other_roles(dashboard_env, page: str, role: str,
                                            message: str) -> None:
    at = run_page_directly(page, role)
    assert not at.exception
    assert [e.value for e in at.error] == [message]


def test_an_admin_adds_rules_checks_them_and_the_overview_lists_the_alerts(
    app, session_factory,
) -> None:
    with session_factory.begin() as session:
        add_freelancer(session, state="disabled", name="Dee")
    at = open_page(app, "alerts.py", "admin")
    assert not at.exception
    assert "No alert rules yet" in page_text(at)
    at.button(key="alerts_recommended").click().run()
    assert _count(session_factory, AlertRule) == len(KINDS)  # one per kind (12 with issue 22's)
    at.button(key="alerts_check_now").click().run()
    assert not at.exception
    assert "alert(s) opened" in page_text(at)
    # Change a rule: bad recipients are refused and change nothing.
    at.selectbox(key="alerts_rule_choice").select(2).run()
    at.text_area[0].input("ops@example.com, nonsense")  # a form: sent with its button
    save = next(b for b in at.main.button if b.label == "Save rule")
    save.click().run()
    assert "Not an email address: 'nonsense'" in page_text(at)
    at.text_area[0].input("ops@example.com")
    next(b for b in at.main.button if b.label == "Save rule").click().run()
    assert "Rule #2 saved." in page_text(at)
    with session_factory() as session:
        assert session.get(AlertRule, 2).email_recipients == "ops@example.com"
    overview = open_page(app, "overview.py", "manager")
    assert not overview.exception
    shown = [e.value for e in overview.error]
    assert any("Requirements past due (new)" in text and "Freelancer #1" in text
               for text in shown), shown


def test_recently_cleared_alerts_fold_into_a_table(app, session_factory) -> None:
    with session_factory.begin() as session:
        save_rule(session, operator=ADMIN, kind="webhook_dead_letters", name="Dead letters",
                  params={"threshold": 0})
        session.add(WebhookEvent(stripe_event_id="evt_1", type="account.updated",
                                 endpoint="connect", status="dead", attempts=10, payload={}))
    evaluate_rules(session_factory)
    with session_factory.begin() as session:
        session.execute(update(WebhookEvent).values(status="processed"))
    evaluate_rules(session_factory, now=utcnow() + timedelta(minutes=1))
    at = open_page(app, "overview.py", "admin")
    assert not at.exception
    assert list(_table_with(at, "Cleared")["Cleared"]) != ["open"]
