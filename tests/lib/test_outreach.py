"""Outreach: who is emailed, one email per freelancer per batch whatever reruns happen, the
email's content, and what the desk shows afterwards."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib.db import utcnow
from lib.errors import PermissionDeniedError, ValidationError
from lib.models import (
    AuditLog,
    ConnectedAccount,
    Freelancer,
    MessageStatus,
    OutboxMessage,
    OutreachBatch,
    OutreachContact,
)
from lib.outbox import OutboxPolicy, claim_due, deliver
from lib.outreach import (
    Outcome,
    contact_history,
    contact_summaries,
    preview_outreach,
    send_outreach,
    spend_link,
)
from lib.requirements_queries import list_requirements_due
from lib.roles import Operator, Role
from lib.settings import Settings
from lib.worker import Worker
from tests.factories import make_settings
from tests.factories_dashboard import add_freelancer
from tests.support.mail import SmtpSink, html_of, running_smtp_sink, text_of

ADMIN = Operator("alice", frozenset({Role.ADMIN}))
FINANCE = Operator("fiona", frozenset({Role.FINANCE}))
MANAGER = Operator("mia", frozenset({Role.MANAGER}))
LINK = re.compile(r"http://127\.0\.0\.1:8000/freelancer/login\?token=[A-Za-z0-9._\-]+")


class Interrupted(Exception):
    """The page's script run stopped mid-batch (a rerun, a closed tab, a crash)."""


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with running_smtp_sink() as running:
        yield running


def mail_settings(sink: SmtpSink, **overrides: object) -> Settings:
    return make_settings(smtp_host="127.0.0.1", smtp_port=sink.port, smtp_security="none",
                         smtp_sender="Payments <payments@connect-ops.test>",
                         outbox_rate_per_minute=100_000, **overrides)


def _due(session_factory: sessionmaker[Session], count: int, state: str = "restricted"
         ) -> list[int]:
    with session_factory.begin() as session:
        return [add_freelancer(session, state=state, name=f"Free Lancer {n}",
                               email=f"free{n}.{state}@example.com").id for n in range(count)]


def _count(session_factory: sessionmaker[Session], model: type) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _worker(session_factory: sessionmaker[Session], settings: Settings) -> Worker:
    # No gateway: draining the outbox must call no Stripe API (None would fail loudly).
    return Worker(session_factory, gateway=None, settings=settings, jobs=[],  # type: ignore[arg-type]
                  events=False)


def test_outreach_to_200_freelancers_rerun_twice_midway_sends_exactly_200(
    session_factory: sessionmaker[Session], sink: SmtpSink,
) -> None:
    ids = _due(session_factory, 200)
    with session_factory() as session:
        preview = preview_outreach(session, operator=ADMIN, freelancer_ids=ids)
    assert len(preview.recipients) == 200 and preview.skipped == []
    assert _count(session_factory, OutboxMessage) == 0  # a preview writes nothing

    def stop_after(chunks: int) -> Callable[[int, int], None]:
        seen: list[int] = []

        def progress(done: int, total: int) -> None:
            seen.append(done)
            if len(seen) == chunks:
                raise Interrupted
        return progress

    # The first run stops after 3 chunks of 25, the rerun after 2 more, the last one finishes.
    with pytest.raises(Interrupted):
        send_outreach(session_factory, operator=ADMIN, token=preview.token,
                      freelancer_ids=preview.freelancer_ids, progress=stop_after(3))
    assert _count(session_factory, OutboxMessage) == 75
    with pytest.raises(Interrupted):
        send_outreach(session_factory, operator=ADMIN, token=preview.token,
                      freelancer_ids=preview.freelancer_ids, progress=stop_after(5))
    assert _count(session_factory, OutboxMessage) == 125
    result = send_outreach(session_factory, operator=ADMIN, token=preview.token,
                           freelancer_ids=preview.freelancer_ids)
    assert (result.queued, result.already, result.skipped) == (75, 125, [])
    assert _count(session_factory, OutboxMessage) == 200
    assert _count(session_factory, OutreachContact) == 200
    assert _count(session_factory, OutreachBatch) == 1
    # A fourth run of the same confirmation adds nothing.
    again = send_outreach(session_factory, operator=ADMIN, token=preview.token,
                          freelancer_ids=preview.freelancer_ids)
    assert (again.queued, again.already) == (0, 200)

    worker = _worker(session_factory, mail_settings(sink))
    assert worker.drain_outbox() == 200
    received = sink.wait_for(200)
    assert len(received) == 200
    assert sorted(str(m["To"]) for m in received) == sorted(
        f"free{n}.restricted@example.com" for n in range(200))
    assert len({m["Message-ID"] for m in received}) == 200
    links = [LINK.findall(text_of(m)) for m in received]
    assert all(len(found) == 1 for found in links)
    assert len({found[0] for found in links}) == 200  # a fresh link each
    with session_factory() as session:
        statuses = set(session.scalars(select(OutboxMessage.status)))
        link_ids = list(session.scalars(select(OutreachContact.link_id)))
    assert statuses == {MessageStatus.SENT.value}
    assert None not in link_ids and len(set(link_ids)) == 200
    assert worker.drain_outbox() == 0  # nothing is sent twice


