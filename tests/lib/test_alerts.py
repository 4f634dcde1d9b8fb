"""Alert rules: each fires once per episode, clears, fires again when its condition returns;
digests, the watchdog that does not need the worker, and rule management."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib.alerts import (
    KINDS,
    _insert_alert,
    add_recommended_rules,
    evaluate_rule,
    evaluate_rules,
    list_rules,
    recent_alerts,
    save_rule,
    send_digest,
    watchdog_pass,
)
from lib.db import utcnow
from lib.errors import PermissionDeniedError, ValidationError
from lib.models import (
    Alert,
    AlertRule,
    AuditLog,
    ConnectedAccount,
    MessageStatus,
    OutboxMessage,
    Payout,
    ReconciliationRun,
    WebhookEvent,
    WorkerHeartbeat,
)
from lib.roles import Operator, Role
from tests.factories import make_settings
from tests.factories_dashboard import add_attempt, add_freelancer, add_payout
from tests.support.mail import (
    running_chat_webhook,
    running_smtp_sink,
    text_of,
)

ADMIN = Operator("alice", frozenset({Role.ADMIN}))
MANAGER = Operator("mia", frozenset({Role.MANAGER}))
FINANCE = Operator("fiona", frozenset({Role.FINANCE}))


@dataclass
class Ctx:
    factory: sessionmaker[Session]
    now: datetime
    made: dict[str, Any] = field(default_factory=dict)

    def write(self, work: Callable[[Session], object]) -> object:
        with self.factory.begin() as session:
            return work(session)


def _event(ctx: Ctx, event_id: str, type_: str, status: str, received: datetime,
           payload: dict[str, Any] | None = None) -> None:
    ctx.write(lambda s: s.add(WebhookEvent(
        stripe_event_id=event_id, type=type_, endpoint="connect", account="acct_bank1",
        received_at=received, status=status, attempts=1,
        payload=payload or {"id": event_id, "type": type_})))


# ---- one scenario per kind: ``on`` makes the condition hold at ctx.now, ``off`` ends it --------


def _past_due_on(ctx: Ctx) -> None:
    if "fid" not in ctx.made:
        ctx.made["fid"] = ctx.write(lambda s: add_freelancer(s, state="disabled").id)
    ctx.write(lambda s: s.execute(update(ConnectedAccount).values(past_due_count=1)))


def _past_due_off(ctx: Ctx) -> None:
    ctx.write(lambda s: s.execute(update(ConnectedAccount).values(past_due_count=0)))


def _count_on(ctx: Ctx) -> None:
    if "made" not in ctx.made:
        ctx.made["made"] = [ctx.write(lambda s: add_freelancer(s, state="disabled").id)
                            for _ in range(2)]
    ctx.write(lambda s: s.execute(update(ConnectedAccount).values(past_due_count=1)))


def _deadline_on(ctx: Ctx) -> None:
    if "fid" not in ctx.made:
        ctx.made["fid"] = ctx.write(lambda s: add_freelancer(s, state="restricted",
                                                             deadline_days=3, now=ctx.now).id)
    ctx.write(lambda s: s.execute(update(ConnectedAccount).values(currently_due_count=1)))


def _deadline_off(ctx: Ctx) -> None:
    ctx.write(lambda s: s.execute(update(ConnectedAccount).values(currently_due_count=0)))


def _rate_on(ctx: Ctx) -> None:
    def add(session: Session) -> None:
        fid = add_freelancer(session, state="not_connected").id
        for outcome in ("succeeded", "failed", "failed", "abandoned"):
            add_attempt(session, freelancer_id=fid, started_at=ctx.now - timedelta(hours=1),
                        outcome=outcome, reason=None if outcome == "succeeded" else "access_denied")
    ctx.write(add)


def _rate_off(ctx: Ctx) -> None:
    """Successes lift the rate back over the threshold; then the window moves past them all."""
    def add(session: Session) -> None:
        fid = add_freelancer(session, state="not_connected").id
        for _ in range(12):  # 13 of 16 succeeded: 81 %
            add_attempt(session, freelancer_id=fid, started_at=ctx.now - timedelta(minutes=5),
                        outcome="succeeded")
    ctx.write(add)
    assert evaluate_rules(ctx.factory, now=ctx.now).cleared == 1
    ctx.now += timedelta(hours=25)


def _oauth_on(ctx: Ctx) -> None:
    def add(session: Session) -> None:
        fid = add_freelancer(session, state="not_connected").id
        for _ in range(3):
            add_attempt(session, freelancer_id=fid, method="oauth", outcome="failed",
                        reason="exchange_failed", started_at=ctx.now - timedelta(minutes=5))
    ctx.write(add)


def _later(hours: float) -> Callable[[Ctx], None]:
    def move(ctx: Ctx) -> None:
        ctx.now += timedelta(hours=hours)
    return move


def _bank_on(ctx: Ctx) -> None:
    """A connected account's payout to its bank failed (issue 21's table, as lib.bank_payouts
    writes it from the payout.failed event)."""
    from lib.models import BankPayout

    number = ctx.made["bank"] = ctx.made.get("bank", 0) + 1
    ctx.write(lambda s: s.add(BankPayout(
        stripe_payout_id=f"po_{number}", stripe_account_id="acct_bank1", amount_minor=12_345,
        currency="eur", status="failed", failure_code="account_closed", settled_at=ctx.now,
        event_created=ctx.now, stripe_created=ctx.now)))


def _dead_on(ctx: Ctx) -> None:
    number = ctx.made["dead"] = ctx.made.get("dead", 0) + 1
    _event(ctx, f"evt_dead{number}", "account.updated", "dead", ctx.now)


def _dead_off(ctx: Ctx) -> None:
    ctx.write(lambda s: s.execute(update(WebhookEvent).values(status="processed")))


def _lag_on(ctx: Ctx) -> None:
    number = ctx.made["lag"] = ctx.made.get("lag", 0) + 1
    _event(ctx, f"evt_lag{number}", "account.updated", "received",
           ctx.now - timedelta(minutes=10))


def _drift_on(ctx: Ctx) -> None:
    ctx.write(lambda s: s.add(ReconciliationRun(
        started_at=ctx.now, finished_at=ctx.now, period_start=ctx.now - timedelta(days=2),
        period_end=ctx.now, triggered_by="system:worker", status="ok", mismatches=2)))


def _drift_off(ctx: Ctx) -> None:
    ctx.now += timedelta(minutes=1)
    ctx.write(lambda s: s.add(ReconciliationRun(
        started_at=ctx.now, finished_at=ctx.now, period_start=ctx.now - timedelta(days=2),
        period_end=ctx.now, triggered_by="system:worker", status="ok", mismatches=0)))


def _unknown_on(ctx: Ctx) -> None:
    def add(session: Session) -> None:
        if "payout" not in ctx.made:
            freelancer = add_freelancer(session, state="active")
            add_payout(session, freelancer=freelancer, status="unknown")
            ctx.made["payout"] = True
        session.flush()
        session.execute(update(Payout).values(status="unknown",
                                              updated_at=ctx.now - timedelta(hours=2)))
    ctx.write(add)


def _unknown_off(ctx: Ctx) -> None:
    ctx.write(lambda s: s.execute(update(Payout).values(status="paid")))


def _silent_on(ctx: Ctx) -> None:
    ctx.write(lambda s: s.execute(update(WorkerHeartbeat).values(
        last_seen_at=ctx.now - timedelta(hours=1))))


def _silent_off(ctx: Ctx) -> None:
    def beat(session: Session) -> None:
        found = session.get(WorkerHeartbeat, "w1")
        if found is None:
            session.add(WorkerHeartbeat(worker_id="w1", hostname="h", pid=1, started_at=ctx.now,
                                        last_seen_at=ctx.now, events_processed=0,
                                        events_failed=0))
        else:
            found.last_seen_at = ctx.now
    ctx.write(beat)


def _summary_on(ctx: Ctx) -> None:
    """A summary row nothing in the tables accounts for; the daily check finds it."""
    from lib.models import SummaryCount
    from lib.summaries.runs import run_check

    def corrupt(session: Session) -> None:
        session.execute(delete(SummaryCount).where(SummaryCount.kind == "events",
                                                   SummaryCount.k1 == "bogus"))
        session.add(SummaryCount(kind="events", day="", k1="bogus", k2="received", k3="",
                                 n=3, amount=0))
    ctx.write(corrupt)
    assert run_check(ctx.factory).mismatches == 1


def _summary_off(ctx: Ctx) -> None:
    from lib.summaries.runs import run_check, run_rebuild

    ctx.now += timedelta(minutes=1)
    run_rebuild(ctx.factory)
    assert run_check(ctx.factory).mismatches == 0


SCENARIOS: dict[str, tuple[dict[str, int], Callable[[Ctx], None], Callable[[Ctx], None]]] = {
    "past_due_new": ({}, _past_due_on, _past_due_off),
    "past_due_count": ({"threshold": 1}, _count_on, _past_due_off),
    "deadline_soon": ({"days": 7}, _deadline_on, _deadline_off),
    "success_rate": ({"threshold_percent": 80, "window_hours": 24, "min_attempts": 4},
                     _rate_on, _rate_off),
    "oauth_failures": ({"threshold": 2, "window_minutes": 60}, _oauth_on, _later(2)),
    "bank_payout_failed": ({"window_hours": 24}, _bank_on, _later(25)),
    "webhook_dead_letters": ({"threshold": 0}, _dead_on, _dead_off),
    "webhook_lag": ({"seconds": 300}, _lag_on, _dead_off),
    "reconciliation_drift": ({"window_hours": 48}, _drift_on, _drift_off),
    "payout_unknown": ({"minutes": 30}, _unknown_on, _unknown_off),
    "worker_silent": ({"seconds": 120}, _silent_on, _silent_off),
    "summary_mismatch": ({}, _summary_on, _summary_off),
}


def test_every_kind_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(KINDS)


def _counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with factory() as session:
        return (int(session.scalar(select(func.count()).select_from(Alert)) or 0),
                int(session.scalar(select(func.count()).select_from(Alert)
                                   .where(Alert.open_key.is_not(None))) or 0),
                int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0))


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_each_rule_fires_once_per_episode_and_clears(
    kind: str, session_factory: sessionmaker[Session],
) -> None:
    params, on, off = SCENARIOS[kind]
    ctx = Ctx(session_factory, utcnow())
    if kind == "worker_silent":
        _silent_off(ctx)  # a worker is alive to begin with
    in_worker = KINDS[kind].in_worker
    with session_factory.begin() as session:
        save_rule(session, operator=ADMIN, kind=kind, name=f"Rule {kind}", params=params,
                  email_recipients="ops@example.com, oncall@example.com", chat=True)

    def run() -> tuple[int, int]:
        report = evaluate_rules(session_factory, now=ctx.now, in_worker=in_worker)
        return report.opened, report.cleared

    assert run() == (0, 0)  # nothing holds yet
    on(ctx)
    assert run() == (1, 0)
    assert _counts(session_factory) == (1, 1, 3)  # two emails and a chat message
    for _ in range(3):  # while it holds: no new alert, no new message
        ctx.now += timedelta(seconds=30)
        assert run() == (0, 0)
    assert _counts(session_factory) == (1, 1, 3)
    off(ctx)
    if kind != "success_rate":  # its ``off`` ran the check itself
        assert run() == (0, 1)
    assert _counts(session_factory) == (1, 0, 3)
    assert run() == (0, 0)
    on(ctx)  # it comes back: a new episode, new messages
    assert run() == (1, 0)
    assert _counts(session_factory) == (2, 1, 6)
    with session_factory() as session:
        alerts = list(session.scalars(select(Alert).order_by(Alert.id)))
        subjects = set(session.scalars(select(OutboxMessage.subject)))
    assert alerts[0].cleared_at is not None and alerts[1].cleared_at is None
    # The same condition again, except a bank payout: each failed payout is its own episode.
    assert (alerts[0].condition_key == alerts[1].condition_key) == (kind != "bank_payout_failed")
    assert subjects == {f"[Connect Ops] Rule {kind}: 1 alert"}


def test_the_worker_does_not_check_the_watchdogs_rule_and_the_watchdog_delivers_itself(
    session_factory: sessionmaker[Session],
) -> None:
    with running_smtp_sink() as sink, running_chat_webhook() as chat:
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=sink.port,
                                 smtp_security="none", smtp_sender="ops@connect-ops.test",
                                 alert_chat_webhook_url=chat.url)
        with session_factory.begin() as session:
            save_rule(session, operator=ADMIN, kind="worker_silent", name="Worker down",
                      params={"seconds": 60}, email_recipients="oncall@example.com",
                      chat=True)
        assert evaluate_rules(session_factory, in_worker=True).opened == 0
        report = watchdog_pass(session_factory, settings=settings, worker_id="companion:1")
        assert report.opened == 1
        [email] = sink.wait_for(1)
        [posted] = chat.wait_for(1)
    assert "No background worker is running: webhooks are stored but not processed" in \
        text_of(email)
    assert posted["text"] == "Worker down: 1 alert"
    with session_factory() as session:
        assert set(session.scalars(select(OutboxMessage.status))) == {MessageStatus.SENT.value}


def test_two_evaluators_at_once_open_one_alert(session_factory: sessionmaker[Session]) -> None:
    """The database's unique open key settles a race (here the second insert finds it)."""
    ctx = Ctx(session_factory, utcnow())
    _dead_on(ctx)
    with session_factory.begin() as session:
        save_rule(session, operator=ADMIN, kind="webhook_dead_letters", name="Dead",
                  params={"threshold": 0}, email_recipients="ops@example.com")
    with session_factory.begin() as session:
        rule = session.scalars(select(AlertRule)).one()
        first, _ = evaluate_rule(session, rule=rule, now=ctx.now)
        # A second evaluator that read "no open alert" before the first committed.
        assert _insert_alert(session, {
            "rule_id": rule.id, "condition_key": "dead", "open_key": f"{rule.id}:dead",
            "severity": "error", "summary": "x", "details": {}, "opened_at": ctx.now,
            "last_seen_at": ctx.now}) is None
    assert len(first) == 1
    assert _counts(session_factory)[:2] == (1, 1)


