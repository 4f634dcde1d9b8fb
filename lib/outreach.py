"""Outreach: email freelancers what Stripe asks of them, with a single-use link to act on it.

**Who.** A freelancer whose current account has requirements currently due or past due and is
not rejected (nothing they submit helps then). The email goes to the freelancer's own address
on file, never one an operator types, and the link opens only their own payment settings.

**A batch, confirmed.** An operator previews the emails (:func:`preview_outreach`: who gets
one, who is skipped and why, the email as the first recipient will read it), then confirms.
The preview carries a batch token; :func:`send_outreach` records the batch under that token
and, chunk by chunk, one ``outreach_contacts`` row per freelancer (unique per batch) and its
outbox message (unique per batch and freelancer) in the same transaction. A rerun — a double
click, a page that reran mid-way, the same confirmation sent twice — finds the rows already
written: one email per freelancer per batch, whatever happens.

**The link is made when the email leaves.** The stored message holds placeholders; the
worker, about to send, makes a fresh signed link (``lib.page_access``) carrying a new random
link id, records the id, its expiry and the attempt on the contact row, then sends. So the
database never holds a usable link, and each delivery attempt's link is new. The link works
once: opening it spends the id (:func:`spend_link`, one conditional UPDATE) and a second use
is refused; it expires after ``OUTREACH_LINK_HOURS``; ``python -m server.links --revoke``
ends it like every payment-settings link. A changed email address stops the send.

**Outcome.** Per freelancer the desk shows times contacted, last contacted, and what happened
since the last email, derived from the account's state now: finished (nothing currently or
past due), opened the link, still due — or not delivered yet / delivery failed.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.account_status import ConnectionStatus, requirement_label
from lib.db import utcnow
from lib.dml import rowcount
from lib.errors import ConnectOpsError, NotFoundError, ValidationError
from lib.messaging import DeliveryError, Email, html_escape
from lib.models import (
    ConnectedAccount,
    ConnectionMethod,
    Freelancer,
    MessageChannel,
    MessageKind,
    MessageStatus,
    OutboxMessage,
    OutreachBatch,
    OutreachContact,
)
from lib.outbox import MessageClaim, enqueue
from lib.page_access import page_access_generation, payment_settings_link
from lib.roles import Action, Operator, authorize, authorize_in
from lib.settings import Settings
from lib.tokens import TokenError

logger = logging.getLogger(__name__)

#: The most freelancers one batch may name (a bigger send is several batches).
MAX_BATCH = 1000
#: Freelancers recorded per transaction (the progress bar moves per chunk).
CHUNK = 25
LINK_PLACEHOLDER = "[[PAYMENT_SETTINGS_LINK]]"
EXPIRY_PLACEHOLDER = "[[LINK_EXPIRES]]"
#: The requirement lists an email is about (eventually due and in-review ones are not urgent).
ASKED = ("past_due", "currently_due")


class OutreachLinkError(TokenError):
    """A single-use link that may not open the page: used, superseded, expired or unknown."""

    code = "outreach_link_refused"


# ---- who may be emailed -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ask:
    """One thing Stripe asks for, in the desk's plain words."""

    code: str
    label: str
    past_due: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """A freelancer an outreach email could go to, with what it would say."""

    freelancer_id: int
    name: str
    email: str
    stripe_account_id: str | None
    standard: bool
    status: str
    deadline: datetime | None
    asks: list[Ask] = field(default_factory=list)
    #: Why no email goes to them; None when one does.
    skip_reason: str | None = None

    @property
    def past_due(self) -> bool:
        return any(a.past_due for a in self.asks)


def asks_of(requirements: dict[str, Any] | None) -> list[Ask]:
    """What an account's requirements ask now, past due first, one line per plain label."""
    found: list[Ask] = []
    seen: set[str] = set()
    lists = requirements or {}
    past = {str(c) for c in lists.get("past_due") or []}
    for bucket in ASKED:
        for raw in lists.get(bucket) or []:
            code = str(raw)
            label = requirement_label(code)
            if label in seen:
                continue
            seen.add(label)
            found.append(Ask(code=code, label=label, past_due=code in past))
    return found


