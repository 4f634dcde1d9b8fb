"""The outbox: delivered once with retries and backoff, failures visible and retryable, the
chat webhook's JSON, pacing, and no real address ever reached from test data."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lib.db import utcnow
from lib.errors import ConflictError, PermissionDeniedError
from lib.messaging import chat_payload, send_email
from lib.models import AuditLog, MessageChannel, MessageKind, MessageStatus, OutboxMessage
from lib.outbox import (
    Delivery,
    OutboxPolicy,
    Throttle,
    _email_of,
    claim_due,
    deliver,
    enqueue,
    list_messages,
    retry_message,
)
from lib.roles import Operator, Role
from lib.settings import Settings
from tests.factories import make_settings
from tests.support.mail import (
    ChatWebhook,
    SmtpSink,
    running_chat_webhook,
    running_smtp_sink,
    text_of,
)

ADMIN = Operator("alice", frozenset({Role.ADMIN}))
FINANCE = Operator("fiona", frozenset({Role.FINANCE}))
POLICY = OutboxPolicy(max_attempts=4, base=timedelta(seconds=30), cap=timedelta(hours=1),
                      lease=timedelta(minutes=2))
RNG = random.Random(7)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with running_smtp_sink() as running:
        yield running


@pytest.fixture
def chat() -> Iterator[ChatWebhook]:
    with running_chat_webhook() as running:
        yield running


def settings_for(sink: SmtpSink | None = None, chat: ChatWebhook | None = None,
                 **overrides: object) -> Settings:
    values: dict[str, object] = {"smtp_security": "none",
                                 "smtp_sender": "Ops <ops@connect-ops.test>"}
    if sink is not None:
        values.update(smtp_host="127.0.0.1", smtp_port=sink.port)
    if chat is not None:
        values["alert_chat_webhook_url"] = chat.url
    values.update(overrides)
    return make_settings(**values)


def _email(session_factory: sessionmaker[Session], key: str = "test:1",
           to: str = "team@example.com") -> int:
    with session_factory.begin() as session:
        message_id, created = enqueue(
            session, dedupe_key=key, kind=MessageKind.ALERT, channel=MessageChannel.EMAIL,
            recipient=to, subject="Something happened", body_text="Plain words.",
            body_html="<p>Plain words.</p>", created_by="system:test")
    assert created
    return message_id


def _row(session_factory: sessionmaker[Session], message_id: int) -> OutboxMessage:
    with session_factory() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        session.expunge(row)
        return row


def _attempt(session_factory: sessionmaker[Session], settings: Settings, *,
             now: datetime | None = None) -> Delivery | None:
    claims = claim_due(session_factory, worker_id="w", policy=POLICY, now=now)
    if not claims:
        return None
    return deliver(session_factory, settings=settings, claim=claims[0], policy=POLICY, rng=RNG,
                   now=now)


def test_a_decision_rerun_writes_the_message_once(session_factory: sessionmaker[Session]) -> None:
    first = _email(session_factory)
    with session_factory.begin() as session:
        again, created = enqueue(
            session, dedupe_key="test:1", kind=MessageKind.ALERT,
            channel=MessageChannel.EMAIL, recipient="team@example.com", subject="x",
            body_text="y", created_by="system:test")
    assert (again, created) == (first, False)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_smtp_refusing_then_accepting_delivers_once_after_the_backoff(
    session_factory: sessionmaker[Session], sink: SmtpSink,
) -> None:
    settings = settings_for(sink)
    message_id = _email(session_factory)
    sink.refuse(2)  # 451: try again later, twice
    start = utcnow()
    first = _attempt(session_factory, settings, now=start)
    assert first is not None and first.status is MessageStatus.FAILED
    row = _row(session_factory, message_id)
    assert row.last_error is not None and "451" in row.last_error
    assert row.next_attempt_at is not None
    assert timedelta(seconds=30) <= row.next_attempt_at - start <= timedelta(seconds=45)
    # Not due before its backoff.
    assert _attempt(session_factory, settings, now=start + timedelta(seconds=29)) is None
    second_at = row.next_attempt_at
    second = _attempt(session_factory, settings, now=second_at)
    assert second is not None and second.status is MessageStatus.FAILED
    row = _row(session_factory, message_id)
    assert row.attempts == 2
    assert row.next_attempt_at is not None
    assert timedelta(seconds=60) <= row.next_attempt_at - second_at <= timedelta(seconds=90)
    third = _attempt(session_factory, settings, now=row.next_attempt_at)
    assert third is not None and third.status is MessageStatus.SENT
    assert sink.refused == 2
    [message] = sink.wait_for(1)
    assert text_of(message).strip() == "Plain words."
    assert str(message["To"]) == "team@example.com"
    row = _row(session_factory, message_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    # Sent is final: nothing claims it again, whatever the time.
    assert _attempt(session_factory, settings, now=start + timedelta(days=30)) is None
    assert len(sink.messages) == 1


def test_a_permanent_refusal_is_dead_at_once_visible_and_retryable(
    session_factory: sessionmaker[Session], sink: SmtpSink,
) -> None:
    settings = settings_for(sink)
    message_id = _email(session_factory)
    sink.refuse(1, "550 5.1.1 No such user")
    result = _attempt(session_factory, settings)
    assert result is not None and result.status is MessageStatus.DEAD
    with session_factory() as session:
        page = list_messages(session, operator=ADMIN, statuses=("dead",))
        with pytest.raises(PermissionDeniedError):
            list_messages(session, operator=FINANCE)
    [row] = page.rows
    assert row.last_error is not None and "550" in row.last_error and "No such user" in row.last_error
    assert page.counts == {"dead": 1}
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError):
        retry_message(session, operator=FINANCE, message_id=message_id)
    with session_factory.begin() as session:
        retry_message(session, operator=ADMIN, message_id=message_id)
    with session_factory.begin() as session, pytest.raises(ConflictError):
        retry_message(session, operator=ADMIN, message_id=message_id)  # pending: nothing to do
    again = _attempt(session_factory, settings)
    assert again is not None and again.status is MessageStatus.SENT
    assert len(sink.wait_for(1)) == 1
    with session_factory() as session:
        entry = session.scalars(select(AuditLog).where(AuditLog.action == "outbox.retry")).one()
    assert entry.actor == "alice" and "550" in entry.input["previous_error"]


def test_the_last_attempt_failing_makes_it_dead(session_factory: sessionmaker[Session]) -> None:
    settings = settings_for(smtp_host="127.0.0.1", smtp_port=9)  # nobody listens there
    message_id = _email(session_factory)
    moment = utcnow()
    for attempt in range(1, POLICY.max_attempts + 1):
        result = _attempt(session_factory, settings, now=moment)
        assert result is not None
        assert result.status is (MessageStatus.DEAD if attempt == POLICY.max_attempts
                                 else MessageStatus.FAILED)
        moment = _row(session_factory, message_id).next_attempt_at or moment
    row = _row(session_factory, message_id)
    assert row.status == "dead" and "Could not talk to the SMTP server" in (row.last_error or "")


def test_a_worker_dying_mid_send_leaves_it_to_the_next_claim_with_the_same_message_id(
    session_factory: sessionmaker[Session], sink: SmtpSink,
) -> None:
    settings = settings_for(sink)
    message_id = _email(session_factory)
    start = utcnow()
    [lost] = claim_due(session_factory, worker_id="dead", policy=POLICY, now=start)
    # The server took the message, then the worker died before recording it.
    send_email(settings, _email_of(session_factory, settings, lost, start))
    # Until its lease expires nobody else takes it.
    assert claim_due(session_factory, worker_id="w", policy=POLICY,
                     now=start + timedelta(minutes=1)) == []
    [taken] = claim_due(session_factory, worker_id="w", policy=POLICY,
                        now=start + timedelta(minutes=3))
    assert taken.id == message_id and taken.attempt == 2 and taken.token != lost.token
    assert deliver(session_factory, settings=settings, claim=taken, policy=POLICY,
                   now=start + timedelta(minutes=3)).recorded
    received = sink.wait_for(2)  # sent again rather than lost: one Message-ID for both
    assert received[0]["Message-ID"] == received[1]["Message-ID"]
    assert _row(session_factory, message_id).status == "sent"


def test_a_worker_that_stalled_past_its_lease_sends_nothing(
    session_factory: sessionmaker[Session], sink: SmtpSink,
) -> None:
    """Found by the state machine (tests/lib/test_outbox_lifecycle.py): a worker that woke up
    after its lease had expired and the message was taken over sent it a second time."""
    settings = settings_for(sink)
    message_id = _email(session_factory)
    start = utcnow()
    [stalled] = claim_due(session_factory, worker_id="slow", policy=POLICY, now=start)
    later = start + timedelta(minutes=3)
    [taken] = claim_due(session_factory, worker_id="w", policy=POLICY, now=later)
    assert deliver(session_factory, settings=settings, claim=taken, policy=POLICY,
                   now=later).status is MessageStatus.SENT
    late = deliver(session_factory, settings=settings, claim=stalled, policy=POLICY, now=later)
    assert (late.recorded, late.error) == (False, "lease lost before sending")
    assert len(sink.wait_for(1)) == 1 and len(sink.messages) == 1
    assert _row(session_factory, message_id).status == "sent"


def test_the_chat_webhook_receives_the_documented_json(
    session_factory: sessionmaker[Session], chat: ChatWebhook,
) -> None:
    settings = settings_for(chat=chat)
    payload = chat_payload(title="Payout <failed> & more", text="Bank payout po_1 failed",
                           severity="error", fields=[("Rule", "Bank payouts <b>")])
    with session_factory.begin() as session:
        enqueue(session, dedupe_key="chat:1", kind=MessageKind.ALERT,
                channel=MessageChannel.CHAT, recipient="chat", subject="Payout failed",
                body_text="Bank payout po_1 failed", payload=payload, created_by="system:test")
    result = _attempt(session_factory, settings)
    assert result is not None and result.status is MessageStatus.SENT
    [posted] = chat.wait_for(1)
    assert chat.content_types == ["application/json"]
    assert posted == {
        "text": "Payout &lt;failed&gt; &amp; more",
        "attachments": [{
            "fallback": "Payout &lt;failed&gt; &amp; more",
            "color": "#d92d20",
            "title": "Payout &lt;failed&gt; &amp; more",
            "text": "Bank payout po_1 failed",
            "footer": "Connect Ops",
            "fields": [{"title": "Rule", "value": "Bank payouts &lt;b&gt;", "short": True}],
        }],
    }


def test_a_chat_webhook_error_is_retried_and_a_gone_hook_is_dead(
    session_factory: sessionmaker[Session], chat: ChatWebhook,
) -> None:
    settings = settings_for(chat=chat)
    for key in ("chat:a", "chat:b"):
        with session_factory.begin() as session:
            enqueue(session, dedupe_key=key, kind=MessageKind.ALERT, channel=MessageChannel.CHAT,
                    recipient="chat", subject="s", body_text="t", payload={"text": key},
                    created_by="system:test")
    chat.fail_with = [503, 404]
    first = _attempt(session_factory, settings)
    second = _attempt(session_factory, settings)
    assert first is not None and first.status is MessageStatus.FAILED  # 503: try again
    assert second is not None and second.status is MessageStatus.DEAD  # 404: the hook is gone
    assert "answered 503" in (first.error or "") and "test-token" not in (first.error or "")


def test_test_data_never_reaches_a_server_off_this_machine(
    session_factory: sessionmaker[Session],
) -> None:
    """With the emulator (demo and test data) email and chat go only to local servers."""
    settings = settings_for(smtp_host="smtp.example.com", smtp_port=587,
                            alert_chat_webhook_url="https://hooks.example.com/services/T/B/x",
                            stripe_api_base="http://127.0.0.1:12111",
                            stripe_connect_base="http://127.0.0.1:12111")
    _email(session_factory)
    with session_factory.begin() as session:
        enqueue(session, dedupe_key="chat:x", kind=MessageKind.ALERT, channel=MessageChannel.CHAT,
                recipient="chat", subject="s", body_text="t", payload={"text": "t"},
                created_by="system:test")
    results = [_attempt(session_factory, settings), _attempt(session_factory, settings)]
    assert [r.status for r in results if r] == [MessageStatus.DEAD, MessageStatus.DEAD]
    assert all("not local" in (r.error or "") for r in results if r)


def test_without_settings_a_message_waits_with_a_clear_error(
    session_factory: sessionmaker[Session],
) -> None:
    _email(session_factory)
    result = _attempt(session_factory, make_settings())
    assert result is not None and result.status is MessageStatus.FAILED
    assert result.error == ("channel_not_configured: Email is not configured: set SMTP_HOST and "
                            "SMTP_SENDER.")


def test_the_throttle_spaces_sends_evenly() -> None:
    now = [100.0]
    throttle = Throttle(120, clock=lambda: now[0])  # one every 0.5 s
    assert throttle.wait_time() == 0
    throttle.sent()
    assert throttle.wait_time() == pytest.approx(0.5)
    now[0] += 0.2
    assert throttle.wait_time() == pytest.approx(0.3)
    now[0] += 0.3
    throttle.sent()
    assert throttle.wait_time() == pytest.approx(0.5)
    now[0] += 10  # idle a long time: no burst credit is saved up beyond one send
    throttle.sent()
    assert throttle.wait_time() == pytest.approx(0.5)
