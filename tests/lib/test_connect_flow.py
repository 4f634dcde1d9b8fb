"""The connect flow end to end in lib/, against the emulator with the unmodified SDK."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from emulator.page_driver import consent, onboard
from emulator.testing import EmulatorHandle
from lib.account_status import ConnectionStatus
from lib.connect_flow import (
    connect_method,
    connection_status,
    create_connect_link,
    create_oauth_link,
    create_onboarding_link,
    disconnect,
    handle_oauth_callback,
    handle_onboarding_return,
    refresh_connection,
)
from lib.connection_attempts import FailureReason
from lib.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from lib.freelancers import create_freelancer
from lib.models import AuditLog, ConnectionAttempt, ConnectionMethod, Freelancer, OAuthState
from lib.onboarding_urls import SignedAttempt, UrlPurpose, read_signed_attempt
from lib.roles import Operator, Role
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from tests.factories import make_settings

ADMIN = Operator.from_role_names("alice", ["admin"])
_T = TypeVar("_T")


@dataclass
class World:
    emulator: EmulatorHandle
    settings: Settings
    gateway: StripeGateway
    session_factory: sessionmaker[Session]

    def freelancer(self, email: str = "ada@example.com", name: str = "Ada Lovelace") -> int:
        with self.session_factory.begin() as session:
            return create_freelancer(session, name=name, email=email, country="US").id

    def oauth_link(self, freelancer_id: int, operator: Operator = ADMIN) -> str:
        with self.session_factory.begin() as session:
            return create_oauth_link(session, gateway=self.gateway, settings=self.settings,
                                     operator=operator, freelancer_id=freelancer_id).url

    def callback(self, params: dict[str, str]):
        return handle_oauth_callback(self.session_factory, gateway=self.gateway, params=params)

    def status(self, freelancer_id: int):
        with self.session_factory() as session:
            return connection_status(session, freelancer_id=freelancer_id)

    def returned(self, url: str):
        """Stripe sent the browser to ``url`` (a return URL): what the return handler does."""
        return handle_onboarding_return(self.session_factory, gateway=self.gateway,
                                        url=signed_of(self.settings, url, UrlPurpose.RETURN))

    def attempts(self, freelancer_id: int) -> list[ConnectionAttempt]:
        with self.session_factory() as session:
            return list(session.scalars(select(ConnectionAttempt).where(
                ConnectionAttempt.freelancer_id == freelancer_id).order_by(ConnectionAttempt.id)))


def signed_of(settings: Settings, url: str, purpose: UrlPurpose) -> SignedAttempt:
    """The verified ``attempt`` of a refresh/return URL we issued."""
    signed = read_signed_attempt(settings, parse_qs(urlsplit(url).query)["attempt"][0],
                                 purpose=purpose)
    assert signed is not None
    return signed


@pytest.fixture
def world(emulator, session_factory) -> World:
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url)
    emulator.configure(backend_url=settings.backend_url)
    return World(emulator, settings, StripeGateway(settings), session_factory)


def test_oauth_link_shape(world: World) -> None:
    url = world.oauth_link(world.freelancer())
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(world.emulator.base_url + "/oauth/authorize?")
    assert query["scope"] == ["read_write"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [world.settings.oauth_redirect_uri]
    assert query["stripe_user[email]"] == ["ada@example.com"]
    assert len(query["state"][0]) >= 43
    with world.session_factory() as session:
        stored = session.scalars(select(OAuthState.state_hash)).one()
    assert query["state"][0] not in stored


def test_existing_account_connects_through_oauth(world: World) -> None:
    freelancer_id = world.freelancer()
    redirect = consent(world.oauth_link(freelancer_id))
    result = world.callback(redirect)
    assert result.success and result.account_id and result.account_id.startswith("acct_")
    view = world.status(freelancer_id)
    assert view.is_connected and view.status is ConnectionStatus.ACTIVE and view.verified
    api = view.to_api()
    assert api["accountDetails"]["payoutsEnabled"] is True
    assert [a.outcome for a in world.attempts(freelancer_id)] == ["succeeded"]


def test_deny_is_access_denied_and_spends_the_state(world: World) -> None:
    freelancer_id = world.freelancer()
    redirect = consent(world.oauth_link(freelancer_id), decision="deny")
    assert redirect["error"] == "access_denied"
    result = world.callback(redirect)
    assert not result.success and result.reason is FailureReason.ACCESS_DENIED
    again = world.callback(redirect)
    assert again.reason is FailureReason.INVALID_STATE
    attempt = world.attempts(freelancer_id)[0]
    assert (attempt.outcome, attempt.failure_reason) == ("failed", "access_denied")


@pytest.mark.parametrize("error", ["invalid_scope", "invalid_request", "server_error", "x" * 500])
def test_an_error_other_than_access_denied_is_exchange_failed(world: World, error: str) -> None:
    """Stripe's other OAuth errors are not a freelancer's refusal: counted as exchange_failed."""
    freelancer_id = world.freelancer()
    denied = consent(world.oauth_link(freelancer_id), decision="deny")
    redirect = {"state": denied["state"], "error": error, "error_description": "Stripe says no"}
    result = world.callback(redirect)
    assert not result.success and result.reason is FailureReason.EXCHANGE_FAILED
    assert world.callback(redirect).reason is FailureReason.INVALID_STATE  # the state is spent
    assert not world.status(freelancer_id).is_connected
    attempt = world.attempts(freelancer_id)[0]
    assert (attempt.outcome, attempt.failure_reason) == ("failed", "exchange_failed")
    with world.session_factory() as session:
        entry = session.scalars(select(AuditLog).where(AuditLog.result == "exchange_failed")).one()
    assert entry.detail == f"Stripe returned error={error[:100]}"


@pytest.mark.parametrize(
    "params",
    [{}, {"state": "x"}, {"code": "ac_1"}, {"error": "access_denied"}],
    ids=["nothing", "state-only", "code-only", "error-only"],
)
def test_missing_parameters(world: World, params) -> None:
    assert world.callback(params).reason is FailureReason.MISSING_PARAMETERS


def test_tampered_reused_and_expired_states(world: World, monkeypatch) -> None:
    freelancer_id = world.freelancer()
    redirect = consent(world.oauth_link(freelancer_id))
    tampered = dict(redirect, state=redirect["state"][:-2] + "zz")
    assert world.callback(tampered).reason is FailureReason.INVALID_STATE
    assert world.callback(redirect).success
    # Reused: the state is spent; the code is never exchanged a second time.
    assert world.callback(redirect).reason is FailureReason.INVALID_STATE
    assert world.status(freelancer_id).is_connected

    other = world.freelancer("grace@example.com", "Grace Hopper")
    late = consent(world.oauth_link(other))
    with world.session_factory.begin() as session:
        for state in session.scalars(select(OAuthState).where(OAuthState.freelancer_id == other)):
            state.expires_at = state.created_at  # an hour has passed
    assert world.callback(late).reason is FailureReason.INVALID_STATE
    assert not world.status(other).is_connected


def test_expired_code_is_exchange_failed(world: World) -> None:
    freelancer_id = world.freelancer()
    redirect = consent(world.oauth_link(freelancer_id))
    world.emulator.advance_clock(301)
    result = world.callback(redirect)
    assert result.reason is FailureReason.EXCHANGE_FAILED
    assert not world.status(freelancer_id).is_connected
    assert world.attempts(freelancer_id)[0].failure_reason == "exchange_failed"


def test_stripe_down_during_exchange_is_server_error(world: World) -> None:
    freelancer_id = world.freelancer()
    redirect = consent(world.oauth_link(freelancer_id))
    world.emulator.inject_fault("http_500", "/oauth/token", method="POST", count=1)
    result = world.callback(redirect)
    assert result.reason is FailureReason.SERVER_ERROR
    assert not world.status(freelancer_id).is_connected


def test_account_of_another_freelancer_is_refused_and_both_kept(world: World) -> None:
    first = world.freelancer()
    connected = world.callback(consent(world.oauth_link(first)))
    assert connected.success
    # The second freelancer picks the very same Stripe account on the consent page.
    second = world.freelancer("grace@example.com", "Grace Hopper")
    redirect = consent(world.oauth_link(second), account=connected.account_id)
    result = world.callback(redirect)
    assert result.reason is FailureReason.ACCOUNT_ALREADY_CONNECTED
    assert world.status(first).account_id == connected.account_id
    assert not world.status(second).is_connected


def test_one_entry_point_gives_a_link_by_either_method(world: World) -> None:
    freelancer_id = world.freelancer()
    oauth = create_connect_link(world.session_factory, gateway=world.gateway,
                                settings=world.settings, operator=ADMIN,
                                freelancer_id=freelancer_id, method=connect_method("oauth"))
    assert oauth.method is ConnectionMethod.OAUTH
    assert oauth.url.startswith(world.emulator.base_url + "/oauth/authorize?")
    assert world.callback(consent(oauth.url)).success  # committed: the state is usable
    assert disconnect(world.session_factory, gateway=world.gateway, operator=ADMIN,
                      freelancer_id=freelancer_id)
    onboarding = create_connect_link(world.session_factory, gateway=world.gateway,
                                     settings=world.settings, operator=ADMIN,
                                     freelancer_id=freelancer_id,
                                     method=connect_method("onboarding"))
    assert onboarding.method is ConnectionMethod.ACCOUNT_LINK
    assert world.returned(onboard(onboarding.url, action="complete")).completed
    assert [a.method for a in world.attempts(freelancer_id)] == ["oauth", "account_link"]


def test_a_method_is_named_oauth_or_onboarding(world: World) -> None:
    with pytest.raises(ValidationError, match="oauth or onboarding"):
        connect_method("account_link")
    freelancer_id = world.freelancer()
    manager = Operator.from_role_names("mia", ["manager"])
    with pytest.raises(PermissionDeniedError):  # refused by either method, before Stripe
        create_connect_link(world.session_factory, gateway=world.gateway,
                            settings=world.settings, operator=manager,
                            freelancer_id=freelancer_id, method=ConnectionMethod.ACCOUNT_LINK)
    assert world.attempts(freelancer_id) == []


def test_new_freelancer_onboards_to_active(world: World) -> None:
    freelancer_id = world.freelancer()
    link = create_onboarding_link(world.session_factory, gateway=world.gateway,
                                  settings=world.settings, operator=ADMIN,
                                  freelancer_id=freelancer_id)
    assert world.status(freelancer_id).status is not ConnectionStatus.ACTIVE
    returned_to = onboard(link.url, action="complete")
    assert returned_to.startswith(world.settings.backend_url + "/api/v1/freelancer/stripe-connect-return")
    assert signed_of(world.settings, returned_to, UrlPurpose.RETURN).attempt_id == link.attempt_id
    result = world.returned(returned_to)
    assert result.completed and result.status is ConnectionStatus.ACTIVE
    assert world.status(freelancer_id).status is ConnectionStatus.ACTIVE
    attempt = world.attempts(freelancer_id)[0]
    assert attempt.outcome == "succeeded" and attempt.returned_at is not None


def test_incomplete_onboarding_returns_without_success(world: World) -> None:
    freelancer_id = world.freelancer()
    link = create_onboarding_link(world.session_factory, gateway=world.gateway,
                                  settings=world.settings, operator=ADMIN,
                                  freelancer_id=freelancer_id)
    result = world.returned(onboard(link.url, action="incomplete"))
    assert not result.completed
    assert result.status is not ConnectionStatus.ACTIVE
    assert world.attempts(freelancer_id)[0].outcome == "pending"


def test_account_link_is_single_use_and_goes_to_refresh(world: World) -> None:
    freelancer_id = world.freelancer()
    link = create_onboarding_link(world.session_factory, gateway=world.gateway,
                                  settings=world.settings, operator=ADMIN,
                                  freelancer_id=freelancer_id)
    onboard(link.url, action="incomplete")
    assert "stripe-connect-refresh" in onboard(link.url)
    # A second link reuses the same Express account (no duplicate account at Stripe).
    again = create_onboarding_link(world.session_factory, gateway=world.gateway,
                                   settings=world.settings, operator=ADMIN,
                                   freelancer_id=freelancer_id)
    assert again.attempt_id != link.attempt_id
    assert world.emulator.state()["counts"]["accounts"] == 4  # 3 seeded Standard + this one


def test_onboarding_link_refused_for_oauth_connection(world: World) -> None:
    freelancer_id = world.freelancer()
    assert world.callback(consent(world.oauth_link(freelancer_id))).success
    with pytest.raises(ConflictError, match="OAuth"):
        create_onboarding_link(world.session_factory, gateway=world.gateway,
                               settings=world.settings, operator=ADMIN,
                               freelancer_id=freelancer_id)


def test_disconnect_then_reconnect(world: World) -> None:
    freelancer_id = world.freelancer()
    first = world.callback(consent(world.oauth_link(freelancer_id)))
    detached = disconnect(world.session_factory, gateway=world.gateway, operator=ADMIN,
                          freelancer_id=freelancer_id)
    assert detached == first.account_id
    assert world.status(freelancer_id).status is ConnectionStatus.NOT_CONNECTED
    with pytest.raises(ConflictError):
        disconnect(world.session_factory, gateway=world.gateway, operator=ADMIN,
                   freelancer_id=freelancer_id)
    # Reconnect with the same Stripe account: allowed, history kept.
    again = world.callback(consent(world.oauth_link(freelancer_id), account=first.account_id))
    assert again.success and again.account_id == first.account_id
    assert world.status(freelancer_id).status is ConnectionStatus.ACTIVE
    assert [a.outcome for a in world.attempts(freelancer_id)] == ["succeeded", "succeeded"]


def test_express_account_is_detached_not_deauthorized(world: World) -> None:
    freelancer_id = world.freelancer()
    link = create_onboarding_link(world.session_factory, gateway=world.gateway,
                                  settings=world.settings, operator=ADMIN,
                                  freelancer_id=freelancer_id)
    world.returned(onboard(link.url))
    account_id = disconnect(world.session_factory, gateway=world.gateway, operator=ADMIN,
                            freelancer_id=freelancer_id)
    assert world.status(freelancer_id).status is ConnectionStatus.NOT_CONNECTED
    # Still readable at Stripe: the platform controls it; it was never deauthorized.
    assert world.gateway.retrieve_account(account_id).data["id"] == account_id
    # Onboarding again creates a new Express account.
    fresh = create_onboarding_link(world.session_factory, gateway=world.gateway,
                                   settings=world.settings, operator=ADMIN,
                                   freelancer_id=freelancer_id)
    result = world.returned(onboard(fresh.url))
    assert result.account_id != account_id and result.status is ConnectionStatus.ACTIVE


def test_roles_and_own_connection_are_enforced(world: World) -> None:
    freelancer_id = world.freelancer()
    other_id = world.freelancer("grace@example.com", "Grace Hopper")
    manager = Operator.from_role_names("max", ["manager"])
    with pytest.raises(PermissionDeniedError):
        world.oauth_link(freelancer_id, operator=manager)
    own = Operator(username=f"freelancer:{freelancer_id}", roles=frozenset({Role.FREELANCER}))
    assert world.oauth_link(freelancer_id, operator=own)
    with pytest.raises(PermissionDeniedError):
        world.oauth_link(other_id, operator=own)
    with pytest.raises(PermissionDeniedError):
        disconnect(world.session_factory, gateway=world.gateway, operator=own,
                   freelancer_id=other_id)


def test_refresh_reads_requirements_restricted_then_disabled(world: World) -> None:
    freelancer_id = world.freelancer()
    account_id = world.callback(consent(world.oauth_link(freelancer_id))).account_id
    deadline = int(time.time()) + 7 * 86_400
    world.emulator.set_account(account_id, requirements={
        "currently_due": ["individual.verification.document"],
        "eventually_due": ["individual.verification.document"], "current_deadline": deadline})
    view = refresh_connection(world.session_factory, gateway=world.gateway,
                              freelancer_id=freelancer_id)
    assert view.status is ConnectionStatus.RESTRICTED
    assert view.to_api()["accountDetails"]["currentDeadline"] == deadline
    world.emulator.set_account(account_id, payouts_enabled=False, requirements={
        "past_due": ["individual.verification.document"],
        "disabled_reason": "requirements.past_due"})
    view = refresh_connection(world.session_factory, gateway=world.gateway,
                              freelancer_id=freelancer_id)
    assert view.status is ConnectionStatus.DISABLED and not view.verified


def test_freelancer_row_untouched_by_failed_callbacks(world: World) -> None:
    freelancer_id = world.freelancer()
    world.callback({"state": "forged", "code": "ac_x"})
    with world.session_factory() as session:
        freelancer = session.get(Freelancer, freelancer_id)
        assert freelancer is not None and freelancer.stripe_account_id is None


def _commits_during(world: World, action: Callable[[], _T]) -> tuple[_T, int]:
    engine = world.session_factory.kw["bind"]
    commits: list[object] = []

    def count(connection) -> None:
        commits.append(connection)

    sa_event.listen(engine, "commit", count)
    try:
        result = action()
    finally:
        sa_event.remove(engine, "commit", count)
    return result, len(commits)


def test_a_callback_that_ends_before_the_exchange_is_one_transaction(world: World) -> None:
    # Unknown state, or Stripe's error: the failure is recorded with the state's consumption,
    # in one commit (no code is exchanged, so nothing has to be committed before anything).
    freelancer_id = world.freelancer()
    denied = consent(world.oauth_link(freelancer_id), decision="deny")
    result, commits = _commits_during(world, lambda: world.callback(denied))
    assert result.reason is FailureReason.ACCESS_DENIED and commits == 1
    result, commits = _commits_during(world, lambda: world.callback(denied))
    assert result.reason is FailureReason.INVALID_STATE and commits == 1
    with world.session_factory() as session:
        results = list(session.scalars(
            select(AuditLog.result).where(AuditLog.action == "connect.oauth_callback")
            .order_by(AuditLog.id)))
    assert results == ["access_denied", "invalid_state"]


def test_the_spent_state_is_committed_before_the_code_is_exchanged(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    freelancer_id = world.freelancer()
    redirect = consent(world.oauth_link(freelancer_id))
    seen: list[int] = []
    exchange = world.gateway.oauth_token

    def exchange_and_look(code: str):
        with world.session_factory() as session:  # another transaction: only committed rows
            seen.append(session.scalars(select(func.count()).select_from(OAuthState).where(
                OAuthState.freelancer_id == freelancer_id, OAuthState.consumed_at.is_not(None))
            ).one())
        return exchange(code)

    monkeypatch.setattr(world.gateway, "oauth_token", exchange_and_look)
    assert world.callback(redirect).success
    assert seen == [1]


def test_status_of_an_unmirrored_connection_is_pending_and_unknown_is_not_found(
        world: World) -> None:
    freelancer_id = world.freelancer()
    assert world.status(freelancer_id).status is ConnectionStatus.NOT_CONNECTED
    with world.session_factory.begin() as session:
        session.get_one(Freelancer, freelancer_id).stripe_account_id = "acct_not_mirrored_yet"
    view = world.status(freelancer_id)
    assert (view.account_id, view.status, view.verified) == (
        "acct_not_mirrored_yet", ConnectionStatus.PENDING, False)
    with pytest.raises(NotFoundError):
        world.status(freelancer_id + 1000)
