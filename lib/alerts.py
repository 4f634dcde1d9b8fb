"""Alerts: rules the worker checks, one alert per episode, pushed by email and chat.

**Rules** (``alert_rules``) are a kind from :data:`KINDS` with its settings (thresholds,
windows), where its alerts go (email recipients of the rule, the chat webhook or not) and
whether they are sent at once or collected into the periodic digest. Admins manage them
(``Action.MANAGE_ALERTS``).

**Episodes.** A kind's check returns the conditions holding now, each under a key (an account,
a failure reason, ``all``). A condition holding with no open alert opens one (an ``alerts``
row whose unique ``open_key`` is set while it is open); one still holding only updates
``last_seen_at``; an open alert whose condition no longer holds is cleared (``open_key``
emptied). So a condition is alerted once per episode however often it is checked, and again
only after it cleared and came back. The unique key settles two evaluators racing (two
workers, the companion's watchdog): the database admits one open alert per rule and key.

**Messages.** The alerts a run opens for a rule are written to the outbox in the same
transaction (one email per recipient and one chat message, listing them), or left for the
digest, which writes one message per recipient for every pending alert of the digest rules.

**Where the checks run.** The worker runs them every ``ALERT_CHECK_INTERVAL_SECONDS`` (a
scheduled job, ``lib.jobs.register_job``), except "the worker is not heartbeating", which a
dead worker cannot notice: the companion service runs that one (:class:`WorkerWatchdog`) and
delivers its messages itself, since the worker that would deliver them is the one gone.

Alert texts name accounts, payouts and freelancers by id only: a chat channel is wider than
the desk, and no alert needs a freelancer's name or email.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lib import audit, messaging
from lib.db import utcnow
from lib.errors import ConnectOpsError, NotFoundError, ValidationError
from lib.jobs import Job, JobContext, register_job
from lib.messaging import html_escape
from lib.models import (
    Alert,
    AlertRule,
    AttemptOutcome,
    AuditLog,
    BankPayout,
    BankPayoutStatus,
    ConnectedAccount,
    ConnectionAttempt,
    ConnectionMethod,
    Freelancer,
    MessageChannel,
    MessageKind,
    Payout,
    PayoutStatus,
    ReconciliationRun,
    WebhookEvent,
    WebhookStatus,
    WorkerHeartbeat,
)
from lib.money import Money, MoneyError, format_money
from lib.outbox import OutboxPolicy, Transports, claim_message, deliver, enqueue
from lib.roles import Action, Operator, Role, authorize, authorize_in
from lib.settings import Settings

logger = logging.getLogger(__name__)
#: The column types a statement helper passes through unchanged.
_Ts = TypeVarTuple("_Ts")

#: Who opens alerts and writes their messages (the audit log and the outbox name it).
SYSTEM = Operator(username="system:alerts", roles=frozenset({Role.ADMIN}))
#: Lines of conditions one message lists before "and N more".
MAX_LINES = 20
MAX_RECIPIENTS = 20
_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+$")


# ---- the kinds of rule ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    label: str
    default: int
    minimum: int
    maximum: int


@dataclass(frozen=True, slots=True)
class Condition:
    """One instance of a rule's condition holding now."""

    key: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


Check = Callable[[Session, dict[str, int], datetime], list[Condition]]


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    title: str
    description: str
    severity: str
    params: tuple[Param, ...]
    check: Check
    #: What to do about it, in the message.
    hint: str
    #: False: checked by the companion's watchdog, not by the worker.
    in_worker: bool = True


def _current_accounts(statement: Select[*_Ts]) -> Select[*_Ts]:
    """``statement`` over the accounts that are some freelancer's current account."""
    return statement.select_from(ConnectedAccount).join(
        Freelancer, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)