def _candidates(session: Session, freelancer_ids: Sequence[int]) -> list[Candidate]:
    # The account's columns are NULL without one (outer join); a JSON column defeats select()'s
    # typed overloads, so the row is spelled out.
    rows: Sequence[Row[int, str, str, str | None, str | None, str | None, str | None,
                       datetime | None, dict[str, Any] | None]] = session.execute(
        select(Freelancer.id, Freelancer.name, Freelancer.email, Freelancer.stripe_account_id,
               Freelancer.connection_method, ConnectedAccount.type, ConnectedAccount.status,
               ConnectedAccount.current_deadline, ConnectedAccount.requirements)
        .select_from(Freelancer)
        .outerjoin(ConnectedAccount, ConnectedAccount.stripe_id == Freelancer.stripe_account_id)
        .where(Freelancer.id.in_(list(freelancer_ids)))).all()
    by_id = {int(r[0]): r for r in rows}
    result = []
    for fid in freelancer_ids:
        row = by_id.get(fid)
        if row is None:
            continue
        _, name, email, account_id, method, kind, status, deadline, requirements = row
        standard = kind == "standard" or (kind is None and method == ConnectionMethod.OAUTH.value)
        asks = asks_of(requirements) if account_id and status else []
        reason = None
        if not account_id or status is None:
            reason = "not connected to Stripe"
        elif status == ConnectionStatus.REJECTED.value:
            reason = "rejected by Stripe: nothing they can submit"
        elif not asks:
            reason = "nothing currently or past due"
        result.append(Candidate(int(fid), str(name), str(email), account_id, standard,
                                str(status or ConnectionStatus.NOT_CONNECTED.value), deadline,
                                asks, reason))
    return result


def due_freelancer_ids(
    session: Session, *, operator: Operator, within_days: int | None = None,
    not_contacted_days: int | None = None, limit: int = MAX_BATCH, now: datetime | None = None,
) -> list[int]:
    """Freelancers an email could go to under the Requirements page's filters, soonest first."""
    authorize(operator, Action.SEND_OUTREACH, session=session)
    moment = now or utcnow()
    statement = (select(Freelancer.id).select_from(ConnectedAccount)
                 .join(Freelancer, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)
                 .where(or_(ConnectedAccount.currently_due_count > 0,
                            ConnectedAccount.past_due_count > 0),
                        ConnectedAccount.status != ConnectionStatus.REJECTED.value))
    for days in (within_days, not_contacted_days):
        if days is not None and days < 0:
            raise ValidationError("The number of days must not be negative.")
    if within_days is not None:
        statement = statement.where(
            ConnectedAccount.current_deadline < moment + timedelta(days=within_days))
    if not_contacted_days is not None:
        statement = statement.where(~exists().where(
            OutreachContact.freelancer_id == Freelancer.id,
            OutreachContact.created_at >= moment - timedelta(days=not_contacted_days)))
    statement = statement.order_by(ConnectedAccount.current_deadline.asc().nulls_last(),
                                   Freelancer.name, Freelancer.id).limit(limit)
    return [int(i) for i in session.scalars(statement)]


def _check_ids(freelancer_ids: Iterable[int]) -> list[int]:
    ids = list(dict.fromkeys(int(i) for i in freelancer_ids))
    if not ids:
        raise ValidationError("Choose at least one freelancer to email.")
    if len(ids) > MAX_BATCH:
        raise ValidationError(f"One batch emails at most {MAX_BATCH} freelancers; narrow the "
                              "filters and send several.")
    return ids


# ---- the email ---------------------------------------------------------------------------------


def _deadline_words(deadline: datetime | None) -> str:
    return deadline.strftime("%d %B %Y") if deadline else ""


