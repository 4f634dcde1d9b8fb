"""Balances per scope (the platform and each connected account) and balance transactions.

Amounts live in `state["balances"][scope][currency] = {"available", "pending"}`; every
movement writes a `txn_` balance transaction, listed by `GET /v1/balance_transactions` (newest
first, per scope) and kept for `expand[]=balance_transaction` and `/_emulator/state`.

Funds credited as pending (a transfer to a `recipient` account: available 24 hours later, per
"Service agreement types"; or pending funds added through the control API, with the
`available_on` date given there and a `pending` transaction) wait in `state["pending_funds"]`
until emulator time reaches their `available_on`; every balance read or debit first releases what
is due, so a clock jump is seen by the next request without waiting for a background tick.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import balance_insufficient
from emulator.resources.common import Ctx, paginate, skeleton
from emulator.store import PLATFORM, Store, new_id


def funds(store: Store, scope: str, currency: str) -> dict[str, int]:
    """The mutable {available, pending} cell for one scope and currency."""
    per_scope = store.state["balances"].setdefault(scope, {})
    return per_scope.setdefault(currency, {"available": 0, "pending": 0})


def release_due(store: Store) -> int:
    """Move pending funds whose ``available_on`` has come to the available balance."""
    pending = store.state.get("pending_funds") or []
    if not pending:
        return 0
    now = store.now()
    due = [entry for entry in pending if entry["available_on"] <= now]
    if not due:
        return 0
    for entry in due:
        cell = funds(store, entry["scope"], entry["currency"])
        cell["pending"] -= entry["amount"]
        cell["available"] += entry["amount"]
        txn = store.state["balance_transactions"].get(entry["txn"])
        if txn is not None:
            txn["status"] = "available"
    store.state["pending_funds"] = [entry for entry in pending if entry["available_on"] > now]
    store.mark_dirty()
    return len(due)


def credit_pending(store: Store, scope: str, currency: str, amount: int, *,
                   available_on: int, txn: str) -> None:
    """Add to the pending balance until ``available_on`` (emulator time)."""
    funds(store, scope, currency)["pending"] += amount
    store.state.setdefault("pending_funds", []).append(
        {"scope": scope, "currency": currency, "amount": amount, "available_on": available_on,
         "txn": txn})
    store.mark_dirty()


def available(ctx: Ctx, scope: str, currency: str) -> int:
    """Available amount in minor units."""
    release_due(ctx.store)
    cell = ctx.state["balances"].get(scope, {}).get(currency)
    return int(cell["available"]) if cell else 0


def debit(store: Store, scope: str, currency: str, amount: int) -> None:
    """Take from the available balance, or raise balance_insufficient leaving it unchanged."""
    release_due(store)
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
    available_on: int | None = None,
) -> str:
    """Write a balance transaction in `scope` and return its id (pending until `available_on`)."""
    now = store.now()
    pending = available_on is not None and available_on > now
    txn: dict[str, Any] = {"object": "balance_transaction"}
    txn.update(
        {
            "id": new_id("txn"),
            "amount": amount,
            "available_on": available_on if pending else now,
            "created": now,
            "currency": currency,
            "description": description,
            "exchange_rate": None,
            "fee": 0,
            "fee_details": [],
            "net": amount,
            "reporting_category": reporting_category or txn_type,
            "source": source,
            "status": "pending" if pending else "available",
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
    release_due(ctx.store)
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


def pending_funds(store: Store, scope: str, *, currency: str, amount: int,
                  available_on: int) -> str:
    """Record ``amount`` of pending funds becoming available on ``available_on`` (unix)."""
    txn_id = ledger(store, scope, amount=amount, currency=currency, txn_type="adjustment",
                    source="emulator_control", description="Pending funds (emulator control)")
    txn = store.state["balance_transactions"][txn_id]
    txn.update({"status": "pending", "available_on": int(available_on)})
    return txn_id


def list_balance_transactions(ctx: Ctx, params: dict[str, Any],
                              path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/balance_transactions (filters: created, currency, type, source)."""
    wanted = {key: str(params[key]) for key in ("currency", "type", "source") if params.get(key)}
    if "currency" in wanted:
        wanted["currency"] = wanted["currency"].lower()
    items = [
        txn for txn_id, txn in ctx.state["balance_transactions"].items()
        if ctx.state["scope"].get(txn_id, PLATFORM) == ctx.scope
        and all(str(txn.get(key)) == value for key, value in wanted.items())
        and (not params.get("payout") or txn.get("source") == params["payout"])
    ]
    return paginate(items, params, "/v1/balance_transactions")


ROUTES = {
    ("GET", "/v1/balance"): retrieve_balance,
    ("GET", "/v1/balance_transactions"): list_balance_transactions,
}
