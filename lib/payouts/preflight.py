"""Preflight: can this freelancer be paid this amount right now? Named checks, clear messages.

Shown to the operator before confirming and re-checked just before the first Stripe call.
The account checks read the local mirror (``connected_accounts``, kept fresh by webhooks and
``lib.sync``); the balance check asks Stripe (``Balance.retrieve``), since a transfer needs the
platform's *available* balance in that currency and Stripe does not retry it when funds arrive.

Currency policy: a payout must be in the connected account's ``default_currency`` (the currency
the freelancer's bank account is paid in). Stripe could accept other currencies for some
accounts and convert them, but then the freelancer receives an amount nobody typed, after a
conversion fee; the desk pays in the account's own currency or not at all. An account whose
mirror has no default currency fails the check until it is refreshed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from lib.destinations import hold_message
from lib.errors import NotFoundError, StripeGatewayError
from lib.models import ConnectedAccount, Freelancer, Payout
from lib.money import Money, format_money
from lib.payouts.ledger import connected_account_of
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

CHECK_CONNECTED = "connected"
CHECK_DESTINATION_CONFIRMED = "destination_confirmed"
CHECK_TRANSFERS = "transfers_capability"
CHECK_PAYOUTS = "payouts_enabled"
CHECK_PAST_DUE = "nothing_past_due"
CHECK_CURRENCY = "currency_supported"
CHECK_BALANCE = "balance_available"
CHECK_DESTINATION = "same_account_as_requested"


@dataclass(frozen=True, slots=True)
class PreflightCheck:
    """One named check: passed or not, and what it means for a person."""

    name: str
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class PreflightResult:
    """Every check run for one payout; ``ok`` only when all passed."""

    checks: tuple[PreflightCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[PreflightCheck]:
        return [check for check in self.checks if not check.ok]

    def summary(self) -> str:
        """The failing checks' messages on one line ('' when all passed)."""
        return "; ".join(check.message for check in self.failures)

    def to_rows(self) -> list[dict[str, Any]]:
        return [{"check": c.name, "ok": c.ok, "message": c.message} for c in self.checks]


def available_in(balance: Mapping[str, Any], currency: str) -> int:
    """The platform's available amount in ``currency`` from a Balance object (minor units)."""
    total = 0
    for entry in balance.get("available") or []:
        if str(entry.get("currency", "")).lower() == currency:
            total += int(entry.get("amount") or 0)
    return total


def available_balance(gateway: StripeGateway, currency: str) -> int:
    """Ask Stripe for the platform's available balance in ``currency``."""
    return available_in(gateway.retrieve_balance().data, currency)


def account_checks(
    freelancer: Freelancer, account: ConnectedAccount | None, money: Money
) -> list[PreflightCheck]:
    """The checks answered by the local mirror of the freelancer's account."""
    name = freelancer.name
    if not freelancer.stripe_account_id or account is None or account.deauthorized_at:
        reason = (
            "has no connected Stripe account" if not freelancer.stripe_account_id
            else "has disconnected their Stripe account" if account and account.deauthorized_at
            else f"is connected to {freelancer.stripe_account_id}, which has not been synced yet"
        )
        return [PreflightCheck(CHECK_CONNECTED, False, f"{name} {reason}.")]
    checks = [PreflightCheck(CHECK_CONNECTED, True, f"Connected to {account.stripe_id}.")]
    # A destination a connect flow set (lib.destinations) is paid only once confirmed.
    confirmed = freelancer.unconfirmed_account_id is None
    checks.append(PreflightCheck(
        CHECK_DESTINATION_CONFIRMED, confirmed,
        "The payout destination is confirmed." if confirmed else hold_message(freelancer),
    ))
    capability = account.transfers_capability or "not requested"
    checks.append(PreflightCheck(
        CHECK_TRANSFERS, capability == "active",
        "Transfers capability is active." if capability == "active"
        else f"The account's transfers capability is {capability}, not active.",
    ))
    checks.append(PreflightCheck(
        CHECK_PAYOUTS, bool(account.payouts_enabled),
        "Payouts are enabled." if account.payouts_enabled
        else "Stripe has not enabled payouts for this account.",
    ))
    past_due = int(account.past_due_count or 0)
    checks.append(PreflightCheck(
        CHECK_PAST_DUE, past_due == 0,
        "Nothing is past due." if past_due == 0
        else f"{past_due} requirement(s) are past due on the account.",
    ))
    account_currency = (account.default_currency or "").lower()
    if not account_currency:
        checks.append(PreflightCheck(
            CHECK_CURRENCY, False,
            "The account's currency is unknown: refresh the account from Stripe.",
        ))
    else:
        checks.append(PreflightCheck(
            CHECK_CURRENCY, account_currency == money.currency,
            f"The account is paid in {account_currency.upper()}."
            if account_currency == money.currency
            else f"The account is paid in {account_currency.upper()}, not "
                 f"{money.currency.upper()}.",
        ))
    return checks


def balance_check(available_minor: int | None, money: Money, *, error: str | None = None
                  ) -> PreflightCheck:
    """Whether the platform's available balance covers ``money``."""
    if available_minor is None:
        return PreflightCheck(
            CHECK_BALANCE, False,
            f"Could not read the platform balance: {error or 'no answer from Stripe'}.",
        )
    have = Money(available_minor, money.currency)
    if available_minor >= money.amount_minor:
        return PreflightCheck(CHECK_BALANCE, True, f"Available balance {format_money(have)}.")
    return PreflightCheck(
        CHECK_BALANCE, False,
        f"The platform's available balance is {format_money(have)}, less than "
        f"{format_money(money)}.",
    )


def _balance(gateway: StripeGateway | None, money: Money,
             available_minor: int | None) -> PreflightCheck | None:
    if available_minor is not None:
        return balance_check(available_minor, money)
    if gateway is None:
        return None
    try:
        return balance_check(available_balance(gateway, money.currency), money)
    except StripeGatewayError as exc:
        logger.warning("balance check failed: %s (request %s)", exc, exc.request_id)
        return balance_check(None, money, error=exc.message)


def preflight(
    session: Session, *, gateway: StripeGateway | None, freelancer_id: int, money: Money,
    available_minor: int | None = None,
) -> PreflightResult:
    """Run every check for paying ``money`` to a freelancer.

    The balance check asks ``gateway`` unless ``available_minor`` is given; with neither
    (``gateway=None``) it is left out, for callers that check a total instead (bulk).
    """
    freelancer = session.get(Freelancer, freelancer_id)
    if freelancer is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    checks = account_checks(freelancer, connected_account_of(session, freelancer), money)
    balance = _balance(gateway, money, available_minor)
    if balance is not None:
        checks.append(balance)
    return PreflightResult(tuple(checks))


def preflight_payout(
    session: Session, *, gateway: StripeGateway | None, payout: Payout
) -> PreflightResult:
    """The checks again for a ledger row, plus: the freelancer is still on the same account."""
    money = Money(payout.amount_minor, payout.currency)
    result = preflight(session, gateway=gateway, freelancer_id=payout.freelancer_id, money=money)
    freelancer = session.get(Freelancer, payout.freelancer_id)
    current = freelancer.stripe_account_id if freelancer else None
    same = current == payout.stripe_account_id
    destination = PreflightCheck(
        CHECK_DESTINATION, same,
        f"Still connected to {payout.stripe_account_id}." if same
        else f"The payout was requested for {payout.stripe_account_id} but the freelancer is now "
             f"connected to {current or 'no account'}: request a new payout.",
    )
    return PreflightResult((destination, *result.checks))
