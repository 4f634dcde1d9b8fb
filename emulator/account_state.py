"""Connected-account state: building new accounts and moving them through onboarding.

Shared by the API routes, the OAuth consent page, the hosted onboarding page and the
control API, so an account changes the same way (and emits the same `account.updated` /
`capability.updated` events) whichever door the change came through.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from emulator.events import previous_attributes, record_event
from emulator.store import Store, new_id, random_token
from emulator.validation import resource_skeleton

INDIVIDUAL_DUE = [
    "business_profile.mcc",
    "business_profile.url",
    "external_account",
    "individual.address.city",
    "individual.address.line1",
    "individual.address.postal_code",
    "individual.address.state",
    "individual.dob.day",
    "individual.dob.month",
    "individual.dob.year",
    "individual.email",
    "individual.first_name",
    "individual.last_name",
    "individual.phone",
    "individual.ssn_last_4",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
INDIVIDUAL_EVENTUALLY = ["individual.id_number", "individual.verification.document"]
COMPANY_DUE = [
    "business_profile.mcc",
    "business_profile.url",
    "company.address.city",
    "company.address.line1",
    "company.address.postal_code",
    "company.address.state",
    "company.name",
    "company.phone",
    "company.tax_id",
    "external_account",
    "owners_provided",
    "representative.first_name",
    "representative.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
COMPANY_EVENTUALLY = ["representative.verification.document"]
KNOWN_CAPABILITIES = (
    "card_payments",
    "transfers",
    "crypto_transfers",
    "legacy_payments",
    "us_bank_account_ach_payments",
)
#: Default currency by country (the euro for the euro area and anywhere not listed).
CURRENCIES = {
    "US": "usd", "GB": "gbp", "JP": "jpy", "CA": "cad", "AU": "aud", "CH": "chf", "LI": "chf",
    "NO": "nok", "SE": "sek", "DK": "dkk", "PL": "pln", "CZ": "czk", "HU": "huf", "RO": "ron",
    "BG": "bgn", "IS": "isk", "BR": "brl", "IN": "inr", "SG": "sgd", "NZ": "nzd", "HK": "hkd",
    "MX": "mxn",
}
EMPTY_REQUIREMENTS: dict[str, Any] = {
    "alternatives": [],
    "current_deadline": None,
    "currently_due": [],
    "disabled_reason": None,
    "errors": [],
    "eventually_due": [],
    "past_due": [],
    "pending_verification": [],
}

CONTROLLERS: dict[str, dict[str, Any]] = {
    "express": {
        "fees": {"payer": "application_express"},
        "is_controller": True,
        "losses": {"payments": "application"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "express"},
        "type": "application",
    },
    "custom": {
        "fees": {"payer": "application_custom"},
        "is_controller": True,
        "losses": {"payments": "application"},
        "requirement_collection": "application",
        "stripe_dashboard": {"type": "none"},
        "type": "application",
    },
    "standard": {
        "fees": {"payer": "account"},
        "is_controller": True,
        "losses": {"payments": "stripe"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "full"},
        "type": "application",
    },
    "oauth": {"type": "account"},
}


def due_lists(business_type: str | None) -> tuple[list[str], list[str]]:
    """(currently_due, eventually_due) for a new account of that business type."""
    if business_type == "company":
        due = list(COMPANY_DUE)
        return due, sorted(due + COMPANY_EVENTUALLY)
    due = list(INDIVIDUAL_DUE)
    if business_type is None:
        due = sorted(due + ["business_type"])
    return due, sorted(due + INDIVIDUAL_EVENTUALLY)


def bank_account(account_id: str, currency: str, country: str) -> dict[str, Any]:
    """A test bank account like the one Stripe's hosted onboarding adds (000123456789)."""
    return {
        "id": new_id("ba"),
        "object": "bank_account",
        "account": account_id,
        "account_holder_name": None,
        "account_holder_type": None,
        "account_type": None,
        "available_payout_methods": ["standard"],
        "bank_name": "STRIPE TEST BANK",
        "country": country,
        "currency": currency,
        "default_for_currency": True,
        "fingerprint": random_token(16),
        "last4": "6789",
        "metadata": {},
        "routing_number": "110000000",
        "status": "new",
    }


