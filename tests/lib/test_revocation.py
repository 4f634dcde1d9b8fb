"""Issue 16, findings 3 and 4: a revoked connection is not a bad key, and only a revocation
Stripe confirms detaches a freelancer.

Against the emulator, which answers an account whose OAuth access was revoked with Stripe's
403 ``account_invalid`` (a ``PermissionError`` in the SDK), a bad key with a 401, and
``/oauth/deauthorize`` with a distinct ``invalid_client`` per cause. With the product of
99ac47c these tests failed: the 403 was reported as a refused API key, a payout hitting it went
back to ``pending``, and any OAuth error on disconnect detached the freelancer locally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from emulator.page_driver import consent
from emulator.testing import EmulatorHandle, stripe_client
from lib import errors
from lib.account_status import ConnectionStatus
from lib.accounts import get_account
from lib.connect_flow import (
    connection_status,
    create_oauth_link,
    disconnect,
    handle_oauth_callback,
    refresh_connection,
)
from lib.destinations import confirm_destination
from lib.freelancers import create_freelancer, get_freelancer
from lib.models import AuditLog, Payout, PayoutStatus, WebhookEvent, WebhookStatus
from lib.payouts.execution import execute_payout
from lib.payouts.ledger import request_payout
from lib.roles import Operator, Role
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from lib.webhooks import Endpoint, process_event, store_event
from tests.factories import make_settings

ADMIN = Operator.from_role_names("alice", ["admin"])


@dataclass
class World:
    emulator: EmulatorHandle
    settings: Settings
    gateway: StripeGateway
    session_factory: sessionmaker[Session]

    def connected(self, email: str = "ada@example.com") -> tuple[int, str]:
        """A freelancer connected through OAuth (a Standard account, mirrored)."""
        with self.session_factory.begin() as session:
            freelancer_id = create_freelancer(session, name="Ada Lovelace", email=email,
                                              country="US").id
        with self.session_factory.begin() as session:
            url = create_oauth_link(session, gateway=self.gateway, settings=self.settings,
                                    operator=ADMIN, freelancer_id=freelancer_id).url
        result = handle_oauth_callback(self.session_factory, gateway=self.gateway,
                                       params=consent(url))
        assert result.success and result.account_id
        # Issue 19: a new destination is paid only once confirmed; Ada confirms hers.
        with self.session_factory.begin() as session:
            confirm_destination(session, operator=Operator(
                f"freelancer:{freelancer_id}", frozenset({Role.FREELANCER})),
                freelancer_id=freelancer_id, account_id=result.account_id)
        return freelancer_id, result.account_id

    def revoke_at_stripe(self, account_id: str) -> None:
        """The freelancer disconnects the platform from their own Stripe Dashboard."""
        stripe_client(self.emulator.base_url).oauth.deauthorize(
            params={"stripe_user_id": account_id})

    def attached(self, freelancer_id: int) -> str | None:
        with self.session_factory() as session:
            return get_freelancer(session, freelancer_id=freelancer_id).stripe_account_id

    def deauthorized_at(self, account_id: str):
        with self.session_factory() as session:
            mirror = get_account(session, stripe_id=account_id)
            return mirror.deauthorized_at if mirror else None

    def audit(self, action: str) -> list[AuditLog]:
        with self.session_factory() as session:
            return list(session.scalars(select(AuditLog).where(AuditLog.action == action)))


@pytest.fixture
def world(emulator, session_factory) -> World:
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             stripe_max_network_retries=0)
    emulator.configure(backend_url=settings.backend_url)
    emulator.set_balance(1_000_000, "usd")
    return World(emulator, settings, StripeGateway(settings), session_factory)


# ---- the gateway: three different errors ----------------------------------------------------------


def test_a_revoked_account_is_its_own_error_not_a_refused_key(world: World) -> None:
    _, account_id = world.connected()
    world.revoke_at_stripe(account_id)
    with pytest.raises(errors.StripeAccountAccessError) as caught:
        world.gateway.retrieve_account(account_id)
    assert not isinstance(caught.value, errors.StripeAuthenticationError)
    assert caught.value.http_status == 403 and caught.value.stripe_code == "account_invalid"
    assert caught.value.account_id == account_id and account_id in caught.value.message
    assert "API key" not in caught.value.message

    bad_key = StripeGateway(make_settings(stripe_api_base=world.emulator.base_url,
                                          stripe_connect_base=world.emulator.base_url,
                                          stripe_secret_key="sk_test_"))  # 401 at Stripe
    with pytest.raises(errors.StripeAuthenticationError) as refused:
        bad_key.retrieve_balance()
    assert refused.value.http_status == 401 and "API key" in refused.value.message


def test_a_deauthorization_event_read_with_a_refused_key_detaches_nobody(world: World) -> None:
    """The webhook confirms a deauthorization by reading the account: a refused platform key
    says nothing about the connection (the event fails and is retried); the 403 does."""
    freelancer_id, account_id = world.connected()
    event: dict[str, Any] = {
        "id": "evt_1RevokedContract", "object": "event", "livemode": False,
        "type": "account.application.deauthorized", "account": account_id,
        "created": int(time.time()) + 5, "data": {"object": {"object": "application"}}}
    with world.session_factory.begin() as session:
        store_event(session, event=event, endpoint=Endpoint.CONNECT, settings=world.settings)
    bad_key = StripeGateway(make_settings(stripe_api_base=world.emulator.base_url,
                                          stripe_connect_base=world.emulator.base_url,
                                          stripe_secret_key="sk_test_"))
    # The worker records the failure on the event (retried later), never a detach.
    failed = process_event(world.session_factory, gateway=bad_key, event_id=event["id"],
                           worker_id="test-worker")
    assert failed is not None and failed.status is WebhookStatus.FAILED
    assert failed.note is not None and "stripe_authentication_error" in failed.note
    assert world.attached(freelancer_id) == account_id

    world.revoke_at_stripe(account_id)
    with world.session_factory.begin() as session:
        session.execute(update(WebhookEvent).where(WebhookEvent.stripe_event_id == event["id"])
                        .values(status=WebhookStatus.RECEIVED.value, next_attempt_at=None))
    done = process_event(world.session_factory, gateway=world.gateway, event_id=event["id"],
                         worker_id="test-worker")
    assert done is not None and done.status is WebhookStatus.PROCESSED
    assert world.attached(freelancer_id) is None


# ---- reading the account: the status refresh records a confirmed revocation -----------------------


def test_a_status_refresh_records_a_revocation_stripe_confirms(world: World) -> None:
    freelancer_id, account_id = world.connected()
    world.revoke_at_stripe(account_id)
    view = refresh_connection(world.session_factory, gateway=world.gateway,
                              freelancer_id=freelancer_id)
    assert not view.is_connected and view.status is ConnectionStatus.NOT_CONNECTED
    assert world.attached(freelancer_id) is None
    assert world.deauthorized_at(account_id) is not None
    (entry,) = world.audit("connect.revoked")
    assert entry.input == {"account": account_id, "source": "status refresh"}


# ---- a payout to a revoked destination -------------------------------------------------------------


def _payout(world: World, freelancer_id: int, token: str) -> int:
    with world.session_factory.begin() as session:
        return request_payout(session, operator=ADMIN, freelancer_id=freelancer_id,
                              amount="25.00", currency="usd", description="Invoice 7",
                              client_request_token=token, settings=world.settings).id


def test_a_payout_to_a_revoked_destination_fails_and_never_goes_back_to_pending(
    world: World,
) -> None:
    freelancer_id, account_id = world.connected()
    payout_id = _payout(world, freelancer_id, "revoked-1")
    world.revoke_at_stripe(account_id)  # after the request, before it is sent
    row = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                         operator=ADMIN, recheck_balance=False)
    assert row.status == PayoutStatus.FAILED
    assert row.error_code == "account_invalid" and row.submitted_at is not None
    assert world.emulator.state()["counts"]["transfers"] == 0
    # The connection is recorded as revoked once Stripe confirmed it.
    assert world.attached(freelancer_id) is None
    assert world.deauthorized_at(account_id) is not None
    assert [e.input["source"] for e in world.audit("connect.revoked")] == ["payout"]
    # Executing again leaves the terminal row as it is: nothing is sent.
    again = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN)
    assert again.status == PayoutStatus.FAILED


def test_a_refused_key_leaves_a_submitted_payout_unknown_not_pending(world: World) -> None:
    freelancer_id, _ = world.connected()
    payout_id = _payout(world, freelancer_id, "badkey-1")
    bad_key = StripeGateway(make_settings(stripe_api_base=world.emulator.base_url,
                                          stripe_connect_base=world.emulator.base_url,
                                          stripe_secret_key="sk_test_",
                                          stripe_max_network_retries=0))
    row = execute_payout(world.session_factory, gateway=bad_key, payout_id=payout_id,
                         operator=ADMIN, recheck_balance=False)
    assert row.status == PayoutStatus.UNKNOWN and row.submitted_at is not None
    assert world.attached(freelancer_id) is not None  # a key problem detaches nobody
    settled = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                             operator=ADMIN)
    assert settled.status == PayoutStatus.PAID
    with world.session_factory() as session:
        assert session.get_one(Payout, payout_id).idempotency_key == row.idempotency_key


# ---- disconnect: only a confirmed revocation detaches -----------------------------------------------


def test_disconnect_with_a_wrong_client_id_changes_nothing(world: World) -> None:
    freelancer_id, account_id = world.connected()
    rotated = StripeGateway(make_settings(stripe_api_base=world.emulator.base_url,
                                          stripe_connect_base=world.emulator.base_url,
                                          stripe_connect_client_id="ca_rotatedawayold"))
    with pytest.raises(errors.StripeOAuthError) as caught:
        disconnect(world.session_factory, gateway=rotated, operator=ADMIN,
                   freelancer_id=freelancer_id)
    assert caught.value.stripe_code == "invalid_client"
    assert "STRIPE_CONNECT_CLIENT_ID" in caught.value.message
    assert "nothing was changed" in caught.value.message
    assert world.attached(freelancer_id) == account_id
    assert world.deauthorized_at(account_id) is None
    assert world.gateway.retrieve_account(account_id).id == account_id  # still connected
    (refused,) = world.audit("connect.disconnect")
    assert refused.result == "refused:invalid_client"


def test_disconnect_with_the_live_client_id_and_a_test_key_changes_nothing(world: World) -> None:
    freelancer_id, account_id = world.connected()
    world.emulator.configure(connect_live_client_id="ca_connectopslivemode")
    try:
        live_id = StripeGateway(make_settings(stripe_api_base=world.emulator.base_url,
                                              stripe_connect_base=world.emulator.base_url,
                                              stripe_connect_client_id="ca_connectopslivemode"))
        with pytest.raises(errors.StripeOAuthError, match="same mode"):
            disconnect(world.session_factory, gateway=live_id, operator=ADMIN,
                       freelancer_id=freelancer_id)
    finally:
        world.emulator.configure(connect_live_client_id=None)
    assert world.attached(freelancer_id) == account_id


def test_disconnect_of_a_connection_already_revoked_at_stripe_detaches(world: World) -> None:
    freelancer_id, account_id = world.connected()
    world.revoke_at_stripe(account_id)
    detached = disconnect(world.session_factory, gateway=world.gateway, operator=ADMIN,
                          freelancer_id=freelancer_id)
    assert detached == account_id and world.attached(freelancer_id) is None
    assert world.deauthorized_at(account_id) is not None
    with world.session_factory() as session:
        assert connection_status(session, freelancer_id=freelancer_id).status is (
            ConnectionStatus.NOT_CONNECTED)


def test_disconnect_still_deauthorizes_a_live_connection(world: World) -> None:
    freelancer_id, account_id = world.connected()
    disconnect(world.session_factory, gateway=world.gateway, operator=ADMIN,
               freelancer_id=freelancer_id)
    with pytest.raises(errors.StripeAccountAccessError):
        world.gateway.retrieve_account(account_id)
    assert world.attached(freelancer_id) is None