def test_digest_rules_collect_their_alerts_into_one_message_per_recipient(
    session_factory: sessionmaker[Session],
) -> None:
    ctx = Ctx(session_factory, utcnow())
    with session_factory.begin() as session:
        save_rule(session, operator=ADMIN, kind="past_due_new", name="Past due", params={},
                  email_recipients="ops@example.com, lead@example.com", digest=True, chat=True)
        save_rule(session, operator=ADMIN, kind="webhook_dead_letters", name="Dead letters",
                  params={"threshold": 0}, email_recipients="ops@example.com", digest=True)
    for _ in range(3):
        ctx.write(lambda s: add_freelancer(s, state="disabled"))
    _dead_on(ctx)
    report = evaluate_rules(session_factory, now=ctx.now)
    assert (report.opened, report.messages) == (4, [])  # held for the digest
    assert send_digest(session_factory, now=ctx.now) == 3  # ops, lead, chat
    assert send_digest(session_factory, now=ctx.now) == 0  # nothing new
    with session_factory() as session:
        messages = {m.recipient: m for m in session.scalars(select(OutboxMessage))}
    assert set(messages) == {"ops@example.com", "lead@example.com", "chat"}
    assert messages["ops@example.com"].subject == "[Connect Ops] Alert digest: 4 alerts"
    assert messages["lead@example.com"].subject == "[Connect Ops] Alert digest: 3 alerts"
    assert "Dead letters:" in messages["ops@example.com"].body_text
    assert "Dead letters:" not in messages["lead@example.com"].body_text
    assert messages["chat"].payload["text"] == "Alert digest: 3 alerts"


