"""Charges with test tokens: the way tests and demos top up an available balance.

Simplified from Stripe: funds are available at once (as with `tok_bypassPending`) and no
fee is taken, so a charge of N adds exactly N to the available balance.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import StripeApiError, invalid_request, resource_missing
from emulator.resources import balance
from emulator.resources.common import (
    Ctx,
    claim,
    lookup,
    metadata_update,
    paginate,
    positive_amount,
    skeleton,
)
from emulator.store import new_id

GOOD_TOKENS = {
    "tok_visa": ("visa", "4242", "credit"),
    "tok_bypassPending": ("visa", "0077", "credit"),
    "tok_visa_debit": ("visa", "5556", "debit"),
    "tok_mastercard": ("mastercard", "4444", "credit"),
    "tok_amex": ("amex", "8431", "credit"),
    "tok_discover": ("discover", "1117", "credit"),
    "tok_us": ("visa", "4242", "credit"),
}
DECLINES = {
    "tok_chargeDeclined": ("generic_decline", "0002"),
    "tok_chargeDeclinedInsufficientFunds": ("insufficient_funds", "9995"),
    "tok_chargeDeclinedFraudulent": ("fraudulent", "0019"),
    "tok_chargeDeclinedExpiredCard": ("expired_card", "0069"),
}
MINIMUMS = {"usd": 50, "eur": 50, "gbp": 30, "jpy": 50, "cad": 50, "aud": 50}


def _charge(
    ctx: Ctx, params: dict[str, Any], amount: int, currency: str, card: tuple[str, str, str]
) -> dict[str, Any]:
    brand, last4, funding = card
    charge = skeleton("charge")
    details = charge["payment_method_details"]
    details["card"].update({"brand": brand, "last4": last4, "funding": funding, "network": brand})
    charge.update(
        {
            "id": new_id("ch"),
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "balance_transaction": None,
            "billing_details": {**charge["billing_details"], "name": None},
            "captured": True,
            "created": ctx.now(),
            "currency": currency,
            "description": params.get("description"),
            "metadata": metadata_update({}, params.get("metadata") or {}),
            "paid": True,
            "payment_method": new_id("card"),
            "refunded": False,
            "status": "succeeded",
            "transfer_group": params.get("transfer_group"),
        }
    )
    return charge


def create_charge(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/charges with a test token; a decline token answers 402 card_declined."""
    amount = positive_amount(params)
    currency = str(params.get("currency") or "").lower()
    if not currency:
        raise invalid_request("Missing required param: currency.", "currency")
    source = params.get("source")
    if not source:
        raise invalid_request("Must provide source or customer.", "source")
    if amount < MINIMUMS.get(currency, 1):
        raise StripeApiError(
            400,
            f"Amount must be at least {MINIMUMS[currency]} {currency} (minor units)",
            code="amount_too_small",
            param="amount",
        )
    if source in DECLINES:
        decline_code, last4 = DECLINES[source]
        charge = _charge(ctx, params, amount, currency, ("visa", last4, "credit"))
        charge.update(
            {
                "amount_captured": 0,
                "captured": False,
                "paid": False,
                "status": "failed",
                "failure_code": "card_declined"
                if decline_code != "expired_card"
                else "expired_card",
                "failure_message": "Your card was declined.",
            }
        )
        _store(ctx, charge)
        ctx.event("charge.failed", charge, account=ctx.account)
        raise StripeApiError(
            402,
            "Your card was declined."
            if decline_code != "expired_card"
            else "Your card has expired.",
            type="card_error",
            code=charge["failure_code"],
            extra={"charge": charge["id"], "decline_code": decline_code},
        )
    if source not in GOOD_TOKENS:
        raise resource_missing("token", str(source), "source")
    charge = _charge(ctx, params, amount, currency, GOOD_TOKENS[source])
    balance.credit(ctx.store, ctx.scope, currency, amount)
    charge["balance_transaction"] = balance.ledger(
        ctx.store,
        ctx.scope,
        amount=amount,
        currency=currency,
        txn_type="charge",
        source=charge["id"],
    )
    _store(ctx, charge)
    ctx.event("charge.succeeded", charge, account=ctx.account)
    ctx.event("balance.available", balance.balance_object(ctx, ctx.scope), account=ctx.account)
    return charge


def _store(ctx: Ctx, charge: dict[str, Any]) -> None:
    ctx.state["charges"][charge["id"]] = charge
    claim(ctx, charge["id"])
    ctx.store.mark_dirty()


def retrieve_charge(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/charges/{charge}."""
    return lookup(ctx, "charges", path["charge"], "charge", "charge")


def list_charges(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/charges (filters: created, transfer_group)."""
    items = [
        c
        for cid, c in ctx.state["charges"].items()
        if ctx.state["scope"].get(cid, "platform") == ctx.scope
        and params.get("transfer_group") in (None, c.get("transfer_group"))
    ]
    return paginate(items, params, "/v1/charges")


ROUTES = {
    ("POST", "/v1/charges"): create_charge,
    ("GET", "/v1/charges"): list_charges,
    ("GET", "/v1/charges/{charge}"): retrieve_charge,
}
