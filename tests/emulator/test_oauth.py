"""OAuth like connect.stripe.com: consent page, code exchange, reuse, expiry, deauthorize."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stripe
import stripe.oauth_error

from emulator.testing import EmulatorHandle
from tests.emulator.conftest import express_account, present
from tests.emulator.html_forms import read_form

CALLBACK = "http://localhost:8000/api/v1/freelancer/stripe-connect-callback"


def _authorize(emu: EmulatorHandle, **params: str) -> httpx.Response:
    query = {"response_type": "code", "client_id": "ca_emulator_connectops", "scope": "read_write", "state": "st8", **params}
    return httpx.get(f"{emu.base_url}/oauth/authorize", params=query)


def _decide(emu: EmulatorHandle, page: httpx.Response, button: str, **overrides: str) -> httpx.Response:
    form = read_form(page.text)
    return httpx.post(f"{emu.base_url}{form.action}", data=form.click(button, **overrides))


def _connect(emu: EmulatorHandle, **overrides: str) -> dict[str, list[str]]:
    page = _authorize(emu, redirect_uri=CALLBACK)
    assert page.status_code == 200
    answer = _decide(emu, page, "Connect", **overrides)
    assert answer.status_code == 302
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == CALLBACK
    return parse_qs(target.query)


def test_authorize_url_from_sdk_serves_consent_page(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    url = client.oauth.authorize_url(
        params={"scope": "read_write", "state": "abc", "redirect_uri": CALLBACK, "stripe_user": {"email": "new@example.com"}}
    )
    assert url.startswith(f"{emu.base_url}/oauth/authorize?")
    page = httpx.get(url)
    assert page.status_code == 200
    form = read_form(page.text)
    assert form.fields["email"] == "new@example.com"
    assert form.fields["account"] == "new"  # prefilled user: new account preselected
    assert "new" in form.radios["account"] and len(form.radios["account"]) >= 2
    assert {b[2] for b in form.buttons} == {"Connect", "Deny"}


def test_connect_existing_account_and_exchange(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    page = _authorize(emu, redirect_uri=CALLBACK)
    existing = [v for v in read_form(page.text).radios["account"] if v != "new"][0]
    answer = _decide(emu, page, "Connect", account=existing)
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["st8"] and query["code"][0].startswith("ac_")
    token = client.oauth.token(params={"grant_type": "authorization_code", "code": query["code"][0]})
    assert token.stripe_user_id == existing
    assert token.scope == "read_write" and token.livemode is False and token.token_type == "bearer"
    assert present(token.access_token).startswith("sk_test_")
    assert present(token.refresh_token).startswith("rt_")
    assert present(token.stripe_publishable_key).startswith("pk_test_")
    acct = client.v1.accounts.retrieve_current(options={"stripe_account": existing})
    assert acct.charges_enabled is True and acct.type == "standard"
    events = client.v1.events.list(params={"type": "account.application.authorized"}, options={"stripe_account": existing})
    assert events.data[0].account == existing
    # Still offered, marked as connected: on Stripe a connected account may authorize again.
    again = _authorize(emu).text
    assert existing in read_form(again).radios["account"]
    assert "already connected to this platform" in again


def test_new_account_incomplete(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    query = _connect(emu, account="new", email="fresh@example.com", incomplete="1")
    token = client.oauth.token(params={"grant_type": "authorization_code", "code": query["code"][0]})
    acct = client.v1.accounts.retrieve(present(token.stripe_user_id))
    assert acct.email == "fresh@example.com" and acct.type == "standard"
    assert acct.charges_enabled is False and present(acct.requirements).currently_due


def test_deny_redirects_with_access_denied(emu: EmulatorHandle) -> None:
    page = _authorize(emu, redirect_uri=CALLBACK)
    answer = _decide(emu, page, "Deny")
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query == {"error": ["access_denied"], "error_description": ["The user denied your request"], "state": ["st8"]}


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"client_id": "ca_someone_else"}, "invalid_client"),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_redirect_uri"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "everything"}, "invalid_scope"),
    ],
)
def test_authorize_errors_stay_on_the_page(emu: EmulatorHandle, override: dict[str, str], code: str) -> None:
    page = _authorize(emu, **override)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert code in page.text


def test_missing_redirect_uri_uses_first_registered_and_extra_uris(emu: EmulatorHandle) -> None:
    page = _authorize(emu)
    answer = _decide(emu, page, "Deny")
    assert answer.headers["location"].startswith(CALLBACK + "?")
    assert _authorize(emu, redirect_uri="http://127.0.0.1:9/cb").status_code == 400
    emu.configure(extra_redirect_uris=["http://127.0.0.1:9/cb"])
    assert _authorize(emu, redirect_uri="http://127.0.0.1:9/cb").status_code == 200


def test_consent_page_escapes_input(emu: EmulatorHandle) -> None:
    page = _authorize(emu, **{"stripe_user[email]": '"><script>alert(1)</script>'})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text
    error = _authorize(emu, client_id="<b>x</b>")
    assert "<b>x</b>" not in error.text


def test_consent_form_cannot_choose_redirect(emu: EmulatorHandle) -> None:
    page = _authorize(emu, redirect_uri=CALLBACK)
    answer = _decide(emu, page, "Connect", account="new", redirect_uri="https://evil.example/")
    assert answer.headers["location"].startswith(CALLBACK)
    replay = _decide(emu, page, "Connect", account="new")  # consent id is single use
    assert replay.status_code == 400


def test_code_used_twice_fails_and_revokes(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    code = _connect(emu, account="new")["code"][0]
    token = client.oauth.token(params={"grant_type": "authorization_code", "code": code})
    with pytest.raises(stripe.oauth_error.InvalidGrantError) as exc:
        client.oauth.token(params={"grant_type": "authorization_code", "code": code})
    assert exc.value.code == "invalid_grant"
    assert f"Authorization code already used: {code}" in str(exc.value)
    with pytest.raises(stripe.PermissionError):
        client.v1.accounts.retrieve_current(options={"stripe_account": token.stripe_user_id})
    with pytest.raises(stripe.PermissionError):  # revoked: 403 account_invalid, not 404
        client.v1.accounts.retrieve(present(token.stripe_user_id))
    # the platform can no longer read the account's events either; the event is in the store
    state = emu.state(full=True)["state"]
    kinds = [e["type"] for e in state["events"].values() if e.get("account") == token.stripe_user_id]
    assert kinds[-2:] == ["account.application.authorized", "account.application.deauthorized"]


def test_code_expires_after_five_minutes(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    code = _connect(emu, account="new")["code"][0]
    emu.advance_clock(301)
    with pytest.raises(stripe.oauth_error.InvalidGrantError) as exc:
        client.oauth.token(params={"grant_type": "authorization_code", "code": code})
    assert "expired" in str(exc.value)


def test_token_errors(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        client.oauth.token(params={"grant_type": "authorization_code", "code": "ac_unknown"})
    with pytest.raises(stripe.oauth_error.UnsupportedGrantTypeError):
        # An unsupported grant type, on purpose: the emulator must refuse it as Stripe does.
        client.oauth.token(params={"grant_type": "password", "code": "x"})  # type: ignore[typeddict-item]
    with pytest.raises(stripe.oauth_error.InvalidRequestError):
        client.oauth.token(params={"grant_type": "authorization_code"})
    bad = httpx.post(f"{emu.base_url}/oauth/token", data={"grant_type": "authorization_code", "code": "x"}, headers={"Authorization": "Bearer " + "sk_live_" + "nope12345678"})
    assert bad.status_code == 401
    secret = httpx.post(f"{emu.base_url}/oauth/token", data={"grant_type": "authorization_code", "code": "ac_x", "client_secret": "sk_test_abc"})
    assert secret.status_code == 400 and secret.json()["error"] == "invalid_grant"


def test_deauthorize(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    code = _connect(emu, account="new")["code"][0]
    user = present(client.oauth.token(
        params={"grant_type": "authorization_code", "code": code}).stripe_user_id)
    result = client.oauth.deauthorize(params={"stripe_user_id": user})
    assert result.stripe_user_id == user
    with pytest.raises(stripe.oauth_error.InvalidClientError):
        client.oauth.deauthorize(params={"stripe_user_id": user})
    express = express_account(client, emu)
    with pytest.raises(stripe.oauth_error.OAuthError):
        client.oauth.deauthorize(params={"stripe_user_id": express.id})
    assert client.v1.accounts.retrieve(express.id).id == express.id