def test_rule_settings_are_checked_and_changes_audited(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        refused: list[tuple[dict[str, Any], str]] = [
            ({"threshold": -1}, "between 0 and 100000"),
            ({"threshold": "ten"}, "whole number"),
            ({"threshold": 1.5}, "whole number"),
            ({"nope": 1}, "Unknown setting"),
        ]
        for bad, message in refused:
            with pytest.raises(ValidationError, match=message):
                save_rule(session, operator=ADMIN, kind="past_due_count", name="x", params=bad)
        with pytest.raises(ValidationError, match="Not an email address"):
            save_rule(session, operator=ADMIN, kind="past_due_count", name="x", params={},
                      email_recipients="ops@example.com, not-an-address")
        with pytest.raises(ValidationError, match="Unknown alert kind"):
            save_rule(session, operator=ADMIN, kind="nope", name="x", params={})
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(AlertRule)) == 0
    with session_factory.begin() as session:
        rule_id = save_rule(session, operator=ADMIN, kind="past_due_count", name="  Many  due ",
                            params={"threshold": "3"}, email_recipients="Ops@Example.com")
        save_rule(session, operator=ADMIN, kind="past_due_count", name="Many due", params={},
                  rule_id=rule_id, enabled=False)
        with pytest.raises(ValidationError, match="kind cannot change"):
            save_rule(session, operator=ADMIN, kind="deadline_soon", name="x", params={},
                      rule_id=rule_id)
    with session_factory() as session:
        [rule] = list_rules(session, operator=ADMIN)
        entries = [e.action for e in session.scalars(select(AuditLog).order_by(AuditLog.id))]
        with pytest.raises(PermissionDeniedError):
            list_rules(session, operator=FINANCE)
    assert (rule.name, rule.enabled, rule.params, rule.email_recipients) == (
        "Many due", False, {"threshold": 10}, [])
    assert entries == ["alert_rule.create", "alert_rule.update"]