def compose(candidate: Candidate, *, now: datetime) -> tuple[str, str, str]:
    """Subject, text and HTML of a freelancer's email, with the link's placeholders."""
    overdue = candidate.past_due or (candidate.deadline is not None and candidate.deadline <= now)
    subject = ("Action needed: Stripe is waiting for your details" if overdue
               else "Stripe needs a few details to keep paying you")
    first = candidate.name.split()[0] if candidate.name.split() else "there"
    lines = [f"  - {a.label}" + (" (overdue)" if a.past_due else "") for a in candidate.asks]
    if candidate.deadline is None:
        when = "Please provide them as soon as you can."
    elif overdue:
        when = (f"They were due on {_deadline_words(candidate.deadline)}: Stripe has paused, or "
                "will pause, your payouts until they are provided.")
    else:
        when = (f"Please provide them by {_deadline_words(candidate.deadline)}, or Stripe will "
                "pause your payouts.")
    how = ("Your payment settings show what is missing; you update it in your own Stripe "
           "Dashboard." if candidate.standard else
           "Your payment settings take you to Stripe to finish, in a few minutes.")
    text = "\n".join([
        f"Hello {first},", "",
        "To keep paying you through Stripe we need a few details from you. Stripe asks for:",
        "", *lines, "", when, "", how, "",
        f"Open your payment settings (this link works once, until {EXPIRY_PLACEHOLDER}):",
        LINK_PLACEHOLDER, "",
        "If the link has expired or was already used, reply to this email for a new one.",
        "We will never ask for your bank details or passwords by email.", "",
        "The payments team",
    ])
    items = "".join(
        f"<li>{html_escape(a.label)}{' <strong>(overdue)</strong>' if a.past_due else ''}</li>"
        for a in candidate.asks)
    body = (
        f"<p>Hello {html_escape(first)},</p>"
        "<p>To keep paying you through Stripe we need a few details from you. Stripe asks "
        f"for:</p><ul>{items}</ul><p>{html_escape(when)}</p><p>{html_escape(how)}</p>"
        f'<p><a href="{LINK_PLACEHOLDER}" style="display:inline-block;padding:10px 18px;'
        'background:#635bff;color:#ffffff;border-radius:6px;text-decoration:none">'
        "Open your payment settings</a></p>"
        f"<p style=\"color:#475467\">This link works once, until {EXPIRY_PLACEHOLDER}. If it "
        "has expired or was already used, reply to this email for a new one. We will never ask "
        "for your bank details or passwords by email.</p><p>The payments team</p>"
    )
    html = f'<!doctype html><html><body style="font-family:sans-serif">{body}</body></html>'
    return subject, text, html


# ---- preview and send ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutreachPreview:
    """What a confirmation would send: carried back to :func:`send_outreach` as it is."""

    token: str
    recipients: list[Candidate]
    skipped: list[Candidate]
    #: The first recipient's email (subject, text), the link shown as a placeholder.
    sample: tuple[str, str] | None

    @property
    def freelancer_ids(self) -> list[int]:
        return [c.freelancer_id for c in self.recipients]


def preview_outreach(session: Session, *, operator: Operator, freelancer_ids: Iterable[int],
                     now: datetime | None = None) -> OutreachPreview:
    """Who would get an email and who not (with the reason), and a sample; writes nothing."""
    authorize(operator, Action.SEND_OUTREACH, session=session)
    ids = _check_ids(freelancer_ids)
    moment = now or utcnow()
    candidates = _candidates(session, ids)
    recipients = [c for c in candidates if c.skip_reason is None]
    skipped = [c for c in candidates if c.skip_reason is not None]
    sample = None
    if recipients:
        subject, text, _ = compose(recipients[0], now=moment)
        sample = (subject, text.replace(LINK_PLACEHOLDER, "(a single-use link made when the "
                                        "email is sent)").replace(EXPIRY_PLACEHOLDER, "…"))
    return OutreachPreview(secrets.token_urlsafe(24), recipients, skipped, sample)


@dataclass(frozen=True, slots=True)
class OutreachResult:
    batch_id: int
    #: Emails written to the outbox by this call.
    queued: int
    #: Freelancers of the batch already recorded by an earlier run of the same confirmation.
    already: int
    skipped: list[tuple[int, str]]


def _insert(session: Session, model: Any, values: dict[str, Any], conflict: list[str]) -> Any:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = model.__table__
    return session.execute(insert(table).values(**values)
                           .on_conflict_do_nothing(index_elements=conflict)
                           .returning(table.c.id)).first()


