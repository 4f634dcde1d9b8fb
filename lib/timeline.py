"""One freelancer's whole story, in one time-ordered list (the account detail's timeline).

Sources, each read with the freelancer's id (or their accounts and payouts) on an index, newest
first and capped at :data:`PER_SOURCE` rows, then merged:

- **connection**: every link issued (OAuth or onboarding) and what became of it;
- **account**: connections, disconnections (by an operator or the freelancer) and Stripe's
  deauthorizations, from the audit log, plus the current connection when no attempt shows it;
- **requirements**: what Stripe started or stopped asking for, and deadline moves
  (``requirement_changes``, kept from account updates by ``lib.requirement_index``);
- **payout**: ledger payouts (requested, paid, failed, …) and their reversals;
- **bank**: the freelancer's own payouts to their bank (``lib.bank_payouts``);
- **audit**: every other audit entry about the freelancer, their payouts or accounts.

Reading it needs ``VIEW_ACCOUNTS`` (the page it lives on) and, for the audit entries,
``VIEW_AUDIT_LOG``: a role without it sees the story without them. The export needs ``EXPORT``
and goes through ``lib.exports`` (spreadsheet formulas neutralised).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lib import labels
from lib.account_status import requirement_label
from lib.bank_payouts import failure_reason, money_text
from lib.errors import NotFoundError
from lib.models import (
    AuditLog,
    BankPayout,
    ConnectionAttempt,
    Freelancer,
    Payout,
    PayoutReversal,
    RequirementChange,
)
from lib.requirements_queries import CATEGORIES
from lib.roles import Action, Operator, authorize

#: Newest rows read per source: the timeline is a story, not an export of the ledger.
PER_SOURCE = 500


class Kind(enum.StrEnum):
    CONNECTION = "connection"
    ACCOUNT = "account"
    REQUIREMENTS = "requirements"
    PAYOUT = "payout"
    BANK = "bank"
    AUDIT = "audit"


KIND_LABELS = {Kind.CONNECTION: "Connection attempts", Kind.ACCOUNT: "Connections",
               Kind.REQUIREMENTS: "Requirements", Kind.PAYOUT: "Payouts and reversals",
               Kind.BANK: "Bank payouts", Kind.AUDIT: "Audit entries"}
#: Audit actions shown as connection facts (kind ``account``), not as plain audit entries.
_ACCOUNT_ACTIONS = {"connect.disconnect": "Disconnected",
                    "connect.deauthorized": "Deauthorized at Stripe (access revoked)"}


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: Kind
    event: str
    detail: str = ""
    amount: str = ""
    by: str = ""
    reference: str = ""

    def export(self) -> dict[str, Any]:
        return {"at": self.at, "kind": KIND_LABELS[self.kind], "event": self.event,
                "detail": self.detail, "amount": self.amount, "by": self.by,
                "reference": self.reference}


EXPORT_COLUMNS = ("at", "kind", "event", "detail", "amount", "by", "reference")


@dataclass(frozen=True, slots=True)
class Timeline:
    freelancer_id: int
    name: str
    entries: list[TimelineEntry] = field(default_factory=list)
    #: Kinds the operator's role does not show (audit entries without VIEW_AUDIT_LOG).
    hidden: frozenset[Kind] = frozenset()
    #: A source had more than :data:`PER_SOURCE` rows in the window: the oldest are left out.
    truncated: bool = False

    def counts(self) -> dict[Kind, int]:
        found = dict.fromkeys(Kind, 0)
        for entry in self.entries:
            found[entry.kind] += 1
        return found


# ---- sources ----------------------------------------------------------------------------------


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def _attempts(session: Session, freelancer_id: int, since: datetime | None,
              until: datetime | None, accounts: set[str]) -> Iterator[TimelineEntry]:
    """Each attempt's issue and outcome; collects the accounts they connected to."""
    rows = session.scalars(
        select(ConnectionAttempt).where(ConnectionAttempt.freelancer_id == freelancer_id,
                                        *_window(ConnectionAttempt.started_at, since, until))
        .order_by(ConnectionAttempt.started_at.desc()).limit(PER_SOURCE))
    for a in rows:
        if a.stripe_account_id:
            accounts.add(a.stripe_account_id)
        method = labels.method(a.method)
        yield TimelineEntry(a.started_at, Kind.CONNECTION, f"Link issued: {method}",
                            by=a.issued_by, reference=f"attempt {a.id}")
        ended = a.finished_at or a.returned_at
        if a.outcome == "succeeded":
            yield TimelineEntry(ended or a.started_at, Kind.ACCOUNT,
                                f"Connected to {a.stripe_account_id or 'a Stripe account'}",
                                detail=method, reference=f"attempt {a.id}")
        elif a.outcome in ("failed", "abandoned") and ended is not None:
            yield TimelineEntry(ended, Kind.CONNECTION, f"Connection {a.outcome}",
                                detail=labels.failure_reason(a.failure_reason),
                                reference=f"attempt {a.id}")


