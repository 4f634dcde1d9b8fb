"""Transfers from the platform balance to connected accounts, and their reversals."""

from __future__ import annotations

import copy
from typing import Any

from emulator import account_state
from emulator.agreements import agreement_of
from emulator.errors import (
    StripeApiError,
    account_access_denied,
    invalid_request,
    resource_missing,
)
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

TRANSFER_CAPABILITIES = ("transfers", "crypto_transfers", "legacy_payments")
#: Transfers to `recipient` accounts become available this much later ("Service agreement types").
RECIPIENT_DELAY_SECONDS = 24 * 3600


def _destination(ctx: Ctx, destination: str) -> dict[str, Any]:
    if not account_state.is_connected(ctx.store, destination):
        if destination in ctx.state["accounts"]:  # it exists, but our access is gone
            raise account_access_denied(ctx.api_key, destination)
        raise resource_missing("destination", destination, "destination")
    acct = ctx.state["accounts"][destination]
    if not any(acct["capabilities"].get(c) == "active" for c in TRANSFER_CAPABILITIES):
        raise StripeApiError(
            400,
            "Your destination account needs to have at least one of the following "
            "capabilities enabled: transfers, crypto_transfers, legacy_payments",
            code="insufficient_capabilities_for_transfer",
            param="destination",
        )
    return acct


def _refresh_reversals(ctx: Ctx, transfer: dict[str, Any]) -> None:
    """Keep the embedded `reversals` list (newest first, up to 10) in step with the store."""
    mine = [r for r in ctx.state["reversals"].values() if r["transfer"] == transfer["id"]]
    mine.reverse()
    transfer["reversals"] = {
        "data": copy.deepcopy(mine[:10]),
        "has_more": len(mine) > 10,
        "object": "list",
        "total_count": len(mine),
        "url": f"/v1/transfers/{transfer['id']}/reversals",
    }