def _batch(session: Session, *, token: str, operator: Operator, requested: int,
           now: datetime) -> tuple[int, bool]:
    inserted = _insert(session, OutreachBatch, {
        "token": token, "created_by": operator.username[:200], "created_at": now,
        "requested": requested}, ["token"])
    if inserted is not None:
        return int(inserted[0]), True
    found = session.scalar(select(OutreachBatch.id).where(OutreachBatch.token == token))
    assert found is not None
    return int(found), False


def send_outreach(
    factory: sessionmaker[Session], *, operator: Operator, token: str,
    freelancer_ids: Iterable[int], chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None, now: datetime | None = None,
) -> OutreachResult:
    """Record the confirmed batch and queue one email per eligible freelancer (see module).

    Idempotent by ``token``: run it again (wholly or after an interruption) and only the
    freelancers not yet recorded for this batch are added. ``progress(done, total)`` is called
    after each committed chunk.
    """
    authorize_in(factory, operator, Action.SEND_OUTREACH)
    if not token or len(token) > 64:
        raise ValidationError("This confirmation has no valid batch token: preview again.")
    ids = _check_ids(freelancer_ids)
    moment = now or utcnow()
    with factory.begin() as session:
        batch_id, created = _batch(session, token=token, operator=operator, requested=len(ids),
                                   now=moment)
        if created:
            audit.record(session, actor=operator, action="outreach.send", result="batch",
                         target=f"outreach_batch:{batch_id}", input={"freelancers": len(ids)})
    queued = already = 0
    skipped: list[tuple[int, str]] = []
    for start in range(0, len(ids), max(chunk, 1)):
        part = ids[start:start + max(chunk, 1)]
        with factory.begin() as session:
            done = set(session.scalars(select(OutreachContact.freelancer_id).where(
                OutreachContact.batch_id == batch_id, OutreachContact.freelancer_id.in_(part))))
            for candidate in _candidates(session, [i for i in part if i not in done]):
                if candidate.skip_reason is not None:
                    skipped.append((candidate.freelancer_id, candidate.skip_reason))
                    continue
                if _record(session, batch_id=batch_id, candidate=candidate, operator=operator,
                           now=moment):
                    queued += 1
                else:
                    already += 1
            already += len(done)
        if progress is not None:
            progress(min(start + len(part), len(ids)), len(ids))
    logger.info("outreach batch %s by %s: %d queued, %d already recorded, %d skipped",
                batch_id, operator.username, queued, already, len(skipped))
    return OutreachResult(batch_id, queued, already, skipped)


def _record(session: Session, *, batch_id: int, candidate: Candidate, operator: Operator,
            now: datetime) -> bool:
    """The contact row and its outbox message, in the caller's transaction; False if present."""
    inserted = _insert(session, OutreachContact, {
        "batch_id": batch_id, "freelancer_id": candidate.freelancer_id,
        "email": candidate.email, "stripe_account_id": candidate.stripe_account_id,
        "requirements": [{"code": a.code, "label": a.label, "past_due": a.past_due}
                         for a in candidate.asks],
        "deadline": candidate.deadline, "created_by": operator.username[:200],
        "created_at": now, "link_attempt": 0}, ["batch_id", "freelancer_id"])
    if inserted is None:
        return False
    contact_id = int(inserted[0])
    subject, text, html = compose(candidate, now=now)
    message_id, _ = enqueue(
        session, dedupe_key=f"outreach:{batch_id}:{candidate.freelancer_id}",
        kind=MessageKind.OUTREACH, channel=MessageChannel.EMAIL, recipient=candidate.email,
        subject=subject, body_text=text, body_html=html,
        payload={"outreach_contact_id": contact_id}, created_by=operator.username, now=now)
    session.execute(update(OutreachContact).where(OutreachContact.id == contact_id)
                    .values(message_id=message_id).execution_options(synchronize_session=False))
    return True


# ---- delivery: the link is made now -------------------------------------------------------------


