"""A model-based test of the outbox and alert episodes (issue 20): random interleavings of
outreach batches (rerun, interrupted mid-way), alert conditions coming and going and being
checked, claims by two workers, SMTP refusals (temporary and permanent), workers crashing
before or after the server accepted a message, restarts, admin retries and clock jumps past
leases and backoffs — with the invariants checked after every step against the database:

- every decision's message exists, once (one per freelancer per batch; two per alert);
- a message is never lost: a sent one was received and stays sent, the others stay claimable;
- it is received at most once, except after a worker died between the server's acceptance and
  the record, and every copy then carries the same Message-ID (receivers drop the duplicate);
- one alert per episode of the condition, never two open at once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib import outbox
from lib.alerts import evaluate_rules, save_rule
from lib.db import utcnow
from lib.errors import ConflictError
from lib.messaging import DeliveryError, Email
from lib.models import (
    Alert,
    AlertRule,
    MessageKind,
    MessageStatus,
    OutboxMessage,
    OutreachBatch,
    OutreachContact,
    WebhookEvent,
)
from lib.outreach import send_outreach
from lib.roles import Operator, Role
from tests.factories import make_settings
from tests.factories_dashboard import add_freelancer

SETTINGS = make_settings(smtp_host="127.0.0.1", smtp_sender="ops@connect-ops.test",
                         alert_chat_webhook_url="http://127.0.0.1:9/hooks/x")
POLICY = outbox.OutboxPolicy(max_attempts=3, base=timedelta(seconds=10),
                             cap=timedelta(seconds=40), lease=timedelta(seconds=60))
ADMIN = Operator("alice", frozenset({Role.ADMIN}))
WORKERS = ("a", "b")
BATCHES = ("batch-0", "batch-1")
FREELANCERS = 4


class Interrupted(Exception):
    """The page stopped mid-batch."""


class Receiver:
    """Stands in for the SMTP server and the chat webhook: records what it accepted."""

    def __init__(self) -> None:
        self.mode = "accept"  # accept | refuse | reject
        self.current = ""  # the dedupe key of the message being handed over
        self.received: dict[str, list[str]] = defaultdict(list)

    def _take(self, message_id: str) -> None:
        if self.mode == "refuse":
            raise DeliveryError("451 try again later")
        if self.mode == "reject":
            raise DeliveryError("550 no such user", permanent=True)
        self.received[self.current].append(message_id)

    def email(self, _settings: Any, email: Email) -> None:
        self._take(email.message_id)

    def chat(self, _settings: Any, _payload: dict[str, Any]) -> None:
        self._take("chat")


def machine_for(session_factory: sessionmaker[Session],
                freelancer_ids: list[int]) -> type[RuleBasedStateMachine]:
    class OutboxLifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.factory = session_factory
            with self.factory.begin() as session:
                for model in (OutreachContact, OutreachBatch, Alert, AlertRule, OutboxMessage,
                              WebhookEvent):
                    session.execute(delete(model))
                self.rule_id = save_rule(session, operator=ADMIN, kind="webhook_dead_letters",
                                         name="Dead letters", params={"threshold": 0},
                                         email_recipients="ops@example.com", chat=True)
            self.now = utcnow()
            self.receiver = Receiver()
            self.transports = outbox.Transports(email=self.receiver.email,
                                                chat=self.receiver.chat)
            self.held: dict[str, list[outbox.MessageClaim]] = {w: [] for w in WORKERS}
            self.crashed_after_send: dict[str, int] = defaultdict(int)
            self.sent: set[str] = set()
            self.batches_done: set[str] = set()
            self.condition = False
            self.model_open = False
            self.episodes = 0
            self.events = 0

        # ---- decisions ---------------------------------------------------------------------

        @rule(batch=st.sampled_from(BATCHES), stop_after=st.none() | st.integers(1, 3))
        def outreach(self, batch: str, stop_after: int | None) -> None:
            """An operator confirms a batch: maybe the run stops mid-way; maybe it is a rerun."""
            done = []

            def progress(count: int, _total: int) -> None:
                done.append(count)
                if stop_after is not None and len(done) >= stop_after:
                    raise Interrupted

            try:
                send_outreach(self.factory, operator=ADMIN, token=batch,
                              freelancer_ids=freelancer_ids, chunk=1, progress=progress,
                              now=self.now)
            except Interrupted:
                return
            self.batches_done.add(batch)

        @rule()
        def toggle_condition(self) -> None:
            """A webhook event dies (a dead letter), or every dead letter is replayed."""
            with self.factory.begin() as session:
                if self.condition:
                    session.execute(update(WebhookEvent).values(status="processed"))
                else:
                    self.events += 1
                    session.add(WebhookEvent(
                        stripe_event_id=f"evt_{self.events}", type="account.updated",
                        endpoint="connect", status="dead", attempts=10, payload={},
                        received_at=self.now))
            self.condition = not self.condition

        @rule()
        def check_alerts(self) -> None:
            evaluate_rules(self.factory, now=self.now)
            if self.condition and not self.model_open:
                self.episodes += 1
            self.model_open = self.condition

        # ---- the receiving server ------------------------------------------------------------

        @rule(mode=st.sampled_from(["accept", "accept", "refuse", "reject"]))
        def server_mode(self, mode: str) -> None:
            self.receiver.mode = mode

        # ---- workers -----------------------------------------------------------------------

        @rule(worker=st.sampled_from(WORKERS))
        def claim(self, worker: str) -> None:
            claims = outbox.claim_due(self.factory, worker_id=worker, policy=POLICY,
                                      now=self.now)
            live = {c.id for w, held in self.held.items() if w != worker for c in held
                    if self._lease_live(c)}
            assert not live & {c.id for c in claims}, "claimed under another worker's lease"
            self.held[worker] += claims

        def _lease_live(self, claim: outbox.MessageClaim) -> bool:
            with self.factory() as session:
                row = session.get(OutboxMessage, claim.id)
                return bool(row and row.lease_token == claim.token and row.lease_expires_at
                            and row.lease_expires_at >= self.now)

        @precondition(lambda self: any(self.held.values()))
        @rule(worker=st.sampled_from(WORKERS))
        def deliver(self, worker: str) -> None:
            if not self.held[worker]:
                return
            claim = self.held[worker].pop(0)
            self.receiver.current = claim.dedupe_key
            result = outbox.deliver(self.factory, settings=SETTINGS, claim=claim,
                                    policy=POLICY, transports=self.transports, now=self.now)
            if result.status is MessageStatus.SENT and result.recorded:
                self.sent.add(claim.dedupe_key)

        @precondition(lambda self: any(self.held.values()))
        @rule(worker=st.sampled_from(WORKERS), accepted=st.booleans())
        def crash(self, worker: str, accepted: bool) -> None:
            """The worker dies holding its claims: before sending, or after the server took
            the first one and before the outcome was recorded."""
            if accepted and self.held[worker] and self.receiver.mode == "accept":
                claim = self.held[worker][0]
                self.receiver.current = claim.dedupe_key
                if claim.channel == "email":
                    email = outbox._email_of(self.factory, SETTINGS, claim, self.now)
                    self.receiver.email(SETTINGS, email)
                else:
                    self.receiver.chat(SETTINGS, claim.payload)
                self.crashed_after_send[claim.dedupe_key] += 1
            self.held[worker] = []

        @rule()
        def restart_all(self) -> None:
            """Every worker restarts: what they held waits for its lease to expire."""
            self.held = {w: [] for w in WORKERS}

        @rule(seconds=st.sampled_from([1, 15, 45, 70, 200, 3600]))
        def clock_jump(self, seconds: int) -> None:
            self.now += timedelta(seconds=seconds)

        @rule()
        def retry_a_dead_message(self) -> None:
            with self.factory() as session:
                dead = session.scalar(select(OutboxMessage.id).where(
                    OutboxMessage.status == MessageStatus.DEAD.value).limit(1))
            if dead is None:
                return
            try:
                with self.factory.begin() as session:
                    outbox.retry_message(session, operator=ADMIN, message_id=dead, now=self.now)
            except ConflictError:
                pass  # changed meanwhile: nothing to retry

        # ---- invariants --------------------------------------------------------------------

        def _messages(self) -> list[OutboxMessage]:
            with self.factory() as session:
                rows = list(session.scalars(select(OutboxMessage)))
                session.expunge_all()
                return rows

        @invariant()
        def one_message_per_decision(self) -> None:
            with self.factory() as session:
                contacts = session.execute(select(OutreachContact.batch_id,
                                                  OutreachContact.freelancer_id,
                                                  OutreachContact.message_id)).all()
                batches = {t: i for t, i in session.execute(select(OutreachBatch.token,
                                                                   OutreachBatch.id))}
                alerts = int(session.scalar(select(func.count()).select_from(Alert)) or 0)
            messages = self._messages()
            outreach = [m for m in messages if m.kind == MessageKind.OUTREACH.value]
            assert len({(b, f) for b, f, _ in contacts}) == len(contacts)
            sent = [m for _, _, m in contacts if m is not None]
            assert len(sent) == len(contacts)  # every contact has its message
            assert sorted(m.id for m in outreach) == sorted(sent)
            for batch in self.batches_done:
                assert sum(1 for b, _, _ in contacts if b == batches[batch]) == FREELANCERS
            alert_messages = [m for m in messages if m.kind == MessageKind.ALERT.value]
            assert len(alert_messages) == 2 * alerts  # an email and a chat message each

        @invariant()
        def never_lost_and_received_at_most_once(self) -> None:
            for message in self._messages():
                key = message.dedupe_key
                received = self.receiver.received.get(key, [])
                assert len(set(received)) <= 1, "copies with different Message-IDs"
                assert len(received) <= 1 + self.crashed_after_send[key], (key, received)
                if message.status == MessageStatus.SENT.value:
                    assert received, f"{key} marked sent but never received"
                if key in self.sent:
                    assert message.status == MessageStatus.SENT.value, "sent went back"
                if message.status == MessageStatus.SENDING.value:
                    assert message.lease_token and message.lease_expires_at
                if message.status in (MessageStatus.PENDING.value, MessageStatus.FAILED.value):
                    assert message.next_attempt_at is not None  # it will be claimed again
                assert message.attempts <= POLICY.max_attempts

        @invariant()
        def one_alert_per_episode(self) -> None:
            with self.factory() as session:
                total = int(session.scalar(select(func.count()).select_from(Alert)) or 0)
                opened = int(session.scalar(select(func.count()).select_from(Alert)
                                            .where(Alert.open_key.is_not(None))) or 0)
            assert total == self.episodes
            assert opened == (1 if self.model_open else 0)

    return OutboxLifecycle


def test_outbox_and_alert_lifecycle_state_machine(session_factory) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    with session_factory.begin() as session:
        ids = [add_freelancer(session, state="restricted", email=f"life{n}@example.com").id
               for n in range(FREELANCERS)]
    run_state_machine_as_test(
        machine_for(session_factory, ids),
        settings=settings(max_examples=50, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
