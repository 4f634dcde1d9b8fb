"""Rows and operators the payout tests need."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lib.accounts import upsert_account
from lib.freelancers import create_freelancer
from lib.models import Freelancer, Payout
from lib.roles import Operator, Role

ADMIN = Operator("alice", frozenset({Role.ADMIN}))
ADMIN_2 = Operator("arthur", frozenset({Role.ADMIN}))
FINANCE = Operator("fiona", frozenset({Role.FINANCE}))
FINANCE_2 = Operator("felix", frozenset({Role.FINANCE}))
MANAGER = Operator("mia", frozenset({Role.MANAGER}))

_numbers = itertools.count(1)


def account_dict(account_id: str, **overrides: Any) -> dict[str, Any]:
    """A Stripe-shaped Express account that can be paid in USD."""
    account: dict[str, Any] = {
        "id": account_id, "object": "account", "type": "express", "country": "US",
        "email": f"{account_id}@example.com", "default_currency": "usd",
        "charges_enabled": True, "payouts_enabled": True, "details_submitted": True,
        "capabilities": {"transfers": "active"},
        "requirements": {"currently_due": [], "eventually_due": [], "past_due": [],
                         "pending_verification": [], "errors": [], "disabled_reason": None},
        "future_requirements": {}, "created": 1_780_000_000, "livemode": False,
    }
    account.update(overrides)
    return account


def add_freelancer(
    session: Session, *, account_id: str | None = "auto", name: str = "Frida Freelancer",
    email: str | None = None, **account_overrides: Any,
) -> Freelancer:
    """A freelancer, connected to a mirrored account unless ``account_id`` is None."""
    n = next(_numbers)
    freelancer = create_freelancer(session, name=name, email=email or f"f{n}-{id(session)}@ex.com")
    if account_id is not None:
        acct = f"acct_test{n:06d}{id(session) % 10000:04d}" if account_id == "auto" else account_id
        upsert_account(session, account=account_dict(acct, **account_overrides))
        freelancer.stripe_account_id = acct
        session.flush()
    return freelancer


def payout_count(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Payout)) or 0)