def _codes(by_bucket: dict[str, Any]) -> str:
    names = dict(CATEGORIES)
    parts = []
    for bucket, _ in CATEGORIES:
        codes = by_bucket.get(bucket) or []
        if codes:
            parts.append(f"{names[bucket]}: " + ", ".join(requirement_label(str(c))
                                                          for c in codes))
    return "; ".join(parts)


def _requirements(session: Session, freelancer_id: int, since: datetime | None,
                  until: datetime | None) -> Iterator[TimelineEntry]:
    rows = session.scalars(
        select(RequirementChange).where(RequirementChange.freelancer_id == freelancer_id,
                                        *_window(RequirementChange.observed_at, since, until))
        .order_by(RequirementChange.observed_at.desc()).limit(PER_SOURCE))
    for change in rows:
        added, removed = _codes(change.added or {}), _codes(change.removed or {})
        if added and not removed:
            event = "Stripe asks for more information"
        elif removed and not added:
            event = "Requirements met or withdrawn"
        elif added:
            event = "Requirements changed"
        else:
            event = "Deadline moved"
        detail = []
        if added:
            detail.append(f"Now asked: {added}")
        if removed:
            detail.append(f"No longer asked: {removed}")
        if change.deadline != change.previous_deadline:
            detail.append("Deadline: " + (f"{change.deadline:%Y-%m-%d %H:%M} UTC"
                                          if change.deadline else "none"))
        yield TimelineEntry(change.observed_at, Kind.REQUIREMENTS, event, "; ".join(detail),
                            by="Stripe", reference=f"status {labels.spelled(change.status)}"
                            if change.status else "")


def _payouts(session: Session, freelancer_id: int, since: datetime | None,
             until: datetime | None) -> tuple[list[TimelineEntry], list[int], bool]:
    rows = list(session.scalars(
        select(Payout).where(Payout.freelancer_id == freelancer_id)
        .order_by(Payout.created_at.desc()).limit(PER_SOURCE)))
    entries: list[TimelineEntry] = []

    def add(at: datetime | None, event: str, payout: Payout, detail: str = "",
            by: str = "") -> None:
        if at is None or (since is not None and at < since) or (until is not None and
                                                                 at >= until):
            return
        entries.append(TimelineEntry(at, Kind.PAYOUT, event, detail,
                                     money_text(payout.amount_minor, payout.currency), by,
                                     f"payout {payout.id}"))

    for p in rows:
        add(p.created_at, f"Payout requested ({p.payout_type.lower()})", p, p.description,
            p.requested_by)
        if p.approved_at is not None:
            add(p.approved_at, "Payout approved", p, by=p.approved_by or "")
        settled = p.completed_at or p.updated_at
        if p.status in ("paid", "reversed"):
            add(settled, "Payout paid", p, p.stripe_transfer_id or "")
        elif p.status == "failed":
            add(settled, "Payout failed", p, p.error_message or p.error_code or "")
        elif p.status == "rejected":
            add(settled, "Payout rejected", p, p.rejection_reason or "", p.rejected_by or "")
        elif p.status == "unknown":
            add(settled, "Payout outcome unknown (reconciliation settles it)", p)
    ids = [p.id for p in rows]
    if ids:
        reversals = session.execute(
            select(PayoutReversal, Payout.currency).join(Payout, Payout.id == PayoutReversal.payout_id)
            .where(PayoutReversal.payout_id.in_(ids)))
        for r, currency in reversals:
            at = r.completed_at or r.created_at
            if (since is None or at >= since) and (until is None or at < until):
                entries.append(TimelineEntry(
                    at, Kind.PAYOUT, f"Reversal {labels.spelled(r.status).lower()}", r.reason,
                    money_text(r.amount_minor, currency), r.requested_by,
                    f"payout {r.payout_id}"))
    return entries, ids, len(rows) == PER_SOURCE


def _bank(session: Session, freelancer_id: int, since: datetime | None,
          until: datetime | None) -> Iterator[TimelineEntry]:
    rows = session.scalars(
        select(BankPayout).where(BankPayout.freelancer_id == freelancer_id)
        .order_by(BankPayout.stripe_created.desc()).limit(PER_SOURCE))
    for b in rows:
        at = b.settled_at or b.stripe_created or b.updated_at
        if (since is not None and at < since) or (until is not None and at >= until):
            continue
        if b.status == "failed":
            event, detail = "Bank payout failed", failure_reason(b.failure_code)
        else:
            event, detail = f"Bank payout {labels.bank_payout_status(b.status).lower()}", ""
        yield TimelineEntry(at, Kind.BANK, event, detail, money_text(b.amount_minor, b.currency),
                            "Stripe", b.stripe_payout_id)


