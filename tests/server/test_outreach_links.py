"""An outreach email's link: fresh, single use, expiring, revocable, never an API token, and
not spent by a mail scanner's GET (issue 20 on top of issue 19's payment-settings links)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from lib.db import utcnow
from lib.messaging import Email
from lib.models import AuditLog, OutboxMessage, OutreachContact
from lib.outbox import OutboxPolicy, Transports, claim_due, deliver, retry_message
from lib.outreach import preview_outreach, send_outreach
from lib.page_access import revoke_page_access
from lib.roles import Operator, Role
from lib.settings import Settings
from server.app import create_app
from server.pages import SESSION_COOKIE
from tests.factories import make_settings
from tests.factories_dashboard import add_freelancer

ADMIN = Operator("alice", frozenset({Role.ADMIN}))
SETTINGS_PATH = "/freelancer/payment-settings"
LINK = re.compile(r"http://127\.0\.0\.1:8000(/freelancer/login\?token=[A-Za-z0-9._\-]+)")


@pytest.fixture
def settings() -> Settings:
    return make_settings(smtp_host="127.0.0.1", smtp_sender="ops@connect-ops.test")


@pytest.fixture
def client(session_factory: sessionmaker[Session], settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, session_factory=session_factory),
                    follow_redirects=False) as test_client:
        yield test_client


class Outbox:
    """Delivers outreach emails into a list instead of SMTP."""

    def __init__(self, session_factory: sessionmaker[Session], settings: Settings) -> None:
        self.factory, self.settings = session_factory, settings
        self.sent: list[Email] = []

    def email(self, _settings: Settings, email: Email) -> None:
        self.sent.append(email)

    def deliver_one(self, *, now=None):
        policy = OutboxPolicy(max_attempts=5)
        [claim] = claim_due(self.factory, worker_id="w", policy=policy)
        return deliver(self.factory, settings=self.settings, claim=claim, policy=policy,
                       transports=Transports(email=self.email), now=now)

    def link(self, index: int = -1) -> str:
        [path] = LINK.findall(self.sent[index].text)
        return path


def _send(session_factory: sessionmaker[Session]) -> int:
    with session_factory.begin() as session:
        fid = add_freelancer(session, state="restricted", name="Ada Lovelace",
                             email="ada@example.com").id
    with session_factory() as session:
        preview = preview_outreach(session, operator=ADMIN, freelancer_ids=[fid])
    send_outreach(session_factory, operator=ADMIN, token=preview.token, freelancer_ids=[fid])
    return fid


@pytest.fixture
def outbox(session_factory: sessionmaker[Session], settings: Settings) -> Outbox:
    return Outbox(session_factory, settings)


def _contact(session_factory: sessionmaker[Session]) -> OutreachContact:
    with session_factory() as session:
        contact = session.scalars(select(OutreachContact)).one()
        session.expunge(contact)
        return contact


def test_the_link_opens_the_payment_settings_once(
    session_factory: sessionmaker[Session], client: TestClient, outbox: Outbox,
) -> None:
    fid = _send(session_factory)
    outbox.deliver_one()
    path = outbox.link()
    # A mail scanner (or a link preview) fetches it: nothing is spent, no session is made.
    for _ in range(2):
        page = client.get(path)
        assert page.status_code == 200
        assert "set-cookie" not in page.headers
        assert page.headers["cache-control"] == "no-store"
        assert 'action="/freelancer/login"' in page.text
        assert "Continue to payment settings" in page.text
    assert _contact(session_factory).link_opened_at is None
    token = parse_qs(urlsplit(path).query)["token"][0]
    opened = client.post("/freelancer/login", data={"token": token})
    assert opened.status_code == 303
    assert opened.headers["location"] == SETTINGS_PATH
    assert SESSION_COOKIE in opened.cookies
    settings_page = client.get(SETTINGS_PATH)
    assert settings_page.status_code == 200
    assert "Identity document (passport, ID card or licence)" in settings_page.text
    assert _contact(session_factory).link_opened_at is not None
    # Used: a second POST (another tab, a forwarded email) is refused.
    client.cookies.clear()
    again = client.post("/freelancer/login", data={"token": token})
    assert again.status_code == 401 and "already used" in again.text
    assert "set-cookie" not in again.headers
    with session_factory() as session:
        results = [e.result for e in session.scalars(
            select(AuditLog).where(AuditLog.action == "outreach.link_open").order_by(AuditLog.id))]
    assert results == ["opened", "refused:used"]
    assert fid


def test_an_expired_link_is_refused(session_factory, client, outbox, settings) -> None:
    _send(session_factory)
    sent_at = utcnow() - timedelta(hours=settings.outreach_link_hours + 1)
    outbox.deliver_one(now=sent_at)
    token = parse_qs(urlsplit(outbox.link()).query)["token"][0]
    refused = client.post("/freelancer/login", data={"token": token})
    assert refused.status_code == 401 and "expired" in refused.text
    assert client.get(outbox.link()).status_code == 401  # the GET says so too


def test_a_retried_delivery_makes_a_new_link_and_the_old_one_stops(
    session_factory: sessionmaker[Session], client: TestClient, outbox: Outbox,
) -> None:
    _send(session_factory)
    outbox.deliver_one()
    first = outbox.link()
    with session_factory.begin() as session:  # an admin sends it again after a bounce
        session.execute(update(OutboxMessage).values(status="dead")
                        .execution_options(synchronize_session=False))
        retry_message(session, operator=ADMIN, message_id=1)
    outbox.deliver_one()
    second = outbox.link()
    assert first != second
    assert _contact(session_factory).link_attempt == 1  # a fresh set of attempts: the first
    old = client.post("/freelancer/login", data={"token": parse_qs(urlsplit(first).query)["token"][0]})
    assert old.status_code == 401 and "replaced by a newer one" in old.text
    new = client.post("/freelancer/login",
                      data={"token": parse_qs(urlsplit(second).query)["token"][0]})
    assert new.status_code == 303


def test_a_revoked_link_is_refused(session_factory, client, outbox) -> None:
    fid = _send(session_factory)
    outbox.deliver_one()
    with session_factory.begin() as session:
        revoke_page_access(session, freelancer_id=fid, actor="admin")
    token = parse_qs(urlsplit(outbox.link()).query)["token"][0]
    refused = client.post("/freelancer/login", data={"token": token})
    assert refused.status_code == 401 and "revoked" in refused.text
    assert _contact(session_factory).link_opened_at is None


def test_the_link_is_not_an_api_token_nor_a_session(session_factory, client, outbox) -> None:
    _send(session_factory)
    outbox.deliver_one()
    token = parse_qs(urlsplit(outbox.link()).query)["token"][0]
    api = client.get("/api/v1/freelancer/stripe-connect-status",
                     headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401
    assert api.json()["message"] == "A single-use link is not an API token."
    client.cookies.set(SESSION_COOKIE, token, path="/freelancer")
    assert client.get(SETTINGS_PATH).status_code == 401
    assert _contact(session_factory).link_opened_at is None


def test_a_plain_payment_settings_link_is_not_spendable(session_factory, client) -> None:
    """POST /freelancer/login is for single-use links only."""
    from lib.page_access import payment_settings_link

    with session_factory.begin() as session:
        fid = add_freelancer(session, state="restricted").id
    url = payment_settings_link(make_settings(), fid, timedelta(minutes=5))
    token = parse_qs(urlsplit(url).query)["token"][0]
    refused = client.post("/freelancer/login", data={"token": token})
    assert refused.status_code == 401 and "not a single-use link" in refused.text
    assert client.get(f"/freelancer/login?token={token}").status_code == 303  # as before
