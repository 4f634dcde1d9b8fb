"""What both ways of connecting share: attaching and detaching an account, and the link either
protocol hands out (``lib.connect_flow`` is the entry point; ``lib.connect_oauth`` and
``lib.connect_onboarding`` are the two protocols).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from lib.db import utcnow
from lib.destinations import clear_destination, mark_new_destination
from lib.models import ConnectionMethod, Freelancer


@dataclass(frozen=True, slots=True)
class ConnectLink:
    """A single-use link that connects a freelancer's Stripe account, recorded as an attempt."""

    url: str
    expires_in: int
    method: ConnectionMethod
    attempt_id: int


def attach(freelancer: Freelancer, *, account_id: str, method: ConnectionMethod) -> None:
    """Make ``account_id`` the freelancer's connected account (held until they confirm it)."""
    if freelancer.stripe_account_id != account_id:
        freelancer.stripe_account_id = account_id
        freelancer.connected_at = utcnow()
        # A new destination: payouts to it wait for the freelancer's (or an admin's) confirmation.
        mark_new_destination(freelancer, account_id=account_id)
    freelancer.connection_method = method.value


def detach(session: Session, *, freelancer: Freelancer, at: datetime | None = None) -> None:
    """Forget the freelancer's current account (the mirror and history are kept)."""
    freelancer.stripe_account_id = None
    freelancer.connection_method = None
    clear_destination(freelancer)
    freelancer.disconnected_at = at or utcnow()
