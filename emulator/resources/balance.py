"""Balances per scope (the platform and each connected account) and balance transactions.

Amounts live in `state["balances"][scope][currency] = {"available", "pending"}`; every
movement writes a `txn_` balance transaction (kept for `expand[]=balance_transaction` and
`/_emulator/state`; the balance_transactions endpoints are outside the served subset).
"""

from __future__ import annotations

from typing import Any

from emulator.errors import balance_insufficient
from emulator.resources.common import Ctx, skeleton
from emulator.store import PLATFORM, Store, new_id


def funds(store: Store, scope: str, currency: str) -> dict[str, int]:
    """The mutable {available, pending} cell for one scope and currency."""
    per_scope = store.state["balances"].setdefault(scope, {})
    return per_scope.setdefault(currency, {"available": 0, "pending": 0})


def available(ctx: Ctx, scope: str, currency: str) -> int:
    """Available amount in minor units."""
    cell = ctx.state["balances"].get(scope, {}).get(currency)
    return int(cell["available"]) if cell else 0


def debit(store: Store, scope: str, currency: str, amount: int) -> None:
    """Take from the available balance, or raise balance_insufficient leaving it unchanged."""
    cell = funds(store, scope, currency)
    if cell["available"] < amount:
        raise balance_insufficient(currency)
    cell["available"] -= amount
    store.mark_dirty()


def credit(store: Store, scope: str, currency: str, amount: int) -> None:
    """Add to the available balance."""
    funds(store, scope, currency)["available"] += amount
    store.mark_dirty()


def ledger(
    store: Store,
    scope: str,
    *,
    amount: int,
    currency: str,
    txn_type: str,
    source: str,
    description: str | None = None,
    reporting_category: str | None = None,
) -> str:
    """Write a balance transaction in `scope` and return its id."""
    now = store.now()
    txn: dict[str, Any] = {"object": "balance_transaction"}
    txn.update(
        {
            "id": new_id("txn"),
            "amount": amount,
            "available_on": now,
            "created": now,
            "currency": currency,
            "description": description,
            "exchange_rate": None,
            "fee": 0,
            "fee_details": [],
            "net": amount,
            "reporting_category": reporting_category or txn_type,
            "source": source,
            "status": "available",
            "type": txn_type,
        }
    )
    store.state["balance_transactions"][txn["id"]] = txn
    if scope != PLATFORM:
        store.state["scope"][txn["id"]] = scope
    store.mark_dirty()
    return str(txn["id"])


def balance_object(ctx: Ctx, scope: str) -> dict[str, Any]:
    """The `balance` object Stripe returns for one scope."""
    body = skeleton("balance")
    cells = ctx.state["balances"].get(scope, {}) or {}
    if not cells:
        currency = "usd"
        if scope != PLATFORM and scope in ctx.state["accounts"]:
            currency = ctx.state["accounts"][scope].get("default_currency") or "usd"
        cells = {currency: {"available": 0, "pending": 0}}
    body["available"] = [
        {"amount": c["available"], "currency": cur, "source_types": {"card": c["available"]}}
        for cur, c in cells.items()
    ]
    body["pending"] = [
        {"amount": c["pending"], "currency": cur, "source_types": {"card": c["pending"]}}
        for cur, c in cells.items()
    ]
    body["connect_reserved"] = [{"amount": 0, "currency": cur} for cur in cells]
    body["livemode"] = False
    for key in ("instant_available", "issuing", "refund_and_dispute_prefunding"):
        body.pop(key, None)
    return body


def retrieve_balance(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/balance (platform, or the Stripe-Account's balance)."""
    return balance_object(ctx, ctx.scope)


ROUTES = {
    ("GET", "/v1/balance"): retrieve_balance,
}
