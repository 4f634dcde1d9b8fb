"""Account Links and the hosted onboarding page: complete, incomplete, single use, expiry."""

from __future__ import annotations

import httpx
import stripe

from emulator.testing import EmulatorHandle
from tests.emulator.conftest import express_account, present
from tests.emulator.html_forms import read_form

REFRESH = "http://localhost:8000/refresh"
RETURN = "http://localhost:8000/return"


def _link(client: stripe.StripeClient, account_id: str) -> str:
    link = client.v1.account_links.create(
        params={"account": account_id, "type": "account_onboarding", "refresh_url": REFRESH, "return_url": RETURN}
    )
    return str(link.url)


def _press(emu: EmulatorHandle, url: str, button: str) -> httpx.Response:
    page = httpx.get(url)
    assert page.status_code == 200
    form = read_form(page.text)
    return httpx.post(f"{emu.base_url}{form.action}", data=form.click(button))


def test_complete_onboarding(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu, onboarded=False)
    answer = _press(emu, _link(client, acct.id), "Complete onboarding")
    assert answer.status_code == 302 and answer.headers["location"] == RETURN
    after = client.v1.accounts.retrieve(acct.id)
    assert after.details_submitted is True
    assert after.charges_enabled is True and after.payouts_enabled is True
    assert present(after.capabilities).transfers == "active"
    requirements = present(after.requirements)
    assert requirements.currently_due == [] and requirements.disabled_reason is None
    assert present(after.external_accounts).data[0].last4 == "6789"
    events = client.v1.events.list(options={"stripe_account": acct.id}).data
    update = next(e for e in events if e.type == "account.updated")
    assert present(update.data.previous_attributes)["details_submitted"] is False
    cap = next(e for e in events if e.type == "capability.updated")
    assert cap.data.object.status == "active" and cap.account == acct.id


def test_leave_incomplete(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu, onboarded=False)
    answer = _press(emu, _link(client, acct.id), "Leave incomplete")
    assert answer.headers["location"] == RETURN
    after = client.v1.accounts.retrieve(acct.id)
    assert after.details_submitted is True
    assert present(after.requirements).currently_due and after.payouts_enabled is False
    assert present(after.capabilities).transfers == "inactive"


def test_link_is_single_use(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu, onboarded=False)
    url = _link(client, acct.id)
    assert httpx.get(url).status_code == 200
    again = httpx.get(url)
    assert again.status_code == 302 and again.headers["location"] == REFRESH


def test_expired_link_redirects_to_refresh(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu, onboarded=False)
    url = _link(client, acct.id)
    emu.advance_clock(301)
    answer = httpx.get(url)
    assert answer.status_code == 302 and answer.headers["location"] == REFRESH
    assert httpx.get(f"{emu.base_url}/_emulator/onboarding/nope").status_code == 404


def test_control_sets_requirements_and_emits(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    emu.set_account(
        acct.id,
        requirements={"currently_due": ["individual.verification.document"], "past_due": ["individual.verification.document"]},
        disabled_reason="requirements.past_due",
        current_deadline=1_900_000_000,
        payouts_enabled=False,
        capabilities={"transfers": "pending"},
        future_requirements={"eventually_due": ["individual.id_number"]},
    )
    after = client.v1.accounts.retrieve(acct.id)
    requirements = present(after.requirements)
    assert requirements.past_due == ["individual.verification.document"]
    assert requirements.current_deadline == 1_900_000_000
    assert present(after.future_requirements).eventually_due == ["individual.id_number"]
    assert present(after.capabilities).transfers == "pending" and after.payouts_enabled is False
    event = client.v1.events.list(params={"type": "account.updated"}, options={"stripe_account": acct.id}).data[0]
    assert present(event.data.previous_attributes)["payouts_enabled"] is True


def test_the_business_name_typed_while_onboarding_is_reported(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    """Whoever completes the link names the business; Stripe reports it on the account (the
    product shows it to the freelancer, who confirms the destination is theirs)."""
    acct = express_account(client, emu, onboarded=False)
    assert present(client.v1.accounts.retrieve(acct.id).business_profile).name is None
    page = httpx.get(_link(client, acct.id))
    form = read_form(page.text)
    answer = httpx.post(f"{emu.base_url}{form.action}",
                        data={**form.click("Complete onboarding"), "business_name": "Mallory Ltd"})
    assert answer.status_code == 302
    after = client.v1.accounts.retrieve(acct.id)
    assert present(after.business_profile).name == "Mallory Ltd"
    assert present(after.settings).dashboard.display_name == "Mallory Ltd"
    assert after.email == acct.email
