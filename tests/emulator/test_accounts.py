"""Accounts, capabilities, login links and account links through the unmodified SDK."""

from __future__ import annotations

import pytest
import stripe

from emulator.testing import EmulatorHandle
from tests.emulator.conftest import express_account, present


def test_new_express_account_starts_unonboarded(client: stripe.StripeClient) -> None:
    acct = client.v1.accounts.create(
        params={
            "type": "express",
            "email": "freelancer@example.com",
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
            "metadata": {"freelancer_id": "42"},
        }
    )
    assert acct.id.startswith("acct_") and len(acct.id) == 21
    assert acct.type == "express"
    assert acct.details_submitted is False
    assert acct.charges_enabled is False and acct.payouts_enabled is False
    assert present(acct.capabilities).transfers == "inactive"
    requirements = present(acct.requirements)
    due = present(requirements.currently_due)
    assert "external_account" in due and "tos_acceptance.date" in due
    eventually = present(requirements.eventually_due)
    assert set(due) <= set(eventually)
    assert "individual.verification.document" in eventually
    assert present(acct.future_requirements).currently_due == []
    assert present(acct.metadata)["freelancer_id"] == "42"
    assert present(acct.controller).type == "application"


def test_retrieve_update_list_delete(client: stripe.StripeClient) -> None:
    created = [client.v1.accounts.create(params={"type": "express"}) for _ in range(3)]
    got = client.v1.accounts.retrieve(created[0].id)
    assert got.id == created[0].id
    updated = client.v1.accounts.update(created[0].id, params={"metadata": {"a": "1"}, "email": "n@example.com"})
    assert present(updated.metadata)["a"] == "1" and updated.email == "n@example.com"
    page = client.v1.accounts.list(params={"limit": 2})
    assert [a.id for a in page.data] == [created[2].id, created[1].id]
    assert page.has_more is True
    rest = client.v1.accounts.list(params={"limit": 2, "starting_after": created[1].id})
    assert [a.id for a in rest.data] == [created[0].id] and rest.has_more is False
    back = client.v1.accounts.list(params={"limit": 1, "ending_before": created[0].id})
    assert [a.id for a in back.data] == [created[1].id]
    deleted = client.v1.accounts.delete(created[2].id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.accounts.retrieve(created[2].id)
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    assert "No such account" in str(exc.value)


def test_unknown_parameter_and_bad_enum_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        # An unknown parameter, on purpose: the emulator must refuse it as Stripe does.
        client.v1.accounts.create(params={"type": "express", "colour": "blue"})  # type: ignore[arg-type]
    assert exc.value.param == "colour"
    assert "Received unknown parameter: colour" in str(exc.value)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.accounts.create(params={"type": "premium"})
    assert exc.value.param == "type"


def test_platform_account_and_stripe_account_header(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    platform = client.v1.accounts.retrieve_current()
    assert platform.id == emu.state()["platform_id"]
    acct = express_account(client, emu)
    own = client.v1.accounts.retrieve_current(options={"stripe_account": acct.id})
    assert own.id == acct.id
    with pytest.raises(stripe.PermissionError) as exc:
        client.v1.balance.retrieve(options={"stripe_account": "acct_notconnected12"})
    assert exc.value.http_status == 403 and "does not have access" in str(exc.value)


def test_reject_account(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    rejected = client.v1.accounts.reject(acct.id, params={"reason": "fraud"})
    assert present(rejected.requirements).disabled_reason == "rejected.fraud"
    assert rejected.charges_enabled is False and rejected.payouts_enabled is False


def test_capabilities(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = client.v1.accounts.create(params={"type": "express", "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}}})
    caps = client.v1.accounts.capabilities.list(acct.id)
    assert [c.id for c in caps.data] == ["card_payments", "transfers"]
    cap = client.v1.accounts.capabilities.retrieve(acct.id, "transfers")
    assert cap.status == "inactive" and cap.requested is True
    assert "external_account" in present(present(cap.requirements).currently_due)
    cap = client.v1.accounts.capabilities.update(acct.id, "card_payments", params={"requested": True})
    assert cap.requested is True
    recipient = client.v1.accounts.create(params={
        "type": "express", "country": "GB", "capabilities": {"transfers": {"requested": True}},
        "tos_acceptance": {"service_agreement": "recipient"}})
    assert [c.id for c in client.v1.accounts.capabilities.list(recipient.id).data] == ["transfers"]
    emu.set_account(acct.id, onboarding="complete")
    assert client.v1.accounts.capabilities.retrieve(acct.id, "transfers").status == "active"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.accounts.capabilities.retrieve(acct.id, "teleportation")


def test_login_links_only_for_express(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    link = client.v1.accounts.login_links.create(acct.id)
    assert link.object == "login_link" and link.url.startswith(emu.base_url)
    custom = client.v1.accounts.create(params={"type": "custom", "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}}})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.accounts.login_links.create(custom.id)
    assert "not an Express account" in str(exc.value)


def test_account_links(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu, onboarded=False)
    link = client.v1.account_links.create(
        params={
            "account": acct.id,
            "type": "account_onboarding",
            "refresh_url": "http://localhost:8000/refresh",
            "return_url": "http://localhost:8000/return",
        }
    )
    assert link.object == "account_link"
    assert link.expires_at == link.created + 300
    assert link.url.startswith(f"{emu.base_url}/_emulator/onboarding/")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.account_links.create(
            params={
                "account": acct.id,
                "type": "account_update",
                "refresh_url": "http://localhost:8000/refresh",
                "return_url": "http://localhost:8000/return",
            }
        )
    assert exc.value.param == "type"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.account_links.create(params={"account": acct.id, "type": "account_onboarding"})
    assert exc.value.param == "refresh_url"