def _past_due_new(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    rows = session.execute(_current_accounts(select(
        Freelancer.id, ConnectedAccount.stripe_id, ConnectedAccount.past_due_count,
        ConnectedAccount.current_deadline))
        .where(ConnectedAccount.past_due_count > 0)
        .order_by(ConnectedAccount.current_deadline.asc().nulls_last(), Freelancer.id)).all()
    return [Condition(str(account), f"Freelancer #{fid} ({account}): {count} requirement(s) "
                      "past due; Stripe stops or has stopped their payouts.",
                      {"freelancer_id": int(fid), "account": str(account)})
            for fid, account, count, _ in rows]


def _past_due_count(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    count = int(session.scalar(_current_accounts(select(func.count()))
                               .where(ConnectedAccount.past_due_count > 0)) or 0)
    if count <= params["threshold"]:
        return []
    return [Condition("all", f"{count} connected accounts have past-due requirements "
                      f"(threshold {params['threshold']}).", {"count": count})]


def _deadlines(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    horizon = now + timedelta(days=params["days"])
    rows = session.execute(_current_accounts(select(
        Freelancer.id, ConnectedAccount.stripe_id, ConnectedAccount.current_deadline))
        .where(ConnectedAccount.current_deadline >= now,
               ConnectedAccount.current_deadline < horizon,
               or_(ConnectedAccount.currently_due_count > 0,
                   ConnectedAccount.past_due_count > 0))
        .order_by(ConnectedAccount.current_deadline, Freelancer.id)).all()
    conditions = []
    for fid, account, deadline in rows:
        assert deadline is not None  # compared with a time in the WHERE: NULL is never selected
        conditions.append(Condition(
            str(account), f"Freelancer #{fid} ({account}): requirements due by "
            f"{deadline:%Y-%m-%d %H:%M} UTC.",
            {"freelancer_id": int(fid), "account": str(account), "deadline": deadline.isoformat()}))
    return conditions


def _success_rate(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    since = now - timedelta(hours=params["window_hours"])
    decided = (AttemptOutcome.SUCCEEDED.value, AttemptOutcome.FAILED.value,
               AttemptOutcome.ABANDONED.value)
    counts = dict(session.execute(
        select(ConnectionAttempt.outcome, func.count())
        .where(ConnectionAttempt.started_at >= since, ConnectionAttempt.outcome.in_(decided))
        .group_by(ConnectionAttempt.outcome)).all())
    total = sum(int(v) for v in counts.values())
    if total < params["min_attempts"]:
        return []
    succeeded = int(counts.get(AttemptOutcome.SUCCEEDED.value, 0))
    # Integer arithmetic: "below 80 %" is succeeded * 100 < 80 * total, no rounding.
    if succeeded * 100 >= params["threshold_percent"] * total:
        return []
    percent = round(100 * succeeded / total, 1)
    return [Condition("all", f"Connection success rate {percent}% over the last "
                      f"{params['window_hours']} h ({succeeded} of {total} attempts), below "
                      f"{params['threshold_percent']}%.",
                      {"succeeded": succeeded, "attempts": total})]


def _oauth_failures(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    since = now - timedelta(minutes=params["window_minutes"])
    rows = session.execute(
        select(ConnectionAttempt.failure_reason, func.count())
        .where(ConnectionAttempt.outcome == AttemptOutcome.FAILED.value,
               ConnectionAttempt.started_at >= since,
               ConnectionAttempt.method == ConnectionMethod.OAUTH.value)
        .group_by(ConnectionAttempt.failure_reason)).all()
    return [Condition(str(reason or "unknown"),
                      f"{count} OAuth connection(s) failed with {reason or 'no reason'} in the "
                      f"last {params['window_minutes']} minutes (threshold "
                      f"{params['threshold']}).", {"reason": reason, "count": int(count)})
            for reason, count in sorted(rows, key=lambda r: str(r[0]))
            if int(count) > params["threshold"]]


def _bank_payouts_failed(session: Session, params: dict[str, int],
                         now: datetime) -> list[Condition]:
    # Issue 21 keeps connected accounts' bank payouts (lib.bank_payouts, from payout.* events);
    # its rows are what the Failed bank payouts page lists, so the alert names the same ones.
    since = now - timedelta(hours=params["window_hours"])
    rows = session.execute(
        select(BankPayout.stripe_payout_id, BankPayout.stripe_account_id,
               BankPayout.amount_minor, BankPayout.currency, BankPayout.failure_code)
        .where(BankPayout.status == BankPayoutStatus.FAILED.value,
               BankPayout.settled_at >= since)
        .order_by(BankPayout.id)).all()
    found: list[Condition] = []
    for payout_id, account, amount, currency, failure_code in rows:
        try:
            shown = format_money(Money(int(amount), str(currency)))
        except MoneyError:
            shown = f"{amount} {currency}".strip()
        code = str(failure_code or "unknown reason")[:100]
        found.append(Condition(str(payout_id)[:100], f"Bank payout {payout_id} of {account} "
                               f"failed ({code}): {shown}.",
                               {"account": account, "failure_code": code}))
    return found


def _dead_letters(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    count = int(session.scalar(select(func.count()).select_from(WebhookEvent)
                               .where(WebhookEvent.status == WebhookStatus.DEAD.value)) or 0)
    if count <= params["threshold"]:
        return []
    return [Condition("dead", f"{count} webhook event(s) are dead letters: every attempt "
                      "failed. Replay them on Webhooks and sync once the cause is fixed.",
                      {"count": count})]


def _processing_lag(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    waiting = (WebhookStatus.RECEIVED.value, WebhookStatus.PROCESSING.value,
               WebhookStatus.FAILED.value)
    oldest = session.scalar(select(func.min(WebhookEvent.received_at))
                            .where(WebhookEvent.status.in_(waiting)))
    if oldest is None or now - oldest <= timedelta(seconds=params["seconds"]):
        return []
    lag = int((now - oldest).total_seconds())
    return [Condition("lag", f"The oldest unprocessed webhook event was received {lag} s ago "
                      f"(threshold {params['seconds']} s).", {"lag_seconds": lag})]


def _reconciliation_drift(session: Session, params: dict[str, int],
                          now: datetime) -> list[Condition]:
    since = now - timedelta(hours=params["window_hours"])
    latest = session.execute(
        select(ReconciliationRun.id, ReconciliationRun.mismatches)
        .where(ReconciliationRun.status == "ok")
        .order_by(ReconciliationRun.started_at.desc(), ReconciliationRun.id.desc())
        .limit(1)).first()
    # Issue 17 records each drift it finds as a ``payout.drift`` audit entry.
    drifts = int(session.scalar(select(func.count()).select_from(AuditLog)
                                .where(AuditLog.action == "payout.drift",
                                       AuditLog.occurred_at >= since)) or 0)
    latest_id, mismatches = (latest[0], int(latest[1])) if latest is not None else (None, 0)
    if not mismatches and not drifts:
        return []
    parts: list[str] = []
    if mismatches:
        parts.append(f"the latest reconciliation report (#{latest_id}) lists {mismatches} "
                     "mismatch(es)")
    if drifts:
        parts.append(f"{drifts} payout drift(s) recorded in the last {params['window_hours']} h")
    return [Condition("drift", "Reconciliation drift: " + "; ".join(parts) + ".",
                      {"mismatches": mismatches, "drifts": drifts})]


def _unknown_payouts(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    cutoff = now - timedelta(minutes=params["minutes"])
    rows = session.execute(
        select(Payout.id, Payout.freelancer_id, Payout.amount_minor, Payout.currency,
               Payout.updated_at)
        .where(Payout.status == PayoutStatus.UNKNOWN.value, Payout.updated_at < cutoff)
        .order_by(Payout.id)).all()
    return [Condition(f"payout:{pid}", f"Payout #{pid} to freelancer #{fid} "
                      f"({format_money(Money(int(amount), currency))}) has had an unknown "
                      f"outcome since {updated:%Y-%m-%d %H:%M} UTC: run Reconciliation before "
                      "paying again.", {"payout_id": int(pid)})
            for pid, fid, amount, currency, updated in rows]


def _worker_silent(session: Session, params: dict[str, int], now: datetime) -> list[Condition]:
    last = session.scalar(select(func.max(WorkerHeartbeat.last_seen_at))
                          .where(WorkerHeartbeat.stopped_at.is_(None)))
    if last is not None and now - last <= timedelta(seconds=params["seconds"]):
        return []
    since = ("No background worker is running" if last is None
             else f"No background worker has reported since {last:%Y-%m-%d %H:%M:%S} UTC")
    return [Condition("worker", f"{since}: webhooks are stored but not processed, jobs and "
                      "messages wait.",
                      {"last_seen_at": last.isoformat() if last else None})]


def _summary_mismatch(session: Session, params: dict[str, int],
                      now: datetime) -> list[Condition]:
    from lib.summaries.runs import latest_check

    latest = latest_check(session)
    if latest is None or not latest.mismatches:
        return []
    first = (latest.details.get("differences") or [{}])[0]
    return [Condition("summaries", f"The dashboard's summaries differ from a recount in "
                      f"{latest.mismatches} place(s) (check #{latest.id} at "
                      f"{latest.checked_at:%Y-%m-%d %H:%M} UTC; first: {first.get('kind')} "
                      f"{first.get('day') or ''}): the Overview and metrics may be wrong.",
                      {"check_id": latest.id, "mismatches": latest.mismatches})]


KINDS: dict[str, Kind] = {k.kind: k for k in (
    Kind("past_due_new", "Requirements past due (new)",
         "An account's requirements become past due: one alert per account.", "error", (),
         _past_due_new, "Email the freelancer from Requirements due."),
    Kind("past_due_count", "Requirements past due (count)",
         "More accounts than the threshold have past-due requirements.", "error",
         (Param("threshold", "More than this many accounts", 10, 0, 100_000),),
         _past_due_count, "See Requirements due; email the freelancers not contacted lately."),
    Kind("deadline_soon", "Deadlines within N days",
         "An account's requirements deadline falls within N days: one alert per account.",
         "warning", (Param("days", "Days ahead", 7, 1, 90),), _deadlines,
         "Email the freelancer from Requirements due before the deadline."),
    Kind("success_rate", "Connection success rate",
         "The share of connection attempts that succeed falls below a threshold.", "warning",
         (Param("threshold_percent", "Below this %", 80, 1, 100),
          Param("window_hours", "Over the last hours", 24, 1, 720),
          Param("min_attempts", "With at least this many attempts", 10, 1, 100_000)),
         _success_rate, "See Connection metrics for the failure reasons."),
    Kind("oauth_failures", "OAuth failures by reason",
         "More OAuth failures of one reason than the threshold within a window.", "warning",
         (Param("threshold", "More than this many", 5, 0, 100_000),
          Param("window_minutes", "Within minutes", 60, 1, 10_080)),
         _oauth_failures, "Check the OAuth settings (client id, redirect URI) and Stripe's "
         "status."),
    Kind("bank_payout_failed", "Bank payouts failing (payout.failed)",
         "A connected account's payout to its bank failed: one alert per payout.", "error",
         (Param("window_hours", "Failed in the last hours", 24, 1, 720),),
         _bank_payouts_failed, "Ask the freelancer to check the bank account in their "
         "payment settings."),
    Kind("webhook_dead_letters", "Webhook dead letters",
         "More webhook events than the threshold are dead letters.", "error",
         (Param("threshold", "More than this many", 0, 0, 100_000),),
         _dead_letters, "Fix the cause, then replay them on Webhooks and sync."),
    Kind("webhook_lag", "Webhook processing lag",
         "The oldest unprocessed webhook event waits longer than the threshold.", "warning",
         (Param("seconds", "Longer than seconds", 300, 10, 86_400),),
         _processing_lag, "Check the worker on Webhooks and sync; add workers if it is busy."),
    Kind("reconciliation_drift", "Reconciliation drift",
         "The latest reconciliation lists mismatches, or payout drift was recorded.", "error",
         (Param("window_hours", "Drift recorded in the last hours", 48, 1, 720),),
         _reconciliation_drift, "Open Reconciliation and settle every mismatch."),
    Kind("payout_unknown", "Payout outcome unknown too long",
         "A payout stays unknown longer than the limit.", "error",
         (Param("minutes", "Longer than minutes", 60, 1, 10_080),),
         _unknown_payouts, "Run Reconciliation; do not pay the freelancer again until it is "
         "settled."),
    Kind("summary_mismatch", "Summaries differ from a recount",
         "The daily check found a dashboard summary that differs from a full recount.",
         "error", (), _summary_mismatch,
         "Run python -m lib.summaries rebuild, then report the check's details as a bug."),
    Kind("worker_silent", "Worker not heartbeating",
         "No background worker has written a heartbeat for longer than the limit (checked by "
         "the companion service).", "error",
         (Param("seconds", "Longer than seconds", 120, 30, 86_400),),
         _worker_silent, "Restart python -m lib.worker and look at its log.", in_worker=False),
)}


# ---- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleView:
    id: int
    kind: str
    title: str
    name: str
    enabled: bool
    params: dict[str, int]
    email_recipients: list[str]
    chat: bool
    digest: bool
    open_alerts: int


def parse_recipients(text: str) -> list[str]:
    """Comma/semicolon/newline separated addresses, each checked; ValidationError otherwise."""
    found = [p.strip() for p in re.split(r"[,;\n]", text or "") if p.strip()]
    bad = [p for p in found if len(p) > 320 or not _EMAIL.match(p)]
    if bad:
        raise ValidationError(f"Not an email address: {bad[0][:80]!r}.")
    if len(found) > MAX_RECIPIENTS:
        raise ValidationError(f"At most {MAX_RECIPIENTS} recipients per rule.")
    return list(dict.fromkeys(a.lower() for a in found))


def check_params(kind: Kind, given: dict[str, Any] | None) -> dict[str, int]:
    """The kind's settings with defaults filled in, each a whole number within its bounds."""
    values: dict[str, int] = {}
    given = dict(given or {})
    for param in kind.params:
        raw = given.pop(param.name, param.default)
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValidationError(f"{param.label} must be a whole number.")
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValidationError(f"{param.label} must be a whole number.") from None
        if not param.minimum <= value <= param.maximum:
            raise ValidationError(f"{param.label} must be between {param.minimum} and "
                                  f"{param.maximum}.")
        values[param.name] = value
    if given:
        raise ValidationError(f"Unknown setting {sorted(given)[0]!r} for {kind.title}.")
    return values


def _kind(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise ValidationError(f"Unknown alert kind {name!r}.")
    return kind


def list_rules(session: Session, *, operator: Operator) -> list[RuleView]:
    authorize(operator, Action.MANAGE_ALERTS, session=session)
    open_counts = dict(session.execute(
        select(Alert.rule_id, func.count()).where(Alert.open_key.is_not(None))
        .group_by(Alert.rule_id)).all())
    return [RuleView(r.id, r.kind, KINDS[r.kind].title if r.kind in KINDS else r.kind, r.name,
                     r.enabled, dict(r.params or {}),
                     [a for a in (r.email_recipients or "").split(",") if a], r.chat, r.digest,
                     int(open_counts.get(r.id, 0)))
            for r in session.scalars(select(AlertRule).order_by(AlertRule.id))]


def save_rule(
    session: Session, *, operator: Operator, kind: str, name: str, params: dict[str, Any],
    email_recipients: str = "", chat: bool = False, digest: bool = False,
    enabled: bool = True, rule_id: int | None = None, now: datetime | None = None,
) -> int:
    """Create a rule, or change rule ``rule_id``; audited. Invalid input writes nothing."""
    authorize(operator, Action.MANAGE_ALERTS, session=session,
              target=f"alert_rule:{rule_id}" if rule_id else None)
    found = _kind(kind)
    clean_name = " ".join((name or "").split())[:200] or found.title
    values = check_params(found, params)
    recipients = parse_recipients(email_recipients)
    moment = now or utcnow()
    rule: AlertRule | None
    if rule_id is None:
        rule = AlertRule(kind=found.kind, name=clean_name, enabled=enabled, params=values,
                         email_recipients=",".join(recipients), chat=chat, digest=digest,
                         created_by=operator.username[:200], created_at=moment)
        session.add(rule)
        session.flush()
        action = "alert_rule.create"
    else:
        rule = session.get(AlertRule, rule_id)
        if rule is None:
            raise NotFoundError(f"Alert rule {rule_id} does not exist.")
        if rule.kind != found.kind:
            raise ValidationError("A rule's kind cannot change: add a new rule instead.")
        rule.name, rule.enabled, rule.params = clean_name, enabled, values
        rule.email_recipients, rule.chat, rule.digest = ",".join(recipients), chat, digest
        rule.updated_by, rule.updated_at = operator.username[:200], moment
        action = "alert_rule.update"
    audit.record(session, actor=operator, action=action, result="saved",
                 target=f"alert_rule:{rule.id}",
                 input={"kind": found.kind, "name": clean_name, "enabled": enabled,
                        "params": values, "recipients": len(recipients), "chat": chat,
                        "digest": digest})
    return rule.id


def add_recommended_rules(session: Session, *, operator: Operator, email_recipients: str = "",
                          chat: bool = False) -> list[int]:
    """One rule of every kind with its default settings (kinds already present are skipped)."""
    authorize(operator, Action.MANAGE_ALERTS, session=session)
    present = set(session.scalars(select(AlertRule.kind)))
    return [save_rule(session, operator=operator, kind=kind.kind, name=kind.title, params={},
                      email_recipients=email_recipients, chat=chat)
            for kind in KINDS.values() if kind.kind not in present]


# ---- evaluating ----------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    rules: int = 0
    opened: int = 0
    cleared: int = 0
    messages: list[int] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.rules} rule(s) checked: {self.opened} alert(s) opened, "
                f"{self.cleared} cleared, {len(self.messages)} message(s) queued")


def _insert_alert(session: Session, values: dict[str, Any]) -> int | None:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = Alert.__table__
    row = session.execute(insert(table).values(**values)
                          .on_conflict_do_nothing(index_elements=["open_key"])
                          .returning(table.c.id)).first()
    return int(row[0]) if row is not None else None


def evaluate_rule(session: Session, *, rule: AlertRule, now: datetime) -> tuple[list[Alert], int]:
    """Open, keep and clear the rule's episodes in the caller's transaction.

    Returns the alerts this call opened and how many it cleared.
    """
    kind = KINDS[rule.kind]
    params = check_params(kind, rule.params)
    holding = {c.key[:255]: c for c in kind.check(session, params, now)}
    open_alerts = {a.condition_key: a for a in session.scalars(
        select(Alert).where(Alert.rule_id == rule.id, Alert.open_key.is_not(None)))}
    cleared = [a.id for key, a in open_alerts.items() if key not in holding]
    if cleared:
        session.execute(update(Alert).where(Alert.id.in_(cleared), Alert.open_key.is_not(None))
                        .values(open_key=None, cleared_at=now)
                        .execution_options(synchronize_session=False))
    still = [a.id for key, a in open_alerts.items() if key in holding]
    if still:
        session.execute(update(Alert).where(Alert.id.in_(still)).values(last_seen_at=now)
                        .execution_options(synchronize_session=False))
    opened_ids = []
    for key, condition in holding.items():
        if key in open_alerts:
            continue
        new_id = _insert_alert(session, {
            "rule_id": rule.id, "condition_key": key, "open_key": f"{rule.id}:{key}",
            "severity": kind.severity, "summary": condition.summary[:2000],
            "details": condition.details, "opened_at": now, "last_seen_at": now})
        if new_id is not None:  # None: another evaluator opened it first
            opened_ids.append(new_id)
    opened = list(session.scalars(select(Alert).where(Alert.id.in_(opened_ids))
                                  .order_by(Alert.id))) if opened_ids else []
    return opened, len(cleared)


def _lines(alerts: list[Alert]) -> list[str]:
    shown = [a.summary for a in alerts[:MAX_LINES]]
    if len(alerts) > MAX_LINES:
        shown.append(f"… and {len(alerts) - MAX_LINES} more (see the Overview).")
    return shown


def _compose(title: str, groups: list[tuple[AlertRule, list[Alert]]]
             ) -> tuple[str, str, str, dict[str, Any]]:
    """Subject, text, HTML and chat JSON of a message about these alerts."""
    count = sum(len(alerts) for _, alerts in groups)
    severity = "error" if any(a.severity == "error" for _, al in groups for a in al) \
        else "warning"
    text_parts, html_parts, chat_lines = [], [], []
    for rule, alerts in groups:
        kind = KINDS.get(rule.kind)
        hint = kind.hint if kind else ""
        lines = _lines(alerts)
        text_parts += [f"{rule.name}:", *(f"  - {line}" for line in lines),
                       f"  What to do: {hint}", ""]
        items = "".join(f"<li>{html_escape(line)}</li>" for line in lines)
        html_parts.append(f"<h3>{html_escape(rule.name)}</h3><ul>{items}</ul>"
                          f"<p><em>What to do:</em> {html_escape(hint)}</p>")
        chat_lines += [f"{rule.name}:", *(f"• {line}" for line in lines)]
    subject = f"[Connect Ops] {title}: {count} alert{'s' if count != 1 else ''}"
    text = "\n".join([f"{title} ({count} alert{'s' if count != 1 else ''})", "",
                      *text_parts, "Alerts are listed on the Connect Ops Overview."])
    html = ('<!doctype html><html><body style="font-family:sans-serif">'
            f"<h2>{html_escape(title)}</h2>{''.join(html_parts)}"
            "<p>Alerts are listed on the Connect Ops Overview.</p></body></html>")
    chat = messaging.chat_payload(title=f"{title}: {count} alert{'s' if count != 1 else ''}",
                                  text="\n".join(chat_lines), severity=severity,
                                  fields=[("Rules", ", ".join(r.name for r, _ in groups))])
    return subject, text, html, chat


def _notify(session: Session, *, key: str, title: str,
            groups: list[tuple[AlertRule, list[Alert]]], emails: list[str], chat: bool,
            now: datetime, kind: MessageKind) -> list[int]:
    """Write the messages about ``groups`` to the outbox and mark the alerts notified."""
    subject, text, html, payload = _compose(title, groups)
    written = []
    for address in emails:
        message_id, _ = enqueue(session, dedupe_key=f"{key}:email:{address}"[:255], kind=kind,
                                channel=MessageChannel.EMAIL, recipient=address,
                                subject=subject, body_text=text, body_html=html,
                                created_by=SYSTEM.username, now=now)
        written.append(message_id)
    if chat:
        message_id, _ = enqueue(session, dedupe_key=f"{key}:chat"[:255], kind=kind,
                                channel=MessageChannel.CHAT, recipient="chat", subject=subject,
                                body_text=text, payload=payload, created_by=SYSTEM.username,
                                now=now)
        written.append(message_id)
    ids = [a.id for _, alerts in groups for a in alerts]
    session.execute(update(Alert).where(Alert.id.in_(ids)).values(notified_at=now)
                    .execution_options(synchronize_session=False))
    return written


def evaluate_rules(factory: sessionmaker[Session], *, now: datetime | None = None,
                   in_worker: bool | None = True) -> EvaluationReport:
    """Check every enabled rule (of the worker's kinds, the watchdog's, or all when None).

    One transaction per rule: its episodes and its messages commit together.
    """
    moment = now or utcnow()
    report = EvaluationReport()
    with factory() as session:
        rule_ids = [r.id for r in session.scalars(select(AlertRule).where(AlertRule.enabled)
                                                  .order_by(AlertRule.id))
                    if r.kind in KINDS and (in_worker is None
                                            or KINDS[r.kind].in_worker == in_worker)]
    for rule_id in rule_ids:
        with factory.begin() as session:
            rule = session.get(AlertRule, rule_id)
            if rule is None or not rule.enabled:
                continue
            try:
                opened, cleared = evaluate_rule(session, rule=rule, now=moment)
            except ValidationError as exc:
                # A rule stored with settings its kind no longer accepts: the others still run.
                logger.error("alert rule %s (%s) skipped: %s", rule.id, rule.kind, exc.message)
                continue
            report.rules += 1
            report.opened += len(opened)
            report.cleared += cleared
            if opened and not rule.digest:
                report.messages += _notify(
                    session, key=f"alert:{opened[0].id}", title=rule.name,
                    groups=[(rule, opened)], emails=_recipients(rule), chat=rule.chat,
                    now=moment, kind=MessageKind.ALERT)
            elif opened and rule.digest:
                pass  # left with notified_at NULL for the digest
            if opened:
                logger.warning("alert rule %s (%s): %d alert(s) opened", rule.id, rule.kind,
                               len(opened))
    return report


def _recipients(rule: AlertRule) -> list[str]:
    return [a for a in (rule.email_recipients or "").split(",") if a]


def check_now(factory: sessionmaker[Session], *, operator: Operator,
              now: datetime | None = None) -> EvaluationReport:
    """An admin's "check the rules now" (every rule; messages go out through the outbox)."""
    authorize_in(factory, operator, Action.MANAGE_ALERTS)
    report = evaluate_rules(factory, now=now, in_worker=None)
    with factory.begin() as session:
        audit.record(session, actor=operator, action="alert_rule.check", result="checked",
                     input={"opened": report.opened, "cleared": report.cleared})
    return report


def send_digest(factory: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """One message per recipient (and one chat message) for every pending digest alert."""
    moment = now or utcnow()
    with factory.begin() as session:
        pending = list(session.execute(
            select(AlertRule, Alert).join(Alert, Alert.rule_id == AlertRule.id)
            .where(AlertRule.digest, Alert.notified_at.is_(None))
            .order_by(AlertRule.id, Alert.id)).all())
        if not pending:
            return 0
        by_rule: dict[int, tuple[AlertRule, list[Alert]]] = {}
        for rule, alert in pending:
            by_rule.setdefault(rule.id, (rule, []))[1].append(alert)
        key = f"digest:{min(a.id for _, a in pending)}-{max(a.id for _, a in pending)}"
        written: list[int] = []
        addresses = sorted({a for rule, _ in by_rule.values() for a in _recipients(rule)})
        for address in addresses:
            groups = [(rule, alerts) for rule, alerts in by_rule.values()
                      if address in _recipients(rule)]
            written += _notify(session, key=key, title="Alert digest", groups=groups,
                               emails=[address], chat=False, now=moment,
                               kind=MessageKind.DIGEST)
        chat_groups = [(rule, alerts) for rule, alerts in by_rule.values() if rule.chat]
        if chat_groups:
            written += _notify(session, key=key, title="Alert digest", groups=chat_groups,
                               emails=[], chat=True, now=moment, kind=MessageKind.DIGEST)
        # Rules with neither channel: their alerts are on the Overview; mark them done too.
        session.execute(update(Alert).where(Alert.id.in_([a.id for _, a in pending]))
                        .values(notified_at=moment).execution_options(synchronize_session=False))
    return len(written)


# ---- the Overview --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertView:
    id: int
    rule: str
    severity: str
    summary: str
    opened_at: datetime
    last_seen_at: datetime
    cleared_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


def recent_alerts(session: Session, *, operator: Operator, days: int = 7, limit: int = 50,
                  now: datetime | None = None) -> list[AlertView]:
    """Open alerts, then those cleared in the last ``days``; newest first."""
    authorize(operator, Action.VIEW_OVERVIEW, session=session)
    since = (now or utcnow()) - timedelta(days=days)
    rows = session.execute(
        select(Alert, AlertRule.name).join(AlertRule, AlertRule.id == Alert.rule_id)
        .where(or_(Alert.open_key.is_not(None), and_(Alert.cleared_at >= since)))
        .order_by(Alert.open_key.is_(None), Alert.opened_at.desc(), Alert.id.desc())
        .limit(limit)).all()
    return [AlertView(a.id, name, a.severity, a.summary, a.opened_at, a.last_seen_at,
                      a.cleared_at) for a, name in rows]


# ---- where the checks run ------------------------------------------------------------------------


def _check_job(ctx: JobContext) -> str:
    return evaluate_rules(ctx.session_factory, in_worker=True).line()


def _digest_job(ctx: JobContext) -> str:
    return f"{send_digest(ctx.session_factory)} digest message(s) queued"


register_job(lambda settings: Job(
    "alert_checks", timedelta(seconds=settings.alert_check_interval_seconds), _check_job,
    "Check the alert rules; open and clear alerts; queue their messages."))
register_job(lambda settings: Job(
    "alert_digest", timedelta(seconds=settings.alert_digest_interval_seconds), _digest_job,
    "Send the digest of the alerts of digest rules."))


def watchdog_pass(factory: sessionmaker[Session], *, settings: Settings,
                  worker_id: str, transports: Transports | None = None,
                  now: datetime | None = None) -> EvaluationReport:
    """Check the watchdog's rules and deliver what they queued, here and now."""
    report = evaluate_rules(factory, now=now, in_worker=False)
    policy = OutboxPolicy.from_settings(settings)
    for message_id in report.messages:
        claim = claim_message(factory, message_id=message_id, worker_id=worker_id,
                              policy=policy, now=now)
        if claim is not None:
            deliver(factory, settings=settings, claim=claim, policy=policy,
                    transports=transports, now=now)
    return report


class WorkerWatchdog:
    """A thread of the companion service: checks that a worker is alive (see the module)."""

    def __init__(self, factory: sessionmaker[Session], *, settings: Settings,
                 worker_id: str) -> None:
        self.session_factory = factory
        self.settings = settings
        self.worker_id = worker_id
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alerts-watchdog", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)

    def _run(self) -> None:
        while not self.stopping.wait(self.settings.alert_check_interval_seconds):
            try:
                watchdog_pass(self.session_factory, settings=self.settings,
                              worker_id=self.worker_id)
            except (SQLAlchemyError, ConnectOpsError) as exc:
                logger.warning("alerts watchdog: %s", type(exc).__name__)
