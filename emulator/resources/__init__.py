"""Stripe API resources the emulator serves; ROUTES maps (METHOD, spec template) to handlers."""

from __future__ import annotations

from emulator.resources import (
    account_links,
    accounts,
    balance,
    charges,
    events,
    payouts,
    transfers,
)
from emulator.resources.common import Handler

ROUTES: dict[tuple[str, str], Handler] = {}
for _module in (accounts, account_links, balance, charges, events, payouts, transfers):
    ROUTES.update(_module.ROUTES)

__all__ = ["ROUTES"]
