"""The payouts ledger: a request becomes a row *before* Stripe is ever called.

Why the row comes first
    The row is the only thing that survives a crash between "we decided to pay" and "Stripe
    answered". Its ``idempotency_key`` is written with it and sent on every attempt of this
    payout, so however many times the call is retried (timeouts, a second replica, an operator
    clicking again) Stripe executes it at most once.

Why the key is derived from the row id plus a stored nonce
    ``connectops-payout-{id}-{nonce}``: the id makes the key unique within this database and
    readable in Stripe's logs; it is fixed once the row is committed and every retry reads the
    key back from the row (never recomputes it), so retries are always the same key. The
    8-byte random ``nonce`` (generated once, stored in the key) keeps two databases that share
    one Stripe account — a staging copy restored from production, two laptops on the same test
    key — from both sending ``…-payout-1`` and having Stripe replay the other's transfer.

Double submits
    The form (or API) carries a ``client_request_token``; the column is UNIQUE. The insert runs
    in a SAVEPOINT and an ``IntegrityError`` means another request with the same token won the
    race: we re-read and return that row. The same token with a different freelancer, amount or
    currency is a ``ConflictError`` (a client bug, or a replay of another request). Bulk rows use
    their content key (``bulk_row_key``, :mod:`lib.payouts.bulk_keys`) the same way.

Approval threshold and maximum
    Per currency (:mod:`lib.payouts.limits`): set in a base currency and derived for the others
    (¥150,000 and $1,000 both need a second approver by default), or set exactly per currency.
    Both are compared with the *wire* integer (``Money.amount_minor``).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.dml import rowcount
from lib.errors import ConflictError, ConnectOpsError, NotFoundError, ValidationError
from lib.models import ConnectedAccount, Freelancer, Payout, PayoutStatus, PayoutType
from lib.money import Money, normalise_currency, parse_amount, to_decimal
from lib.payouts.duplicates import check_payout_duplicate
from lib.payouts.limits import limits_for, maximum_or_refuse
from lib.roles import Action, AuditedRefusal, Operator, authorize
from lib.settings import Settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "connectops"
MAX_DESCRIPTION = 500
MAX_TOKEN = 255

AmountInput = str | int | Decimal | Money


def payout_idempotency_key(payout_id: int, nonce: str) -> str:
    """The Stripe idempotency key of a payout row (see the module docstring)."""
    return f"{KEY_PREFIX}-payout-{payout_id}-{nonce}"


def new_nonce() -> str:
    """16 hex characters of randomness, stored inside the key."""
    return secrets.token_hex(8)


def approval_threshold_minor(settings: Settings, currency: str) -> int:
    """The wire amount at or above which a payout in ``currency`` needs a second operator."""
    return limits_for(settings, currency).approval_threshold_minor


def needs_approval(settings: Settings, money: Money) -> bool:
    """True when ``money`` is at or above the approval threshold."""
    return money.amount_minor >= approval_threshold_minor(settings, money.currency)


def parse_money(amount: AmountInput, currency: str, *, settings: Settings) -> Money:
    """Parse user input with the payout maximum applied (a ``MoneyError`` names the problem)."""
    if isinstance(amount, Money):
        code = normalise_currency(currency)
        if amount.currency != code:
            raise ValidationError(
                f"The amount is in {amount.currency.upper()} but the currency is {code.upper()}."
            )
        if amount.amount_minor <= 0:
            raise ValidationError("The amount must be positive.")
        # Re-parse through the same rules (steps, maxima) as typed text.
        return parse_amount(
            _money_text(amount), code, maximum_minor=maximum_or_refuse(settings, code)
        )
    code = normalise_currency(currency)
    return parse_amount(amount, code, maximum_minor=maximum_or_refuse(settings, code))


def _money_text(money: Money) -> str:
    return str(to_decimal(money))


def get_payout(session: Session, *, payout_id: int) -> Payout:
    """The ledger row ``payout_id`` or NotFoundError."""
    payout = session.get(Payout, payout_id)
    if payout is None:
        raise NotFoundError(f"Payout {payout_id} does not exist.")
    return payout


def connected_account_of(session: Session, freelancer: Freelancer) -> ConnectedAccount | None:
    """The mirror row of the freelancer's current account, if any."""
    if not freelancer.stripe_account_id:
        return None
    return session.scalars(
        select(ConnectedAccount).where(ConnectedAccount.stripe_id == freelancer.stripe_account_id)
    ).one_or_none()