def create_transfer(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/transfers: move available funds to a connected account."""
    amount = positive_amount(params)
    currency = str(params["currency"]).lower()
    dest = _destination(ctx, str(params["destination"]))
    balance.debit(ctx.store, ctx.scope, currency, amount)
    transfer = skeleton("transfer")
    transfer_id = new_id("tr")
    payment_id = new_id("py")
    txn = balance.ledger(
        ctx.store,
        ctx.scope,
        amount=-amount,
        currency=currency,
        txn_type="transfer",
        source=transfer_id,
    )
    recipient = agreement_of(dest) == "recipient"
    available_on = ctx.now() + RECIPIENT_DELAY_SECONDS if recipient else None
    received = balance.ledger(
        ctx.store,
        dest["id"],
        amount=amount,
        currency=currency,
        txn_type="payment",
        source=payment_id,
        available_on=available_on,
    )
    if available_on is not None:
        balance.credit_pending(ctx.store, dest["id"], currency, amount,
                               available_on=available_on, txn=received)
    else:
        balance.credit(ctx.store, dest["id"], currency, amount)
    transfer.update(
        {
            "id": transfer_id,
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": txn,
            "created": ctx.now(),
            "currency": currency,
            "description": params.get("description"),
            "destination": dest["id"],
            "destination_payment": payment_id,
            "livemode": False,
            "metadata": metadata_update({}, params.get("metadata") or {}),
            "reversed": False,
            "source_transaction": params.get("source_transaction"),
            "source_type": params.get("source_type") or "card",
            "transfer_group": params.get("transfer_group"),
        }
    )
    _refresh_reversals(ctx, transfer)
    ctx.state["transfers"][transfer_id] = transfer
    claim(ctx, transfer_id)
    ctx.store.mark_dirty()
    ctx.event("transfer.created", transfer)
    return transfer


def retrieve_transfer(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/transfers/{transfer}."""
    return lookup(ctx, "transfers", path["transfer"], "transfer", "transfer")


def update_transfer(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/transfers/{transfer}: description and metadata; emits transfer.updated."""
    transfer = lookup(ctx, "transfers", path["transfer"], "transfer", "transfer")
    before = copy.deepcopy(transfer)
    if "description" in params:
        transfer["description"] = params["description"]
    if "metadata" in params:
        transfer["metadata"] = metadata_update(transfer["metadata"], params["metadata"])
    previous = {k: before[k] for k in ("description", "metadata") if before[k] != transfer[k]}
    if previous:
        ctx.store.mark_dirty()
        ctx.event("transfer.updated", transfer, previous=previous)
    return transfer


def list_transfers(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/transfers (filters: destination, transfer_group, created)."""
    items = [
        t
        for tid, t in ctx.state["transfers"].items()
        if ctx.state["scope"].get(tid, "platform") == ctx.scope
        and params.get("destination") in (None, t["destination"])
        and params.get("transfer_group") in (None, t["transfer_group"])
    ]
    return paginate(items, params, "/v1/transfers")


def create_reversal(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/transfers/{id}/reversals: pull funds back while the account's balance covers it."""
    transfer = lookup(ctx, "transfers", path["id"], "transfer", "id")
    remaining = transfer["amount"] - transfer["amount_reversed"]
    if remaining <= 0:
        raise invalid_request(f"Transfer {transfer['id']} is already fully reversed.", "amount")
    amount = positive_amount(params) if params.get("amount") is not None else remaining
    if amount > remaining:
        raise invalid_request(
            f"Amount must be no more than {remaining} (the transfer's unreversed amount).",
            "amount",
        )
    currency = transfer["currency"]
    if balance.available(ctx, transfer["destination"], currency) < amount:
        raise StripeApiError(
            400,
            "Insufficient funds in the destination account to reverse this transfer: the "
            "connected account's available balance does not cover the reversal amount.",
            code="balance_insufficient",
            param="amount",
        )
    balance.debit(ctx.store, transfer["destination"], currency, amount)
    balance.credit(ctx.store, ctx.scope, currency, amount)
    reversal_id = new_id("trr")
    txn = balance.ledger(
        ctx.store,
        ctx.scope,
        amount=amount,
        currency=currency,
        txn_type="transfer_cancel",
        source=reversal_id,
    )
    reversal = skeleton("transfer_reversal")
    reversal.update(
        {
            "id": reversal_id,
            "amount": amount,
            "balance_transaction": txn,
            "created": ctx.now(),
            "currency": currency,
            "destination_payment_refund": new_id("pyr"),
            "metadata": metadata_update({}, params.get("metadata") or {}),
            "source_refund": None,
            "transfer": transfer["id"],
        }
    )
    ctx.state["reversals"][reversal_id] = reversal
    claim(ctx, reversal_id)
    before = {"amount_reversed": transfer["amount_reversed"], "reversed": transfer["reversed"]}
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    _refresh_reversals(ctx, transfer)
    previous = {k: v for k, v in before.items() if transfer[k] != v}
    ctx.store.mark_dirty()
    ctx.event("transfer.reversed", transfer, previous=previous)
    return reversal


def list_reversals(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/transfers/{id}/reversals."""
    transfer = lookup(ctx, "transfers", path["id"], "transfer", "id")
    items = [r for r in ctx.state["reversals"].values() if r["transfer"] == transfer["id"]]
    return paginate(items, params, f"/v1/transfers/{transfer['id']}/reversals")


def _reversal(ctx: Ctx, path: dict[str, str]) -> dict[str, Any]:
    transfer = lookup(ctx, "transfers", path["transfer"], "transfer", "transfer")
    reversal = ctx.state["reversals"].get(path["id"])
    if reversal is None or reversal["transfer"] != transfer["id"]:
        raise resource_missing("transfer reversal", path["id"], "id")
    return reversal


def retrieve_reversal(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/transfers/{transfer}/reversals/{id}."""
    return _reversal(ctx, path)


def update_reversal(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/transfers/{transfer}/reversals/{id}: metadata."""
    reversal = _reversal(ctx, path)
    if "metadata" in params:
        reversal["metadata"] = metadata_update(reversal["metadata"], params["metadata"])
        _refresh_reversals(ctx, ctx.state["transfers"][reversal["transfer"]])
        ctx.store.mark_dirty()
    return reversal


ROUTES = {
    ("POST", "/v1/transfers"): create_transfer,
    ("GET", "/v1/transfers"): list_transfers,
    ("GET", "/v1/transfers/{transfer}"): retrieve_transfer,
    ("POST", "/v1/transfers/{transfer}"): update_transfer,
    ("POST", "/v1/transfers/{id}/reversals"): create_reversal,
    ("GET", "/v1/transfers/{id}/reversals"): list_reversals,
    ("GET", "/v1/transfers/{transfer}/reversals/{id}"): retrieve_reversal,
    ("POST", "/v1/transfers/{transfer}/reversals/{id}"): update_reversal,
}
