"""A new payout destination is held until it is confirmed.

An OAuth URL or an onboarding link acts for whoever completes it. A leaked one (a forwarded
email, a shared screen, a link scanner) lets another person attach *their* Stripe account to a
freelancer, or enter their bank in the freelancer's new Express account, and the next payout goes
to them. So whenever a connect flow makes an account a freelancer's payout destination (a new
connection through OAuth or onboarding, or any change of account) :func:`mark_new_destination`
records it in ``freelancers.unconfirmed_account_id`` and preflight holds every payout to it
(``lib.payouts.preflight``, ``destination_confirmed``) until either

- the freelancer confirms it on their payment settings, which show what Stripe reports about
  the account (email, business name, the bank and last four digits it pays out to), or
- an admin confirms it with a reason (``Action.CONFIRM_DESTINATION``), for a freelancer who
  confirmed another way (a call, a ticket).

Both are audited (``connect.destination_confirm``) with what was shown. A confirmation names the
account it is for, so one sent from a page that showed another account changes nothing. A
disconnect clears the hold (there is no destination); connecting again, even the same account,
holds again. Connections made before the hold existed (migration 0008) count as confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib import audit
from lib.db import utcnow
from lib.errors import ConflictError, NotFoundError, ValidationError
from lib.models import ConnectedAccount, Freelancer
from lib.roles import Action, Operator, authorize, authorize_on_freelancer

#: The reason an admin gives is kept in the audit log; enough for a ticket reference and why.
MAX_REASON = 500
MIN_REASON = 5


@dataclass(frozen=True, slots=True)
class DestinationFacts:
    """What Stripe reports about an account that lets a person recognise it as theirs."""

    account_id: str
    email: str | None
    business_name: str | None
    bank_name: str | None
    bank_last4: str | None

    @property
    def bank(self) -> str | None:
        """"STRIPE TEST BANK ••••6789", or None when Stripe reported no bank account."""
        if not self.bank_last4:
            return None
        return f"{self.bank_name or 'Bank account'} ••••{self.bank_last4}"

    def shown(self) -> dict[str, str | None]:
        """The facts as the audit log keeps them (nothing beyond what the page showed)."""
        return {"account": self.account_id, "email": self.email,
                "business_name": self.business_name, "bank": self.bank}


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def destination_facts(account_id: str, raw: Mapping[str, Any] | None) -> DestinationFacts:
    """The recognisable facts of an account from its mirrored Stripe object."""
    raw = raw or {}
    profile = raw.get("business_profile") or {}
    company = raw.get("company") or {}
    dashboard = (raw.get("settings") or {}).get("dashboard") or {}
    name = (_text(profile.get("name")) or _text(company.get("name"))
            or _text(dashboard.get("display_name")))
    bank_name = bank_last4 = None
    externals = (raw.get("external_accounts") or {}).get("data") or []
    defaults = [e for e in externals if isinstance(e, Mapping) and e.get("default_for_currency")]
    for external in defaults or [e for e in externals if isinstance(e, Mapping)]:
        bank_name, bank_last4 = _text(external.get("bank_name")), _text(external.get("last4"))
        break
    return DestinationFacts(account_id=account_id, email=_text(raw.get("email")),
                            business_name=name, bank_name=bank_name, bank_last4=bank_last4)


def mark_new_destination(freelancer: Freelancer, *, account_id: str) -> None:
    """A connect flow made ``account_id`` this freelancer's destination: hold it."""
    freelancer.unconfirmed_account_id = account_id
    freelancer.destination_confirmed_at = None
    freelancer.destination_confirmed_by = None


def clear_destination(freelancer: Freelancer) -> None:
    """The freelancer has no destination any more (disconnected): nothing to confirm."""
    freelancer.unconfirmed_account_id = None


def hold_message(freelancer: Freelancer) -> str:
    """Why payouts to the freelancer's new destination are held, and how it ends."""
    since = freelancer.connected_at.strftime("%d %b %Y %H:%M UTC") if freelancer.connected_at else None
    when = f" on {since}" if since else ""
    return (
        f"Payouts to {freelancer.unconfirmed_account_id} are held: it became "
        f"{freelancer.name}'s payout destination{when} and has not been confirmed. "
        f"{freelancer.name} confirms it on their payment settings page, or an admin confirms it "
        "on the Accounts page with a reason."
    )


def _mirror(session: Session, account_id: str) -> Mapping[str, Any] | None:
    return session.scalar(select(ConnectedAccount.raw).where(ConnectedAccount.stripe_id == account_id))