def audit_refusal(
    factory: sessionmaker[Session] | None, *, session: Session, operator: Operator | None,
    action: str, exc: ConnectOpsError, target: str | None = None,
    input: Mapping[str, Any] | None = None,
) -> None:
    """Record a refusal, surviving the caller's rollback, when the caller gave a factory for it.

    The entry goes through :func:`lib.audit.record_refusal` beside the caller's ``session``: on
    its own connection at once, or, on SQLite while the caller holds the write lock, as soon as
    the caller's transaction ends. (Committing through ``factory`` here would wait on the lock
    the caller's own transaction holds.)
    """
    if factory is None or isinstance(exc, AuditedRefusal):  # authorize already wrote it
        return
    audit.record_refusal(
        session, actor=operator if operator is not None else "anonymous", action=action,
        result=f"refused:{exc.code}", target=target, input=dict(input or {}), detail=exc.message,
    )


def _clean_description(description: str | None) -> str:
    text = (description or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise ValidationError(f"The description is limited to {MAX_DESCRIPTION} characters.")
    if any(ord(ch) < 32 and ch not in "\t" for ch in text):
        raise ValidationError("The description must be a single line of text.")
    return text


def scoped_token(door: str, username: str, key: str | None) -> str | None:
    """A client's own idempotency key, scoped to the door and the person who sent it.

    ``api:alice:invoice-1001``. Keys may be up to 255 characters themselves, so a scoped token
    that would not fit the column is replaced by its SHA-256 (deterministic: the same key
    always finds the same row; short tokens keep their readable form).
    """
    if key is None:
        return None
    token = f"{door}:{username}:{key}"
    if len(token) <= MAX_TOKEN:
        return token
    return f"{door}:sha256:{hashlib.sha256(token.encode('utf-8')).hexdigest()}"


def clean_token(token: str | None) -> str | None:
    """A client request token, trimmed; refused when empty or longer than the column."""
    if token is None:
        return None
    value = token.strip()
    if not value or len(value) > MAX_TOKEN:
        raise ValidationError(f"The client request token must be 1 to {MAX_TOKEN} characters.")
    return value


def _existing(session: Session, *, token: str | None, bulk_row_key: str | None
              ) -> Payout | None:
    if token is not None:
        found = session.scalars(
            select(Payout).where(Payout.client_request_token == token)
        ).one_or_none()
        if found is not None:
            return found
    if bulk_row_key is not None:
        return session.scalars(
            select(Payout).where(Payout.bulk_row_key == bulk_row_key)
        ).one_or_none()
    return None


def _same_request(payout: Payout, *, freelancer_id: int, money: Money) -> bool:
    return (
        payout.freelancer_id == freelancer_id
        and payout.amount_minor == money.amount_minor
        and payout.currency == money.currency
    )


def request_payout(
    session: Session,
    *,
    operator: Operator,
    freelancer_id: int,
    amount: AmountInput,
    currency: str,
    description: str | None,
    client_request_token: str | None,
    settings: Settings,
    payout_type: PayoutType | str = PayoutType.MANUAL,
    bulk_fingerprint: str | None = None,
    bulk_row: int | None = None,
    bulk_row_key: str | None = None,
    reference: str | None = None,
    confirm_duplicate_of: int | None = None,
    check_duplicates: bool = True,
    audit_refusals_with: sessionmaker[Session] | None = None,
) -> Payout:
    """Write a payout request to the ledger (or return the row this token already made).

    A new row like a payout of the last ``PAYOUT_DUPLICATE_WINDOW_DAYS`` (same freelancer,
    amount, currency, description) is refused with ``LikelyDuplicateError`` unless
    ``confirm_duplicate_of`` names that payout (:mod:`lib.payouts.duplicates`); bulk files
    check their rows against the ledger in their preview instead (``check_duplicates=False``).
    """
    request_input = {
        "freelancer_id": freelancer_id, "amount": str(amount) if not isinstance(amount, Money)
        else f"{amount.amount_minor} minor", "currency": currency,
        "payout_type": str(payout_type), "client_request_token": client_request_token,
        "bulk_row": bulk_row,
    }
    try:
        return _request_payout(
            session, operator=operator, freelancer_id=freelancer_id, amount=amount,
            currency=currency, description=description, client_request_token=client_request_token,
            settings=settings, payout_type=payout_type, bulk_fingerprint=bulk_fingerprint,
            bulk_row=bulk_row, bulk_row_key=bulk_row_key, reference=reference,
            confirm_duplicate_of=confirm_duplicate_of, check_duplicates=check_duplicates,
            request_input=request_input,
        )
    except ConnectOpsError as exc:
        audit_refusal(audit_refusals_with, session=session, operator=operator,
                      action="payout.request", exc=exc, target=f"freelancer:{freelancer_id}",
                      input=request_input)
        raise


def _request_payout(
    session: Session, *, operator: Operator, freelancer_id: int, amount: AmountInput,
    currency: str, description: str | None, client_request_token: str | None,
    settings: Settings, payout_type: PayoutType | str, bulk_fingerprint: str | None,
    bulk_row: int | None, bulk_row_key: str | None, reference: str | None,
    confirm_duplicate_of: int | None, check_duplicates: bool, request_input: dict[str, Any],
) -> Payout:
    authorize(operator, Action.REQUEST_PAYOUT, session=session,
              target=f"freelancer:{freelancer_id}")
    try:
        kind = PayoutType(payout_type)
    except ValueError:
        raise ValidationError(f"Unknown payout type {payout_type!r} (MANUAL or BULK).") from None
    if (bulk_fingerprint is None) != (bulk_row is None) or (
        bulk_row_key is not None and bulk_fingerprint is None
    ):
        raise ValidationError("A bulk payout needs the file fingerprint, its line and its key.")
    money = parse_money(amount, currency, settings=settings)
    text = _clean_description(description)
    token = clean_token(client_request_token)

    existing = _existing(session, token=token, bulk_row_key=bulk_row_key)
    if existing is not None:
        return _duplicate(session, existing, operator=operator, freelancer_id=freelancer_id,
                          money=money, request_input=request_input)

    freelancer = session.get(Freelancer, freelancer_id)
    if freelancer is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    if not freelancer.stripe_account_id:
        raise ConflictError(
            f"{freelancer.name} has no connected Stripe account: connect them before paying."
        )
    if check_duplicates:
        check_payout_duplicate(session, freelancer_id=freelancer.id, money=money,
                               description=text, settings=settings,
                               confirmed=confirm_duplicate_of)

    status = PayoutStatus.PENDING_APPROVAL if needs_approval(settings, money) else (
        PayoutStatus.PENDING
    )
    payout = Payout(
        freelancer_id=freelancer.id, stripe_account_id=freelancer.stripe_account_id,
        amount_minor=money.amount_minor, currency=money.currency, description=text,
        payout_type=kind.value, status=status.value,
        # A placeholder unique value until the id is known (same savepoint, never committed).
        idempotency_key=f"unassigned-{uuid.uuid4().hex}",
        client_request_token=token, requested_by=operator.username,
        bulk_fingerprint=bulk_fingerprint, bulk_row=bulk_row, bulk_row_key=bulk_row_key,
        reference=reference,
    )
    try:
        with session.begin_nested():
            session.add(payout)
            session.flush()
            payout.idempotency_key = payout_idempotency_key(payout.id, new_nonce())
            session.flush()
    except IntegrityError:
        # Another request with the same token (or bulk row) committed first: that row wins.
        existing = _existing(session, token=token, bulk_row_key=bulk_row_key)
        if existing is None:
            raise
        return _duplicate(session, existing, operator=operator, freelancer_id=freelancer_id,
                          money=money, request_input=request_input)

    audit.record(
        session, actor=operator, action="payout.request", result=status.value,
        target=f"payout:{payout.id}", input=request_input,
        detail=f"{money.amount_minor} {money.currency} to {payout.stripe_account_id}",
        idempotency_key=payout.idempotency_key,
    )
    logger.info("payout %s requested by %s: %s %s (%s)", payout.id, operator.username,
                money.amount_minor, money.currency, status.value)
    return payout


def _duplicate(
    session: Session, existing: Payout, *, operator: Operator, freelancer_id: int, money: Money,
    request_input: dict[str, Any],
) -> Payout:
    if not _same_request(existing, freelancer_id=freelancer_id, money=money):
        raise ConflictError(
            f"This request token already made payout {existing.id} "
            f"({existing.amount_minor} {existing.currency} to freelancer {existing.freelancer_id}); "
            "it cannot be reused for a different payout."
        )
    audit.record(
        session, actor=operator, action="payout.request", result="duplicate",
        target=f"payout:{existing.id}", input=request_input,
        detail="same request seen before; the existing row is returned",
        idempotency_key=existing.idempotency_key,
    )
    return existing


def set_status_where(
    session: Session, *, payout_id: int, allowed: tuple[PayoutStatus, ...],
    values: Mapping[str, Any], never_submitted: bool = False,
) -> bool:
    """Conditionally update one row: True when this caller moved it (the database decides).

    ``never_submitted`` also requires that the row was never claimed for sending, so a decision
    that may only stop money (a rejection) cannot race an executor's claim.
    """
    statement = update(Payout).where(
        Payout.id == payout_id, Payout.status.in_([s.value for s in allowed]))
    if never_submitted:
        statement = statement.where(Payout.submitted_at.is_(None))
    result = session.execute(
        statement
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(rowcount(result))