def build_account(
    store: Store,
    *,
    account_type: str,
    country: str = "US",
    email: str | None = None,
    business_type: str | None = None,
    capabilities: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    via: str = "platform",
    service_agreement: str = "full",
) -> dict[str, Any]:
    """A new, un-onboarded account object (not yet stored)."""
    acct = resource_skeleton("account")
    account_id = new_id("acct")
    currency = CURRENCIES.get(country, "eur")
    due, eventually = due_lists(business_type)
    requested = [c for c in (capabilities or []) if c in KNOWN_CAPABILITIES]
    acct.update(
        {
            "id": account_id,
            "business_profile": {k: None for k in acct["business_profile"]},
            "business_type": business_type,
            "capabilities": {name: "inactive" for name in requested},
            "charges_enabled": False,
            "controller": copy.deepcopy(CONTROLLERS["oauth" if via == "oauth" else account_type]),
            "country": country,
            "created": store.now(),
            "default_currency": currency,
            "details_submitted": False,
            "email": email,
            "external_accounts": {
                "data": [],
                "has_more": False,
                "object": "list",
                "url": f"/v1/accounts/{account_id}/external_accounts",
            },
            "future_requirements": copy.deepcopy(EMPTY_REQUIREMENTS),
            "metadata": dict(metadata or {}),
            "payouts_enabled": False,
            "requirements": {
                **copy.deepcopy(EMPTY_REQUIREMENTS),
                "currently_due": due,
                "eventually_due": eventually,
                "past_due": list(due),
                "disabled_reason": "requirements.past_due",
            },
            "tos_acceptance": {"date": None, "ip": None, "service_agreement": service_agreement,
                               "user_agent": None},
            "type": account_type,
        }
    )
    acct["settings"]["dashboard"]["display_name"] = None
    return acct


def add_account(store: Store, acct: dict[str, Any], *, via: str, connected: bool) -> None:
    """Store an account with its connection record (inside a transaction)."""
    store.state["accounts"][acct["id"]] = acct
    store.state["connections"][acct["id"]] = {
        "via": via,
        "active": connected,
        "requested_at": {name: acct["created"] for name in acct["capabilities"]},
    }
    store.mark_dirty()


def is_connected(store: Store, account_id: str) -> bool:
    """Is this account connected to the platform (created by it, or authorized by OAuth)?"""
    conn = store.state["connections"].get(account_id)
    return bool(conn and conn["active"] and account_id in store.state["accounts"])


def capability_object(store: Store, account_id: str, name: str) -> dict[str, Any]:
    """The `capability` object derived from the account's state."""
    acct = store.state["accounts"][account_id]
    status = acct["capabilities"].get(name)
    conn = store.state["connections"].get(account_id, {})
    cap = resource_skeleton("capability")
    reqs = copy.deepcopy(EMPTY_REQUIREMENTS)
    if status != "active":
        for key in ("currently_due", "eventually_due", "past_due", "pending_verification", "errors"):
            reqs[key] = copy.deepcopy(acct["requirements"].get(key, []))
        reqs["current_deadline"] = acct["requirements"].get("current_deadline")
        reqs["disabled_reason"] = (
            acct["requirements"].get("disabled_reason") if status is not None else None
        )
    cap.update(
        {
            "account": account_id,
            "id": name,
            "requested": status is not None,
            "requested_at": conn.get("requested_at", {}).get(name) if status else None,
            "requirements": reqs,
            "future_requirements": copy.deepcopy(acct.get("future_requirements", EMPTY_REQUIREMENTS)),
            "status": status or "inactive",
        }
    )
    return cap


