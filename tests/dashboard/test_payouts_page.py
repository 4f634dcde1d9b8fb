"""The Payouts page: preflight, confirm, exactly one payout per form; bulk; ledger; roles."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from lib.errors import PermissionDeniedError
from lib.models import Payout, PayoutStatus
from lib.payouts import list_payouts, request_payout
from tests.dashboard import emulator_env
from tests.dashboard.emulator_env import (
    OPERATORS,
    errors,
    open_page,
    payout_count,
    run_page_script,
    texts,
)

stripe_env, world = emulator_env.stripe_env, emulator_env.world  # fixtures


def fill_and_check(at: AppTest, amount: str, description: str = "Invoice 7") -> AppTest:
    at.text_input(key="payouts_amount").input(amount)
    at.text_input(key="payouts_description").input(description)
    at.button(key="FormSubmitter:payouts_form-Check payout").click()
    return at.run()


def only_payout(world) -> Payout:
    with world.session_factory() as session:
        rows = list(session.query(Payout))
    assert len(rows) == 1
    return rows[0]


def test_admin_sees_the_form_on_an_empty_database(app, stripe_env) -> None:
    at = open_page(app, "payouts.py", "admin")
    assert not at.exception
    assert "No freelancer matches" in texts(at)
    assert "No payouts match these filters." in texts(at)


def test_finance_sees_the_ledger_without_a_form_on_an_empty_database(app, stripe_env) -> None:
    at = open_page(app, "payouts.py", "finance")
    assert not at.exception
    assert "No payouts match these filters." in texts(at)
    assert not at.tabs and "payouts_amount" not in [t.key for t in at.text_input]


def test_one_payout_preflight_confirm_and_result(app, world) -> None:
    world.freelancer(name="Paula Payee")
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "25.00")
    assert not at.exception, at.exception
    checks = at.dataframe[0].value
    assert list(checks.columns) == ["Passed", "Check", "Result"]
    assert set(checks["Check"]) >= {"Connected", "Transfers capability", "Balance available"}
    assert list(checks["Passed"]) == ["✓"] * len(checks)
    submit = at.button(key="payouts_submit")
    assert not submit.disabled
    at = submit.click().run()
    assert not at.exception, at.exception
    payout = only_payout(world)
    assert payout.status == PayoutStatus.PAID and payout.amount_minor == 2500
    assert payout.client_request_token == at.session_state["payouts_token"]
    assert payout.stripe_transfer_id in [c.value for c in at.code]
    assert "paid to Paula Payee" in texts(at)
    assert world.transfers() == 1


def test_a_second_click_or_a_rerun_never_makes_a_second_payout(app, world) -> None:
    world.freelancer()
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "40")
    at = at.button(key="payouts_submit").click().run()
    draft = at.session_state["payouts_draft"]
    at.run()  # a plain rerun
    # The second click of a double click arrives with the confirm step still on screen.
    at.session_state["payouts_stage"] = "confirm"
    at.session_state["payouts_draft"] = draft
    at.run()
    at = at.button(key="payouts_submit").click().run()
    assert not at.exception, at.exception
    at.run()
    assert payout_count(world.session_factory) == 1
    assert world.transfers() == 1
    assert only_payout(world).status == PayoutStatus.PAID


def test_the_submit_is_disabled_while_a_request_is_in_flight(app, world) -> None:
    world.freelancer()
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "10")
    at.session_state["payouts_in_flight"] = True
    at.run()
    assert at.button(key="payouts_submit").disabled
    assert at.button(key="payouts_back").disabled


def test_amount_over_the_threshold_waits_for_approval(app, world) -> None:
    world.freelancer()
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "1,500.00")
    assert "approval threshold" in texts(at)
    at = at.button(key="payouts_submit").click().run()
    assert not at.exception
    assert only_payout(world).status == PayoutStatus.PENDING_APPROVAL
    assert "waits on the Approvals page" in texts(at)
    assert world.transfers() == 0


def test_a_bad_amount_is_one_clear_message(app, world) -> None:
    world.freelancer()
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "12,5")
    assert not at.exception
    assert any("misplaced ','" in e for e in errors(at))
    assert payout_count(world.session_factory) == 0


def test_failing_checks_keep_the_submit_disabled(app, world) -> None:
    world.freelancer(name="Nico Notconnected", connected=False)
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "10")
    assert "✗" in list(at.dataframe[0].value["Passed"])
    assert at.button(key="payouts_submit").disabled


def test_preselects_the_freelancer_from_the_accounts_page(app, world) -> None:
    world.freelancer(name="Ada First")
    second = world.freelancer(name="Zed Second")
    at = open_page(app, "payouts.py", "admin", payouts_freelancer_id=second)
    assert at.selectbox(key="payouts_freelancer").value == second


def test_unknown_outcome_is_retried_with_the_same_key(app, world) -> None:
    world.freelancer()
    world.emulator.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "30")
    at = at.button(key="payouts_submit").click().run()
    assert only_payout(world).status == PayoutStatus.UNKNOWN
    assert "retry it from the ledger" in texts(at)
    at = at.button(key="payouts_retry").click().run()
    assert not at.exception, at.exception
    assert only_payout(world).status == PayoutStatus.PAID
    assert world.transfers() == 1


def test_many_unknown_outcomes_offer_the_newest_a_retry_may_settle(app, world) -> None:
    """30 recent unknown payouts and 3 sent two days ago: the 25 newest recent ones are offered
    (the page loads no more), the old ones are counted and sent to Reconciliation."""
    from datetime import timedelta

    from dashboard.payout_ledger import RETRY_CHOICES
    from lib.db import utcnow

    fid = world.freelancer()
    with world.session_factory.begin() as session:
        ids = []
        for n in range(RETRY_CHOICES + 8):
            payout = request_payout(session, operator=OPERATORS["admin"], freelancer_id=fid,
                                    amount=f"{n + 1}.00", currency="usd",
                                    description=f"Lost {n}", client_request_token=None,
                                    settings=world.settings)
            payout.status = PayoutStatus.UNKNOWN.value
            if n >= RETRY_CHOICES + 5:       # the newest ids, but sent long ago
                payout.submitted_at = utcnow() - timedelta(days=2)
            session.flush()
            ids.append(payout.id)
    at = open_page(app, "payouts.py", "admin")
    assert not at.exception, at.exception
    assert f"{RETRY_CHOICES + 8} payout(s) have an unknown outcome." in [w.value for w in
                                                                        at.warning]
    assert "3 of them were first sent over 23 hours ago" in texts(at)
    offered = at.selectbox(key="payouts_retry_id").options
    assert len(offered) == RETRY_CHOICES
    recent = ids[:RETRY_CHOICES + 5]
    assert offered[0].startswith(f"#{recent[-1]} ") and offered[-1].startswith(f"#{recent[5]} ")
    assert "The 25 newest that a retry may settle are offered below" in texts(at)


def test_unknown_outcomes_no_retry_may_settle_offer_no_retry(app, world) -> None:
    from datetime import timedelta

    from lib.db import utcnow

    fid = world.freelancer()
    with world.session_factory.begin() as session:
        payout = request_payout(session, operator=OPERATORS["admin"], freelancer_id=fid,
                                amount="5.00", currency="usd", description="Old",
                                client_request_token=None, settings=world.settings)
        payout.status = PayoutStatus.UNKNOWN.value
        payout.submitted_at = utcnow() - timedelta(days=2)
    at = open_page(app, "payouts.py", "admin")
    assert "All of them were first sent over 23 hours ago" in texts(at)
    assert not [s for s in at.selectbox if s.key == "payouts_retry_id"]
    assert not [b for b in at.button if b.key == "payouts_retry"]


def test_bulk_preview_then_confirm(app, world) -> None:
    world.freelancer(email="bulk1@example.com")
    csv = (b"freelancer_email,amount,currency,description\n"
           b"bulk1@example.com,12.00,usd,Week 1\nnobody@example.com,5,usd,Week 1\n")
    at = open_page(app, "payouts.py", "admin")
    at.file_uploader(key="payouts_bulk_file").set_value(("pay.csv", csv, "text/csv"))
    at.run()
    assert not at.exception, at.exception
    preview = at.dataframe[0].value
    assert list(preview["Ready"]) == ["Yes", "No"]
    assert payout_count(world.session_factory) == 0
    at = at.button(key="payouts_bulk_confirm").click().run()
    assert not at.exception, at.exception
    assert payout_count(world.session_factory) == 1
    assert "Bulk payout finished" in texts(at)
    at = at.button(key="payouts_bulk_confirm").click().run()  # confirming again is a no-op
    assert not at.exception, at.exception
    assert payout_count(world.session_factory) == 1
    assert world.transfers() == 1


def test_ledger_with_data_filters_and_export(app, world) -> None:
    world.freelancer()
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "25")
    at.button(key="payouts_submit").click().run()
    at = open_page(app, "payouts.py", "finance")
    assert not at.exception, at.exception
    assert "payouts_amount" not in [t.key for t in at.text_input]
    ledger = at.dataframe[0].value
    assert list(ledger["Status"]) == ["Paid"]
    assert list(ledger["Amount"]) == ["$25.00 USD"]
    at.selectbox(key="payouts_ledger_status").set_value("failed").run()
    assert "No payouts match these filters." in texts(at)
    at.selectbox(key="payouts_ledger_status").set_value("any").run()
    at = at.button(key="payouts_ledger_export_prepare").click().run()
    assert not at.exception
    assert at.get("download_button")


def test_manager_is_refused(app, stripe_env) -> None:
    at = app(as_user="manager").run()
    with pytest.raises(ValueError):
        at.switch_page("../pages/payouts.py")
    at = run_page_script("payouts.py", "manager")
    assert not at.exception
    assert errors(at) == ["manager (manager) may not view payouts."]


def test_finance_cannot_request_a_payout_in_lib(world) -> None:
    fid = world.freelancer()
    with world.session_factory() as session, pytest.raises(PermissionDeniedError):
        request_payout(session, operator=OPERATORS["finance"], freelancer_id=fid, amount="5",
                       currency="usd", description="", client_request_token="t",
                       settings=world.settings)
    with world.session_factory() as session, pytest.raises(PermissionDeniedError):
        list_payouts(session, operator=OPERATORS["manager"])


def test_a_freelancer_name_is_shown_as_text_not_markup(app, world) -> None:
    world.freelancer(name="Eve *bold* [click](http://evil.example)")
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "5", "Fee $1 and $2 :red[x]")
    heading = at.subheader[0].value
    assert r"Eve \*bold\* \[click\]\(http\:" in heading
    assert any(r"\$1 and \$2 \:red\[x\]" in c.value for c in at.caption)


def test_the_ledger_is_counted_once_per_run(app, stripe_env) -> None:
    """Issue 7: the ledger's pager and page share one count of the filtered payouts; since
    issue 22 that count is read from the payouts summary, never by counting the ledger."""
    from tests.factories_dashboard import QueryCounter

    at = open_page(app, "payouts.py", "finance")
    assert not at.exception, at.exception
    with QueryCounter() as counter:
        at.run()
    assert not at.exception, at.exception
    counts = [s for s in counter.statements
              if "count(*)" in s and "FROM payouts" in s and "GROUP BY" not in s]
    assert counts == [], counter.statements
    summaries = [s for s in counter.statements if "FROM summary_counts" in s]
    assert 1 <= len(summaries) <= 2, counter.statements   # the total, and the currency totals


# ---- issue 17: the likely-duplicate guard, limits per currency, bulk rows like earlier payouts ---

def test_paying_the_same_again_names_the_earlier_payout_and_needs_a_confirmation(app, world):
    world.freelancer(name="Paula Payee")
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "25.00", "Invoice 7")
    at = at.button(key="payouts_submit").click().run()
    first = only_payout(world)
    at = at.button(key="payouts_new").click().run()
    at = fill_and_check(at, "25.00", "invoice 7 ")
    assert f"Payout #{first.id} already pays Paula Payee" in texts(at), texts(at)
    assert at.button(key="payouts_submit").disabled
    at.checkbox(key="payouts_repeat_ok").check()
    at = at.run()
    assert not at.button(key="payouts_submit").disabled
    at = at.button(key="payouts_submit").click().run()
    assert not at.exception, at.exception
    assert payout_count(world.session_factory) == 2 and world.transfers() == 2


def test_the_confirm_step_shows_the_currency_limits(app, world):
    world.freelancer()
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "25.00")
    assert r"Limits in USD: Needs a second approver at or above \$1,000\.00 USD" in texts(at)


def test_bulk_rows_like_earlier_payouts_need_an_acknowledgement(app, world):
    world.freelancer(email="bulk2@example.com", name="Bo Bulk")
    at = fill_and_check(open_page(app, "payouts.py", "admin"), "12.00", "Week 1")
    at.button(key="payouts_submit").click().run()
    csv = (b"freelancer_email,amount,currency,description\n"
           b"bulk2@example.com,12.00,usd,week 1\n")
    at = open_page(app, "payouts.py", "admin")
    at.file_uploader(key="payouts_bulk_file").set_value(("pay.csv", csv, "text/csv"))
    at.run()
    assert "look like payouts already in the ledger" in texts(at)
    assert at.button(key="payouts_bulk_confirm").disabled
    at.checkbox(key="payouts_bulk_ack").check()
    at = at.run()
    at = at.button(key="payouts_bulk_confirm").click().run()
    assert not at.exception, at.exception
    assert payout_count(world.session_factory) == 2
