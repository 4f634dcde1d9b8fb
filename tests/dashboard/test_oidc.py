"""Dashboard sign-in through the company's OpenID Connect provider (issue 19), in AppTest.

``at.user`` stands for the identity cookie ``st.login`` leaves (the provider's ID-token claims);
the real dance in Chromium against a local provider is in tests/browser/test_oidc_sign_in.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from lib.models import AuditLog
from tests.dashboard.conftest import APP

ROLE_MAP = ("connect-ops-admins=admin,connect-ops-finance=finance,"
            "connect-ops-managers=manager")
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "cookie-secret-for-tests-0123456789",
        "client_id": "connect-ops-dashboard", "client_secret": "not-a-real-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
ISSUER = "http://idp.corp.example"


@pytest.fixture
def oidc_app(dashboard_env, monkeypatch) -> Callable[..., AppTest]:
    monkeypatch.setenv("DASHBOARD_SIGN_IN", "oidc")
    monkeypatch.setenv("OIDC_ROLE_MAP", ROLE_MAP)
    monkeypatch.delenv("AUTH_COOKIE_KEY")  # the users file's cookie is not needed

    def build(groups: list[str] | None = None, *, email: str = "ada@corp.example",
              signed_in: bool = True, iat: int | None = None, secrets: bool = True) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=30)
        if secrets:
            at.secrets["auth"] = AUTH
        at.user = ({"is_logged_in": True, "email": email, "sub": f"sub-{email}", "iss": ISSUER,
                    "iat": iat if iat is not None else int(time.time()),
                    "groups": groups or []}
                   if signed_in else {"is_logged_in": False})
        return at

    return build


def _audit(session_factory) -> list[tuple]:
    with session_factory() as session:
        return [(e.actor, e.actor_role, e.action, e.result, e.input) for e in
                session.scalars(select(AuditLog).order_by(AuditLog.id))]


def test_a_user_with_no_mapped_role_sees_only_a_clear_message(oidc_app, session_factory) -> None:
    at = oidc_app(["sales", "everyone"], email="nora@corp.example").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "You are signed in as nora@corp.example, but your company account grants no Connect "
        "Ops role, so there is nothing here for you. Ask an admin to add you to one of the "
        "Connect Ops groups in the identity provider (your groups: sales, everyone)."]
    # Nothing else: no page, no table, no figure, no menu; only the way out.
    assert not at.dataframe and not at.metric and not at.sidebar.button
    assert [b.label for b in at.button] == ["Log out"]
    message = at.error[0].value
    at.switch_page("../pages/overview.py").run()            # asking for a page: the same
    assert [e.value for e in at.error] == [message] and not at.metric and not at.dataframe
    assert _audit(session_factory)[:1] == [(
        "nora@corp.example", "none", "auth.login", "refused:no_role",
        {"via": "oidc", "issuer": ISSUER, "subject": "sub-nora@corp.example",
         "groups": ["sales", "everyone"], "roles": "none"})]


@pytest.mark.parametrize(("groups", "allowed", "refused"), [
    (["connect-ops-admins"], "accounts.py", None),
    (["connect-ops-managers", "sales"], "metrics.py", "accounts.py"),
    (["connect-ops-finance"], "accounts.py", "metrics.py"),
])
def test_roles_come_from_the_groups_claim(oidc_app, session_factory, groups, allowed,
                                          refused) -> None:
    at = oidc_app(groups).run()
    assert not at.exception and not at.error
    assert "Signed in as **ada@corp.example**" in [m.value for m in at.sidebar.markdown]
    at.switch_page(f"../pages/{allowed}").run()
    assert not at.exception and not at.error
    if refused:
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"../pages/{refused}").run()
    [login] = [e for e in _audit(session_factory) if e[2] == "auth.login"]
    assert login[0] == "ada@corp.example" and login[3] == "ok"


def test_an_action_is_audited_under_the_asserted_identity(oidc_app, session_factory) -> None:
    """A manager's lib read is refused in lib and audited with the provider's identity."""
    from lib.account_queries import list_accounts
    from lib.errors import PermissionDeniedError

    at = oidc_app(["connect-ops-managers"]).run()
    operator = at.session_state["_sso_operator"]
    with pytest.raises(PermissionDeniedError), session_factory() as session:
        list_accounts(session, operator=operator)
    refusal = _audit(session_factory)[-1]
    assert refusal[:4] == ("ada@corp.example", "manager", "authorize.view_accounts",
                           "refused:permission_denied")


def test_not_signed_in_gets_only_the_sign_in_button(oidc_app) -> None:
    at = oidc_app(signed_in=False).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in with your company account"]
    assert not at.dataframe and not at.sidebar.button


def test_logout_ends_the_session_everywhere(oidc_app, session_factory) -> None:
    issued = int(time.time()) - 5
    at = oidc_app(["connect-ops-admins"], iat=issued).run()
    at.sidebar.button(key="oidc_logout").click().run()
    assert not at.exception
    assert at.user["is_logged_in"] is False
    at.run()                                 # the browser, sent back: the sign-in page
    assert [b.label for b in at.button] == ["Sign in with your company account"]
    assert [e[2:4] for e in _audit(session_factory)] == [("auth.login", "ok"),
                                                         ("auth.logout", "ok")]
    # Another browser still holding an identity cookie from before the logout: ended too.
    other = oidc_app(["connect-ops-admins"], iat=issued).run()
    assert not other.exception
    assert other.user["is_logged_in"] is False
    assert not other.dataframe and not other.sidebar.button


def test_missing_provider_configuration_is_one_clear_line(oidc_app) -> None:
    at = oidc_app(["connect-ops-admins"], secrets=False).run()
    assert [e.value for e in at.error] == [
        "Connect Ops is not configured: DASHBOARD_SIGN_IN=oidc needs the provider in the "
        "[auth] section of .streamlit/secrets.toml: copy .streamlit/secrets.example.toml."]