def test_the_preview_says_who_is_skipped_and_why(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        due = add_freelancer(session, state="disabled", name="Dee Due").id
        fine = add_freelancer(session, state="active").id
        waiting = add_freelancer(session, state="pending_verification").id
        rejected = add_freelancer(session, state="rejected").id
        loose = add_freelancer(session, state="not_connected").id
    with session_factory() as session:
        preview = preview_outreach(session, operator=FINANCE,
                                   freelancer_ids=[due, fine, waiting, rejected, loose])
    assert preview.freelancer_ids == [due]
    assert {c.freelancer_id: c.skip_reason for c in preview.skipped} == {
        fine: "nothing currently or past due", waiting: "nothing currently or past due",
        rejected: "rejected by Stripe: nothing they can submit",
        loose: "not connected to Stripe"}
    assert preview.sample is not None
    subject, text = preview.sample
    assert subject == "Action needed: Stripe is waiting for your details"
    assert "Hello Dee," in text
    assert "Bank account or debit card for payouts (overdue)" in text  # the desk's wording
    assert "a single-use link made when the email is sent" in text


def test_bad_input_is_refused_and_writes_nothing(session_factory: sessionmaker[Session]) -> None:
    ids = _due(session_factory, 2)
    with session_factory() as session, pytest.raises(ValidationError, match="at least one"):
        preview_outreach(session, operator=ADMIN, freelancer_ids=[])
    with pytest.raises(ValidationError, match="batch token"):
        send_outreach(session_factory, operator=ADMIN, token="", freelancer_ids=ids)
    with pytest.raises(ValidationError, match="at most 1000"):
        send_outreach(session_factory, operator=ADMIN, token="t", freelancer_ids=range(1001))
    with pytest.raises(PermissionDeniedError):
        send_outreach(session_factory, operator=MANAGER, token="t", freelancer_ids=ids)
    assert _count(session_factory, OutreachBatch) == 0
    assert _count(session_factory, OutboxMessage) == 0


def test_the_email_escapes_user_values_and_holds_no_usable_link_until_sent(
    session_factory: sessionmaker[Session], sink: SmtpSink,
) -> None:
    with session_factory.begin() as session:
        fid = add_freelancer(session, state="restricted",
                             name='<script>alert(1)</script> "Bobby" & Co').id
    with session_factory() as session:
        preview = preview_outreach(session, operator=ADMIN, freelancer_ids=[fid])
    send_outreach(session_factory, operator=ADMIN, token=preview.token, freelancer_ids=[fid])
    with session_factory() as session:
        stored = session.scalars(select(OutboxMessage)).one()
    assert "token=" not in stored.body_text and "token=" not in (stored.body_html or "")
    _worker(session_factory, mail_settings(sink)).drain_outbox()
    [message] = sink.wait_for(1)
    html = html_of(message)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert str(message["From"]) == "Payments <payments@connect-ops.test>"
    assert str(message["Auto-Submitted"]) == "auto-generated"
    assert "acct_" not in text_of(message)  # no more than the freelancer needs
    [link] = LINK.findall(text_of(message))
    assert f'href="{link.replace("&", "&amp;")}"' in html or f'href="{link}"' in html


def test_an_address_changed_after_the_decision_gets_no_link(
    session_factory: sessionmaker[Session], sink: SmtpSink,
) -> None:
    [fid] = _due(session_factory, 1)
    with session_factory() as session:
        preview = preview_outreach(session, operator=ADMIN, freelancer_ids=[fid])
    send_outreach(session_factory, operator=ADMIN, token=preview.token, freelancer_ids=[fid])
    with session_factory.begin() as session:
        session.execute(update(Freelancer).where(Freelancer.id == fid)
                        .values(email="new.address@example.com"))
    settings = mail_settings(sink)
    policy = OutboxPolicy.from_settings(settings)
    [claim] = claim_due(session_factory, worker_id="w", policy=policy)
    delivery = deliver(session_factory, settings=settings, claim=claim, policy=policy)
    assert delivery.status is MessageStatus.DEAD
    assert "address changed" in (delivery.error or "")
    assert sink.messages == []
    with session_factory() as session:
        assert session.scalars(select(OutreachContact.link_id)).one() is None


def test_the_desk_shows_times_last_contacted_and_the_outcome(
    session_factory: sessionmaker[Session], sink: SmtpSink,
) -> None:
    [fid] = _due(session_factory, 1)
    settings = mail_settings(sink)

    def summary():
        with session_factory() as session:
            return contact_summaries(session, operator=FINANCE, freelancer_ids=[fid]).get(fid)

    assert summary() is None
    for _ in range(2):
        with session_factory() as session:
            preview = preview_outreach(session, operator=ADMIN, freelancer_ids=[fid])
        send_outreach(session_factory, operator=ADMIN, token=preview.token,
                      freelancer_ids=[fid])
    found = summary()
    assert (found.times_contacted, found.last_contacted_by, found.outcome) == (
        2, "alice", Outcome.NOT_SENT)
    _worker(session_factory, settings).drain_outbox()
    assert summary().outcome == Outcome.STILL_DUE
    with session_factory() as session:
        latest = session.scalars(select(OutreachContact).order_by(OutreachContact.id.desc())
                                 ).first()
        assert latest is not None and latest.link_id is not None
        link_id = latest.link_id
    spend_link(session_factory, link_id=link_id, freelancer_id=fid)
    assert summary().outcome == Outcome.OPENED
    with session_factory.begin() as session:
        session.execute(update(ConnectedAccount).values(currently_due_count=0,
                                                        past_due_count=0))
    assert summary().outcome == Outcome.FINISHED
    with session_factory() as session:
        history = contact_history(session, operator=ADMIN, freelancer_id=fid)
        opened = session.scalars(select(AuditLog).where(AuditLog.action == "outreach.link_open")
                                 ).one()
    assert [h.message_status for h in history] == ["sent", "sent"]
    assert history[0].requirements == ["Identity document (passport, ID card or licence)"]
    assert opened.result == "opened"


def test_requirements_can_be_filtered_to_those_not_contacted_in_n_days(
    session_factory: sessionmaker[Session],
) -> None:
    contacted, other, _ = _due(session_factory, 3)
    with session_factory.begin() as session:
        add_freelancer(session, state="pending_verification")  # due later: never in the filter
    with session_factory() as session:
        preview = preview_outreach(session, operator=ADMIN, freelancer_ids=[contacted])
    send_outreach(session_factory, operator=ADMIN, token=preview.token,
                  freelancer_ids=[contacted])
    with session_factory() as session:
        every = list_requirements_due(session, operator=FINANCE)
        recent = list_requirements_due(session, operator=FINANCE, not_contacted_days=7)
        later = list_requirements_due(session, operator=FINANCE, not_contacted_days=7,
                                      now=utcnow() + timedelta(days=8))
    assert every.total == 4
    assert recent.total == 2 and contacted not in {r.freelancer_id for r in recent.rows}
    assert other in {r.freelancer_id for r in recent.rows}
    assert later.total == 3
    with session_factory() as session, pytest.raises(ValidationError):
        list_requirements_due(session, operator=FINANCE, not_contacted_days=-1)


def test_the_same_confirmation_sent_twice_at_once_records_each_freelancer_once(
    session_factory: sessionmaker[Session],
) -> None:
    """Two tabs (or replicas) confirming the same preview concurrently: the database settles it."""
    from concurrent.futures import ThreadPoolExecutor

    ids = _due(session_factory, 60)
    with session_factory() as session:
        preview = preview_outreach(session, operator=ADMIN, freelancer_ids=ids)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(send_outreach, session_factory, operator=ADMIN,
                               token=preview.token, freelancer_ids=preview.freelancer_ids,
                               chunk=5) for _ in range(2)]
        results = [f.result(timeout=120) for f in futures]  # a thread's error is raised here
    assert sum(r.queued for r in results) == 60
    assert _count(session_factory, OutboxMessage) == 60
    assert _count(session_factory, OutreachContact) == 60
    assert _count(session_factory, OutreachBatch) == 1
