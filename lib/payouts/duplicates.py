"""Likely duplicates: paying (or reversing) the same thing twice by accident needs a confirmation.

An idempotency key protects one request retried; it cannot protect two requests for the same
money (a second browser tab, an API client that retries without ``Idempotency-Key``, an
operator who forgot they paid yesterday). So a new payout for the same freelancer, amount,
currency and description (case and white space folded) as one requested within
``PAYOUT_DUPLICATE_WINDOW_DAYS`` — and not failed or rejected — is refused with
:class:`LikelyDuplicateError`, which names the earlier payout; the caller confirms by naming
that payout (``confirm_duplicate_of``: the dashboard's "pay again" checkbox, the API's
``Confirm-Duplicate-Of`` header). Reversals: the same payout and amount.

The check reads at most the freelancer's payouts of the window (``ix_payouts_freelancer_id``);
descriptions are compared in Python with the bulk keys' canonical form.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.db import utcnow
from lib.errors import ConflictError
from lib.models import Payout, PayoutReversal, PayoutStatus, ReversalStatus
from lib.money import Money, format_money
from lib.payouts.bulk_keys import canonical_text
from lib.settings import Settings

#: Earlier rows in these states moved no money and will not: repeating them is not a duplicate.
_NOT_PAYING = (PayoutStatus.FAILED.value, PayoutStatus.REJECTED.value)
_NOT_REVERSING = (ReversalStatus.FAILED.value, ReversalStatus.REJECTED.value)


class LikelyDuplicateError(ConflictError):
    """A request like one made recently; repeat it naming ``earlier_id`` if it is meant."""

    code = "likely_duplicate"

    def __init__(self, message: str, *, earlier_id: int) -> None:
        super().__init__(message)
        self.earlier_id = earlier_id


def _window(settings: Settings) -> timedelta | None:
    days = settings.payout_duplicate_window_days
    return timedelta(days=days) if days > 0 else None


def find_payout_duplicate(
    session: Session, *, freelancer_id: int, money: Money, description: str,
    settings: Settings,
) -> Payout | None:
    """The most recent payout this request repeats, within the window; None if there is none."""
    window = _window(settings)
    if window is None:
        return None
    wanted = canonical_text(description)
    candidates = session.scalars(
        select(Payout).where(
            Payout.freelancer_id == freelancer_id, Payout.amount_minor == money.amount_minor,
            Payout.currency == money.currency, Payout.status.not_in(_NOT_PAYING),
            Payout.created_at >= utcnow() - window,
        ).order_by(Payout.id.desc())
    )
    return next((p for p in candidates if canonical_text(p.description) == wanted), None)


def check_payout_duplicate(
    session: Session, *, freelancer_id: int, money: Money, description: str,
    settings: Settings, confirmed: int | None,
) -> None:
    """Raise :class:`LikelyDuplicateError` unless there is no earlier one or it is confirmed."""
    earlier = find_payout_duplicate(session, freelancer_id=freelancer_id, money=money,
                                    description=description, settings=settings)
    if earlier is None or earlier.id == confirmed:
        return
    raise LikelyDuplicateError(
        f"Payout #{earlier.id} already pays this freelancer "
        f"{format_money(money)} for {earlier.description or 'no description'!r} "
        f"({earlier.status}, requested {earlier.created_at:%Y-%m-%d %H:%M} UTC by "
        f"{earlier.requested_by}). If this is a second payment, confirm it as a repeat of "
        f"#{earlier.id}.", earlier_id=earlier.id)


def check_reversal_duplicate(
    session: Session, *, payout_id: int, amount_minor: int, settings: Settings,
    confirmed: int | None,
) -> None:
    """The same for reversals: the same payout and amount within the window."""
    window = _window(settings)
    if window is None:
        return
    earlier = session.scalars(
        select(PayoutReversal).where(
            PayoutReversal.payout_id == payout_id, PayoutReversal.amount_minor == amount_minor,
            PayoutReversal.status.not_in(_NOT_REVERSING),
            PayoutReversal.created_at >= utcnow() - window,
        ).order_by(PayoutReversal.id.desc()).limit(1)
    ).first()
    if earlier is None or earlier.id == confirmed:
        return
    raise LikelyDuplicateError(
        f"Reversal #{earlier.id} already reverses this amount of payout #{payout_id} "
        f"({earlier.status}, requested {earlier.created_at:%Y-%m-%d %H:%M} UTC by "
        f"{earlier.requested_by}). If this is a second reversal, confirm it as a repeat of "
        f"#{earlier.id}.", earlier_id=earlier.id)