def finish_outreach_email(
    factory: sessionmaker[Session], *, settings: Settings, claim: MessageClaim,
    message_id: str, now: datetime | None = None,
) -> Email:
    """Make this attempt's single-use link, record it on the contact, and return the email."""
    moment = now or utcnow()
    contact_id = int(claim.payload.get("outreach_contact_id") or 0)
    lifetime = timedelta(hours=settings.outreach_link_hours)
    link_id = str(uuid.uuid4())
    with factory.begin() as session:
        contact = session.get(OutreachContact, contact_id)
        if contact is None:
            raise DeliveryError(f"Outreach record {contact_id} is gone.", permanent=True)
        freelancer = session.get(Freelancer, contact.freelancer_id)
        if freelancer is None:
            raise DeliveryError("The freelancer no longer exists.", permanent=True)
        if freelancer.email.strip().lower() != contact.email.strip().lower():
            # A link is a key to their settings: never to an address that is not theirs now.
            raise DeliveryError("The freelancer's email address changed after this email was "
                                "decided: not sent. Send a new one.", permanent=True)
        generation = page_access_generation(session, freelancer_id=freelancer.id)
        try:
            link = payment_settings_link(settings, freelancer.id, lifetime,
                                         generation=generation, link_id=link_id, now=moment)
        except ConnectOpsError as exc:
            raise DeliveryError(f"The link cannot be signed: {exc.message}") from None
        contact.link_id = link_id
        contact.link_issued_at = moment
        contact.link_expires_at = moment + lifetime
        contact.link_opened_at = None
        contact.link_attempt = claim.attempt
        to = contact.email
    expires = (moment + lifetime).strftime("%d %B %Y, %H:%M UTC")
    text = claim.body_text.replace(LINK_PLACEHOLDER, link).replace(EXPIRY_PLACEHOLDER, expires)
    html = None
    if claim.body_html is not None:
        html = (claim.body_html.replace(LINK_PLACEHOLDER, html_escape(link))
                .replace(EXPIRY_PLACEHOLDER, html_escape(expires)))
    return Email(to=to, subject=claim.subject, text=text, html=html, message_id=message_id)


_REFUSALS = {
    "unknown": "This link was replaced by a newer one, or is not ours. Use the latest email, or "
               "ask the platform for a new link.",
    "used": "This link was already used. Ask the platform for a new link.",
    "expired": "This link has expired. Ask the platform for a new link.",
}


def _refusal(session: Session, *, link_id: str, freelancer_id: int) -> str:
    row = session.execute(
        select(OutreachContact.link_opened_at, OutreachContact.link_expires_at)
        .where(OutreachContact.link_id == link_id,
               OutreachContact.freelancer_id == freelancer_id)).first()
    return "unknown" if row is None else "used" if row[0] is not None else "expired"


def check_link(factory: sessionmaker[Session], *, link_id: str, freelancer_id: int,
               now: datetime | None = None) -> None:
    """Whether the link could still be spent (it is not spent here); OutreachLinkError if not."""
    moment = now or utcnow()
    with factory() as session:
        usable = session.scalar(
            select(OutreachContact.id)
            .where(OutreachContact.link_id == link_id,
                   OutreachContact.freelancer_id == freelancer_id,
                   OutreachContact.link_opened_at.is_(None),
                   OutreachContact.link_expires_at > moment))
        if usable is None:
            raise OutreachLinkError(_REFUSALS[_refusal(session, link_id=link_id,
                                                       freelancer_id=freelancer_id)])


def spend_link(factory: sessionmaker[Session], *, link_id: str, freelancer_id: int,
               now: datetime | None = None) -> None:
    """Spend an outreach link once (committed at once), or raise :class:`OutreachLinkError`."""
    moment = now or utcnow()
    with factory.begin() as session:
        spent = rowcount(session.execute(
            update(OutreachContact)
            .where(OutreachContact.link_id == link_id,
                   OutreachContact.freelancer_id == freelancer_id,
                   OutreachContact.link_opened_at.is_(None),
                   OutreachContact.link_expires_at > moment)
            .values(link_opened_at=moment)
            .execution_options(synchronize_session=False)))
        reason = None if spent else _refusal(session, link_id=link_id,
                                             freelancer_id=freelancer_id)
        audit.record(session, actor=f"freelancer:{freelancer_id}",
                     action="outreach.link_open",
                     result="opened" if reason is None else f"refused:{reason}",
                     target=f"freelancer:{freelancer_id}", input={"link_id": link_id[:36]})
    if reason is not None:
        logger.info("outreach link of freelancer %s refused: %s", freelancer_id, reason)
        raise OutreachLinkError(_REFUSALS[reason])