@dataclass(frozen=True, slots=True)
class Destination:
    """A freelancer's current payout destination and whether payouts to it are held."""

    freelancer_id: int
    facts: DestinationFacts
    confirmed: bool
    connected_at: datetime | None
    confirmed_at: datetime | None
    confirmed_by: str | None


def current_destination(session: Session, *, freelancer_id: int) -> Destination | None:
    """The freelancer's connected account as a destination; None when not connected."""
    freelancer = session.get(Freelancer, freelancer_id)
    if freelancer is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    account_id = freelancer.stripe_account_id
    if account_id is None:
        return None
    return Destination(
        freelancer_id=freelancer.id, facts=destination_facts(account_id, _mirror(session, account_id)),
        confirmed=freelancer.unconfirmed_account_id is None,
        connected_at=freelancer.connected_at, confirmed_at=freelancer.destination_confirmed_at,
        confirmed_by=freelancer.destination_confirmed_by,
    )


def _authorize_confirmation(session: Session, operator: Operator | None,
                            freelancer_id: int) -> bool:
    """True for the freelancer themselves, False for an operator allowed to confirm; raises."""
    return authorize_on_freelancer(operator, Action.CONFIRM_DESTINATION,
                                   freelancer_id=freelancer_id, session=session)


def confirm_destination(
    session: Session, *, operator: Operator | None, freelancer_id: int, account_id: str,
    reason: str | None = None,
) -> bool:
    """Confirm ``account_id`` as the freelancer's destination; False when it already was.

    The freelancer confirms their own; an admin must give a reason. ``account_id`` is the account
    the confirming page showed: when it is not the current destination nothing changes
    (``ConflictError``).
    """
    own = _authorize_confirmation(session, operator, freelancer_id)
    assert operator is not None
    reason = (reason or "").strip()
    if not own and len(reason) < MIN_REASON:
        raise ValidationError("Give the reason for confirming this destination (how the "
                              "freelancer confirmed it, a ticket): it is kept in the audit log.")
    if len(reason) > MAX_REASON:
        raise ValidationError(f"The reason is too long (at most {MAX_REASON} characters).")
    freelancer = session.get(Freelancer, freelancer_id)
    if freelancer is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    if freelancer.stripe_account_id is None or freelancer.stripe_account_id != account_id:
        raise ConflictError(
            f"{account_id} is not {freelancer.name}'s connected account any more: nothing was "
            "confirmed. Reload to see the current one.")
    if freelancer.unconfirmed_account_id is None:
        return False
    facts = destination_facts(account_id, _mirror(session, account_id))
    freelancer.unconfirmed_account_id = None
    freelancer.destination_confirmed_at = utcnow()
    freelancer.destination_confirmed_by = operator.username[:200]
    audit.record(session, actor=operator, action="connect.destination_confirm", result="confirmed",
                 target=f"freelancer:{freelancer_id}",
                 input={**facts.shown(), "by": "freelancer" if own else "admin"},
                 detail=reason or None)
    return True


@dataclass(frozen=True, slots=True)
class UnconfirmedDestination:
    freelancer_id: int
    name: str
    email: str
    account_id: str
    connected_at: datetime | None
    connection_method: str | None


def unconfirmed_destinations(
    session: Session, *, operator: Operator | None, limit: int = 20,
) -> tuple[list[UnconfirmedDestination], int]:
    """The newest destinations awaiting confirmation (at most ``limit``) and how many there are."""
    authorize(operator, Action.VIEW_ACCOUNTS, session=session)
    held = Freelancer.unconfirmed_account_id.is_not(None)
    total = int(session.scalar(select(func.count()).select_from(Freelancer).where(held)) or 0)
    rows = session.execute(
        select(Freelancer.id, Freelancer.name, Freelancer.email, Freelancer.unconfirmed_account_id,
               Freelancer.connected_at, Freelancer.connection_method)
        # Ordered by an expression, not the bare column: with the bare column SQLite walks the
        # connected_at index over every freelancer looking for the few held ones (0.8 s at a
        # million, issue 22's benchmark); this way it reads the held ones and sorts them.
        .where(held).order_by(func.coalesce(Freelancer.connected_at, Freelancer.connected_at)
                              .desc(), Freelancer.id.desc()).limit(limit)
    ).all()
    found = []
    for freelancer_id, name, email, account_id, connected_at, method in rows:
        assert account_id is not None  # the WHERE selects the held destinations only
        found.append(UnconfirmedDestination(freelancer_id, name, email, account_id, connected_at,
                                            method))
    return found, total
