"""Payment-settings links (``python -m server.links``): they expire, and they can be revoked
(issue 19). Revoking ends every link and every session opened with one, at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.db import utcnow
from lib.freelancers import create_freelancer
from lib.models import AuditLog
from lib.roles import Role
from lib.tokens import issue_token
from server import links
from server.app import create_app
from tests.factories import TEST_JWT_SECRET, make_settings

SETTINGS_PATH = "/freelancer/payment-settings"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path, database_url: str) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BACKEND_URL", "http://127.0.0.1:8000")


@pytest.fixture
def freelancer_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory.begin() as session:
        return create_freelancer(session, name="Ada Lovelace", email="ada@example.com").id


@pytest.fixture
def client(session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(make_settings(), session_factory=session_factory)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def _link(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert links.main(list(argv)) == 0
    url = capsys.readouterr().out.strip()
    parts = urlsplit(url)
    assert url.startswith("http://127.0.0.1:8000/freelancer/login?token=")
    return f"{parts.path}?{parts.query}"


def test_a_link_carries_its_expiry(env, capsys, freelancer_id, client) -> None:
    before = utcnow()
    path = _link(capsys, "ada@example.com", "--minutes", "7")
    token = parse_qs(urlsplit(path).query)["token"][0]
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
    assert 7 * 60 - 5 <= claims["exp"] - int(before.timestamp()) <= 7 * 60 + 5
    assert (claims["sub"], claims["role"], claims["pag"]) == (str(freelancer_id), "freelancer", 0)
    expired = issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id),
                          role=Role.FREELANCER, now=utcnow() - timedelta(hours=2),
                          lifetime=timedelta(minutes=30), page_generation=0)
    refused = client.get("/freelancer/login", params={"token": expired})
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert "The token has expired." in refused.text
    assert client.get(path).status_code == 303


def test_revoking_ends_every_link_and_session(env, capsys, freelancer_id, client,
                                              session_factory) -> None:
    unused = _link(capsys, str(freelancer_id))
    used = _link(capsys, str(freelancer_id))
    assert client.get(used).status_code == 303
    assert client.get(SETTINGS_PATH).status_code == 200    # the session the link opened

    assert links.main([str(freelancer_id), "--revoke"]) == 0
    assert "revoked" in capsys.readouterr().err

    page = client.get(SETTINGS_PATH)                        # the open session ends at once
    assert page.status_code == 401 and "This link or session was revoked." in page.text
    client.cookies.clear()
    refused = client.get(unused)                            # and so does a link not used yet
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert "This link or session was revoked." in refused.text

    fresh = _link(capsys, str(freelancer_id))               # a new link works
    assert client.get(fresh).status_code == 303
    assert client.get(SETTINGS_PATH).status_code == 200
    with session_factory() as session:
        entries = [(e.actor, e.action, e.result, e.input.get("generation")) for e in
                   session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert entries == [("cli:server.links", "freelancer.page_link", "issued", 0)] * 2 + [
        ("cli:server.links", "freelancer.page_links_revoke", "revoked", 1),
        ("cli:server.links", "freelancer.page_link", "issued", 1)]


def test_revoking_an_unknown_freelancer_is_one_line(env, capsys, freelancer_id) -> None:
    assert links.main(["nobody@example.com", "--revoke"]) == 2
    assert capsys.readouterr().err == (
        "connect-ops links: No freelancer has the email nobody@example.com.\n")


def test_a_link_the_desk_issues_after_a_revocation_works(env, freelancer_id, client,
                                                         session_factory) -> None:
    """The dashboard's links (lib.freelancer_links, issue 21) carry the current generation."""
    from lib.freelancer_links import payment_settings_link
    from lib.page_access import revoke_page_access
    from lib.roles import Operator

    admin = Operator("admin", frozenset({Role.ADMIN}))
    with session_factory.begin() as session:
        revoke_page_access(session, freelancer_id=freelancer_id, actor=admin)
        link = payment_settings_link(session, operator=admin, settings=make_settings(),
                                     freelancer_id=freelancer_id)
    parts = urlsplit(link.url)
    assert client.get(f"{parts.path}?{parts.query}").status_code == 303
    assert client.get(SETTINGS_PATH).status_code == 200
