"""Payouts from an available balance (usually a connected account's, via Stripe-Account).

A payout is created `pending`, debits the balance at once, and settles when emulator time
reaches its `arrival_date`: `paid` (payout.paid), or `failed` (payout.failed, funds back)
when a failure was queued with `/_emulator/payouts/fail_next` or forced per payout.
"""

from __future__ import annotations

import copy
from typing import Any

from emulator.errors import StripeApiError
from emulator.events import record_event
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
from emulator.store import PLATFORM, Store, new_id

FAILURE_MESSAGES = {
    "account_closed": "The bank account has been closed.",
    "account_frozen": "The bank account has been frozen.",
    "insufficient_funds": "Your Stripe account has insufficient funds to cover the payout.",
    "invalid_account_number": "The bank account number appears to be invalid.",
    "no_account": "The bank account details on file are probably incorrect.",
    "could_not_process": "The bank could not process this payout.",
}


def create_payout(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/payouts: amount must not exceed the scope's available balance."""
    amount = positive_amount(params)
    currency = str(params["currency"]).lower()
    destination = None
    if ctx.account:
        acct = ctx.state["accounts"][ctx.account]
        if not acct["payouts_enabled"]:
            raise StripeApiError(
                400,
                "Payouts have been disabled on this account. Check the account's requirements "
                "to see if any additional information needs to be provided.",
                code="payouts_not_allowed",
            )
        banks = acct["external_accounts"]["data"]
        destination = banks[0]["id"] if banks else None
    if balance.available(ctx, ctx.scope, currency) < amount:
        raise StripeApiError(
            400,
            "You have insufficient funds in your Stripe account for this transfer. Your card "
            "balance is too low. You can use the /v1/balance endpoint to view your Stripe "
            "balance (for more details, see stripe.com/docs/api#balance).",
            code="balance_insufficient",
            param="amount",
        )
    balance.debit(ctx.store, ctx.scope, currency, amount)
    payout = skeleton("payout")
    payout_id = new_id("po")
    now = ctx.now()
    payout.update(
        {
            "id": payout_id,
            "amount": amount,
            "arrival_date": now + int(ctx.store.config.payout_settle_seconds),
            "automatic": False,
            "balance_transaction": balance.ledger(
                ctx.store,
                ctx.scope,
                amount=-amount,
                currency=currency,
                txn_type="payout",
                source=payout_id,
            ),
            "created": now,
            "currency": currency,
            "description": params.get("description"),
            "destination": destination or new_id("ba"),
            "failure_balance_transaction": None,
            "failure_code": None,
            "failure_message": None,
            "metadata": metadata_update({}, params.get("metadata") or {}),
            "method": params.get("method") or "standard",
            "reconciliation_status": "not_applicable",
            "source_type": params.get("source_type") or "card",
            "statement_descriptor": params.get("statement_descriptor"),
            "status": "pending",
        }
    )
    ctx.state["payouts"][payout_id] = payout
    claim(ctx, payout_id)
    queued = ctx.state.setdefault("payout_outcomes", [])
    if queued:
        ctx.state.setdefault("payout_plans", {})[payout_id] = queued.pop(0)
    ctx.store.mark_dirty()
    ctx.event("payout.created", payout, account=ctx.account)
    return payout


def retrieve_payout(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/payouts/{payout}."""
    return lookup(ctx, "payouts", path["payout"], "payout", "payout")


def list_payouts(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/payouts (filters: status, created)."""
    items = [
        p
        for pid, p in ctx.state["payouts"].items()
        if ctx.state["scope"].get(pid, PLATFORM) == ctx.scope
        and params.get("status") in (None, p["status"])
    ]
    return paginate(items, params, "/v1/payouts")


def _owner(store: Store, payout_id: str) -> str | None:
    scope = store.state["scope"].get(payout_id, PLATFORM)
    return None if scope == PLATFORM else scope


def pay_payout(store: Store, payout_id: str) -> dict[str, Any]:
    """Mark a pending payout paid and emit payout.paid (inside a transaction)."""
    payout = store.state["payouts"][payout_id]
    previous = {"status": payout["status"]}
    payout["status"] = "paid"
    payout["reconciliation_status"] = "completed"
    store.mark_dirty()
    record_event(store, "payout.paid", payout, account=_owner(store, payout_id), previous=previous)
    return payout


def fail_payout(
    store: Store, payout_id: str, failure_code: str = "account_closed"
) -> dict[str, Any]:
    """Fail a payout: funds return to the balance, payout.failed is emitted."""
    payout = store.state["payouts"][payout_id]
    before = copy.deepcopy(payout)
    scope = store.state["scope"].get(payout_id, PLATFORM)
    balance.credit(store, scope, payout["currency"], payout["amount"])
    txn = balance.ledger(
        store,
        scope,
        amount=payout["amount"],
        currency=payout["currency"],
        txn_type="payout_failure",
        source=payout_id,
    )
    payout.update(
        {
            "status": "failed",
            "failure_code": failure_code,
            "failure_message": FAILURE_MESSAGES.get(failure_code, "The payout failed."),
            "failure_balance_transaction": txn,
        }
    )
    store.mark_dirty()
    previous = {
        k: before[k]
        for k in ("status", "failure_code", "failure_message", "failure_balance_transaction")
    }
    record_event(
        store, "payout.failed", payout, account=_owner(store, payout_id), previous=previous
    )
    return payout


def settle_due_payouts(store: Store) -> int:
    """Settle every pending payout whose arrival date has come; returns how many."""
    settled = 0
    with store.transaction():
        now = store.now()
        plans = store.state.setdefault("payout_plans", {})
        for payout_id, payout in list(store.state["payouts"].items()):
            if payout["status"] not in ("pending", "in_transit") or payout["arrival_date"] > now:
                continue
            if payout_id in plans:
                fail_payout(store, payout_id, plans.pop(payout_id))
            else:
                pay_payout(store, payout_id)
            settled += 1
    return settled


ROUTES = {
    ("POST", "/v1/payouts"): create_payout,
    ("GET", "/v1/payouts"): list_payouts,
    ("GET", "/v1/payouts/{payout}"): retrieve_payout,
}