# ---- what the desk shows ------------------------------------------------------------------------


class Outcome:
    NOT_SENT = "not delivered yet"
    FAILED = "delivery failed"
    FINISHED = "finished onboarding"
    OPENED = "opened the link"
    STILL_DUE = "still due"


@dataclass(frozen=True, slots=True)
class ContactSummary:
    freelancer_id: int
    times_contacted: int
    last_contacted_at: datetime | None
    last_contacted_by: str | None
    outcome: str


def outcome_of(*, message_status: str | None, opened: bool, due_now: bool) -> str:
    """What came of the last email, from its delivery and the account's state now."""
    if not due_now:
        return Outcome.FINISHED
    if message_status == MessageStatus.DEAD.value:
        return Outcome.FAILED
    if message_status != MessageStatus.SENT.value:
        return Outcome.NOT_SENT
    return Outcome.OPENED if opened else Outcome.STILL_DUE


def contact_summaries(session: Session, *, operator: Operator,
                      freelancer_ids: Iterable[int]) -> dict[int, ContactSummary]:
    """Times contacted, last contacted and the outcome, for the freelancers shown."""
    authorize(operator, Action.VIEW_REQUIREMENTS, session=session)
    ids = list(dict.fromkeys(int(i) for i in freelancer_ids))
    if not ids:
        return {}
    counts = {int(fid): (int(n), last) for fid, n, last in session.execute(
        select(OutreachContact.freelancer_id, func.count(), func.max(OutreachContact.created_at))
        .where(OutreachContact.freelancer_id.in_(ids))
        .group_by(OutreachContact.freelancer_id))}
    if not counts:
        return {}
    latest = session.execute(
        select(OutreachContact.freelancer_id, OutreachContact.created_by,
               OutreachContact.link_opened_at, OutboxMessage.status,
               ConnectedAccount.currently_due_count, ConnectedAccount.past_due_count,
               OutreachContact.id)
        .select_from(OutreachContact)
        .join(Freelancer, Freelancer.id == OutreachContact.freelancer_id)
        .outerjoin(OutboxMessage, OutboxMessage.id == OutreachContact.message_id)
        .outerjoin(ConnectedAccount, ConnectedAccount.stripe_id == Freelancer.stripe_account_id)
        .where(or_(*[and_(OutreachContact.freelancer_id == fid,
                          OutreachContact.created_at == last)
                     for fid, (_, last) in counts.items()]))
        .order_by(OutreachContact.id)).all()
    result: dict[int, ContactSummary] = {}
    for fid, by, opened, status, due, past, _ in latest:
        times, last = counts[int(fid)]
        due_now = bool((due or 0) or (past or 0))
        result[int(fid)] = ContactSummary(int(fid), times, last, by, outcome_of(
            message_status=status, opened=opened is not None, due_now=due_now))
    return result


@dataclass(frozen=True, slots=True)
class ContactRow:
    """One email sent to a freelancer (the Accounts page's outreach history)."""

    created_at: datetime
    created_by: str
    email: str
    requirements: list[str]
    deadline: datetime | None
    message_status: str | None
    link_attempt: int
    link_expires_at: datetime | None
    link_opened_at: datetime | None


def contact_history(session: Session, *, operator: Operator, freelancer_id: int,
                    limit: int = 20) -> list[ContactRow]:
    """The freelancer's outreach emails, newest first."""
    authorize(operator, Action.VIEW_REQUIREMENTS, session=session)
    if session.get(Freelancer, freelancer_id) is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    rows = session.execute(
        select(OutreachContact, OutboxMessage.status)
        .outerjoin(OutboxMessage, OutboxMessage.id == OutreachContact.message_id)
        .where(OutreachContact.freelancer_id == freelancer_id)
        .order_by(OutreachContact.created_at.desc(), OutreachContact.id.desc())
        .limit(limit)).all()
    return [ContactRow(c.created_at, c.created_by, c.email,
                       [str(r.get("label", "")) for r in c.requirements or []], c.deadline,
                       status, c.link_attempt, c.link_expires_at, c.link_opened_at)
            for c, status in rows]