def _audit(session: Session, freelancer: Freelancer, payout_ids: list[int],
           accounts: set[str], since: datetime | None,
           until: datetime | None) -> tuple[list[TimelineEntry], bool]:
    if freelancer.stripe_account_id:
        accounts = accounts | {freelancer.stripe_account_id}
    targets = [f"freelancer:{freelancer.id}", *(f"payout:{pid}" for pid in payout_ids),
               *sorted(accounts)]
    rows = list(session.scalars(
        select(AuditLog).where(AuditLog.target.in_(targets),
                               *_window(AuditLog.occurred_at, since, until))
        .order_by(AuditLog.occurred_at.desc()).limit(PER_SOURCE)))
    entries = []
    for row in rows:
        if row.action in _ACCOUNT_ACTIONS:
            entries.append(TimelineEntry(
                row.occurred_at, Kind.ACCOUNT, _ACCOUNT_ACTIONS[row.action],
                str((row.input or {}).get("account") or ""), by=row.actor,
                reference=f"audit {row.id}"))
            continue
        detail = row.detail or ""
        entries.append(TimelineEntry(
            row.occurred_at, Kind.AUDIT,
            f"{labels.spelled(row.action.replace('.', ' '))}: "
            f"{row.result.replace('_', ' ').replace(':', ', ')}", detail,
            by=row.actor + (f" ({row.actor_role})" if row.actor_role else ""),
            reference=f"audit {row.id}" + (f" · {row.target}" if row.target else "")))
    return entries, len(rows) == PER_SOURCE


def _current_connection(freelancer: Freelancer, entries: Iterable[TimelineEntry],
                        since: datetime | None, until: datetime | None) -> list[TimelineEntry]:
    """The current connection when no succeeded attempt shows it (a connection made before
    attempts were recorded), and the last disconnection when no audit entry shows it."""
    found = []
    shown = {(e.kind, e.event.split(" ")[0]) for e in entries}
    for at, event, detail in (
        (freelancer.connected_at, f"Connected to {freelancer.stripe_account_id}",
         labels.method(freelancer.connection_method)),
        (freelancer.disconnected_at, "Disconnected", ""),
    ):
        if at is None or (since is not None and at < since) or (until is not None and
                                                                 at >= until):
            continue
        if event.startswith("Connected") and not freelancer.stripe_account_id:
            continue
        if (Kind.ACCOUNT, event.split(" ")[0]) not in shown:
            found.append(TimelineEntry(at, Kind.ACCOUNT, event, detail))
    return found


def freelancer_timeline(
    session: Session, *, operator: Operator, freelancer_id: int,
    kinds: Iterable[Kind] | None = None, since: datetime | None = None,
    until: datetime | None = None,
) -> Timeline:
    """The freelancer's story, newest first, limited to ``kinds`` and ``[since, until)``."""
    authorize(operator, Action.VIEW_ACCOUNTS, session=session,
              target=f"freelancer:{freelancer_id}")
    freelancer = session.get(Freelancer, freelancer_id)
    if freelancer is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    wanted = set(kinds) if kinds is not None else set(Kind)
    hidden = frozenset() if operator.can(Action.VIEW_AUDIT_LOG) else frozenset({Kind.AUDIT})
    entries: list[TimelineEntry] = []
    accounts: set[str] = set()
    entries.extend(_attempts(session, freelancer_id, since, until, accounts))
    entries.extend(_requirements(session, freelancer_id, since, until))
    payouts, payout_ids, truncated = _payouts(session, freelancer_id, since, until)
    entries.extend(payouts)
    entries.extend(_bank(session, freelancer_id, since, until))
    audit_entries, audit_truncated = _audit(session, freelancer, payout_ids, accounts, since,
                                            until)
    entries.extend(e for e in audit_entries if e.kind not in hidden)
    entries.extend(_current_connection(freelancer, entries, since, until))
    oldest = datetime.min.replace(tzinfo=UTC)
    entries = sorted((e for e in entries if e.kind in wanted and e.kind not in hidden),
                     key=lambda e: (e.at or oldest, e.kind.value), reverse=True)
    return Timeline(freelancer.id, freelancer.name, entries, hidden,
                    truncated or audit_truncated)


def timeline_export_rows(
    session: Session, *, operator: Operator, freelancer_id: int,
    kinds: Iterable[Kind] | None = None, since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """The filtered timeline as export rows (``EXPORT_COLUMNS``)."""
    authorize(operator, Action.EXPORT, session=session, target=f"freelancer:{freelancer_id}")
    timeline = freelancer_timeline(session, operator=operator, freelancer_id=freelancer_id,
                                   kinds=kinds, since=since, until=until)
    return [e.export() for e in timeline.entries]