def test_recommended_rules_and_the_overview_list(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        added = add_recommended_rules(session, operator=ADMIN)
        again = add_recommended_rules(session, operator=ADMIN)
    assert len(added) == len(KINDS) and again == []
    ctx = Ctx(session_factory, utcnow())
    _dead_on(ctx)
    evaluate_rules(session_factory, now=ctx.now)
    with session_factory() as session:
        shown = recent_alerts(session, operator=MANAGER, now=ctx.now)
        with pytest.raises(PermissionDeniedError):
            recent_alerts(session, operator=FINANCE)
    assert [(a.rule, a.is_open) for a in shown] == [("Webhook dead letters", True)]



def test_a_rule_with_settings_its_kind_refuses_does_not_stop_the_others(
    session_factory: sessionmaker[Session],
) -> None:
    ctx = Ctx(session_factory, utcnow())
    _dead_on(ctx)
    with session_factory.begin() as session:
        broken = save_rule(session, operator=ADMIN, kind="past_due_count", name="Broken",
                           params={})
        save_rule(session, operator=ADMIN, kind="webhook_dead_letters", name="Dead",
                  params={"threshold": 0})
        session.execute(update(AlertRule).where(AlertRule.id == broken)
                        .values(params={"threshold": "many"}))
    report = evaluate_rules(session_factory, now=ctx.now)
    assert (report.rules, report.opened) == (1, 1)