def change_account(
    store: Store,
    account_id: str,
    mutate: Callable[[dict[str, Any]], None],
    *,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Apply `mutate` to an account; emit account.updated and capability.updated as Stripe does."""
    acct = store.state["accounts"][account_id]
    before = copy.deepcopy(acct)
    mutate(acct)
    store.mark_dirty()
    previous = previous_attributes(before, acct)
    if not previous:
        return acct
    record_event(
        store,
        "account.updated",
        acct,
        account=account_id,
        previous=previous,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )
    for name, status in acct["capabilities"].items():
        old = before["capabilities"].get(name)
        if old != status:
            record_event(
                store,
                "capability.updated",
                capability_object(store, account_id, name),
                account=account_id,
                previous={"status": old} if old else None,
                request_id=request_id,
                idempotency_key=idempotency_key,
            )
    return acct


def can_charge(acct: dict[str, Any]) -> bool:
    """Charges need an active ``card_payments``; a ``recipient`` account never has them."""
    return (acct["capabilities"].get("card_payments") == "active"
            and acct["tos_acceptance"].get("service_agreement", "full") != "recipient")


def complete_onboarding(acct: dict[str, Any]) -> None:
    """Everything submitted and verified: capabilities active, payouts (and charges) on."""
    acct["details_submitted"] = True
    acct["capabilities"] = {name: "active" for name in acct["capabilities"]}
    acct["charges_enabled"] = can_charge(acct)
    acct["payouts_enabled"] = True
    acct["requirements"] = copy.deepcopy(EMPTY_REQUIREMENTS)
    if acct["tos_acceptance"].get("date") is None:
        acct["tos_acceptance"] = {
            "date": acct["created"], "ip": "127.0.0.1", "user_agent": "emulator",
            "service_agreement": acct["tos_acceptance"].get("service_agreement", "full"),
        }
    if not acct["external_accounts"]["data"]:
        acct["external_accounts"]["data"] = [
            bank_account(acct["id"], acct["default_currency"], acct["country"])
        ]
    if acct["business_type"] is None:
        acct["business_type"] = "individual"


def leave_onboarding_incomplete(acct: dict[str, Any]) -> None:
    """The user clicked through but left items open: details submitted, requirements remain."""
    acct["details_submitted"] = True
    reqs = acct["requirements"]
    if not reqs["currently_due"]:
        reqs["currently_due"] = ["individual.verification.document"]
        reqs["eventually_due"] = sorted(set(reqs["eventually_due"]) | set(reqs["currently_due"]))
        reqs["past_due"] = list(reqs["currently_due"])
    reqs["disabled_reason"] = "requirements.past_due"
    acct["charges_enabled"] = False
    acct["payouts_enabled"] = False
    acct["capabilities"] = {
        name: ("inactive" if status == "active" else status)
        for name, status in acct["capabilities"].items()
    }


def seed_standard_accounts(store: Store) -> None:
    """Standard accounts that exist "on Stripe" but are not connected: OAuth can pick them."""
    if store.state.get("seeded"):
        return
    people = [
        ("ada@example.com", "Ada Lovelace Design"),
        ("grace@example.com", "Hopper Consulting"),
        ("alan@example.com", "Turing Translations"),
    ]
    for email, name in people:
        acct = build_account(
            store,
            account_type="standard",
            email=email,
            business_type="individual",
            capabilities=["card_payments", "transfers"],
            via="oauth",
        )
        complete_onboarding(acct)
        acct["business_profile"]["name"] = name
        acct["settings"]["dashboard"]["display_name"] = name
        add_account(store, acct, via="oauth", connected=False)
    store.state["seeded"] = True
    store.mark_dirty()


def platform_account(store: Store) -> dict[str, Any]:
    """The platform's own account object (GET /v1/account without Stripe-Account)."""
    acct = resource_skeleton("account")
    acct.update(
        {
            "id": store.state["platform_id"],
            "business_profile": {**acct["business_profile"], "name": "Connect Ops (emulator)"},
            "business_type": "company",
            "capabilities": {"card_payments": "active", "transfers": "active"},
            "charges_enabled": True,
            "controller": {"type": "account"},
            "country": store.config.platform_country,
            "created": 1700000000,
            "details_submitted": True,
            "email": "platform@connectops.example",
            "payouts_enabled": True,
            "requirements": copy.deepcopy(EMPTY_REQUIREMENTS),
            "type": "standard",
        }
    )
    acct["external_accounts"]["url"] = f"/v1/accounts/{acct['id']}/external_accounts"
    acct["settings"]["dashboard"]["display_name"] = "Connect Ops"
    return acct
