"""Issue 16, finding 5: a 500 Stripe saved under a payout's idempotency key.

Stripe saves a 500 once execution started and replays it to every retry with the same key
(``Stripe-Should-Retry: false``, ``Idempotent-Replayed: true``). Such a payout can never be
settled by retrying: the gateway says so (``StripeSavedServerError``), execution stops retrying
it, and reconciliation settles it from Stripe's transfers or hands it to a person
(``saved_error``). With the product of 99ac47c these tests failed: the row was an ordinary
``unknown``, retried forever, and reconciliation advised "execute again (same key, safe)".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib import errors
from lib.errors import ConflictError
from lib.models import PayoutStatus
from lib.payouts.execution import SAVED_SERVER_ERROR, execute_payout, retry_unsettled
from lib.payouts.ledger import request_payout
from lib.payouts.reconciliation import (
    MISMATCH_KINDS,
    RESOLVED_PAID,
    RETRY_SAME_KEY,
    SAVED_ERROR,
    reconcile,
)
from lib.roles import Operator
from tests.lib.payouts.conftest import StripeWorld

ADMIN = Operator.from_role_names("alice", ["admin"])
FINANCE = Operator.from_role_names("fiona", ["finance"])


def _requested(world: StripeWorld, token: str) -> int:
    freelancer = world.freelancer(email=f"{token}@example.com")
    with world.session_factory.begin() as session:
        return request_payout(session, operator=ADMIN, freelancer_id=freelancer.id,
                              amount="40.00", currency="usd", description="Invoice 9",
                              client_request_token=token, settings=world.settings).id


def _reconcile(world: StripeWorld):
    return reconcile(world.session_factory, gateway=world.gateway, operator=FINANCE,
                     since=datetime.now(UTC) - timedelta(hours=1))


def test_the_gateway_tells_a_saved_500_from_a_passing_one(world: StripeWorld) -> None:
    account_id = world.freelancer().stripe_account_id
    assert account_id
    world.emu.inject_fault("http_500", "/v1/transfers", method="POST")
    for _ in range(2):  # the first answer and its replay
        with pytest.raises(errors.StripeSavedServerError) as caught:
            world.gateway.create_transfer(amount_minor=100, currency="usd",
                                          destination=account_id, idempotency_key="saved-1")
        assert isinstance(caught.value, errors.StripeUnavailableError)
        assert caught.value.code == SAVED_SERVER_ERROR and "replays" in caught.value.message
    world.emu.inject_fault("http_500", "/v1/transfers", method="POST", saved=False)
    with pytest.raises(errors.StripeUnavailableError) as passing:
        world.gateway.create_transfer(amount_minor=100, currency="usd", destination=account_id,
                                      idempotency_key="saved-2")
    assert not isinstance(passing.value, errors.StripeSavedServerError)
    # The SDK's own retries honour Stripe-Should-Retry: false and stop at the first answer.
    patient = world.gateway_with(stripe_max_network_retries=3)
    world.emu.inject_fault("http_500", "/v1/transfers", method="POST")
    with pytest.raises(errors.StripeSavedServerError):
        patient.create_transfer(amount_minor=100, currency="usd", destination=account_id,
                                idempotency_key="saved-3")
    assert world.transfers() == []


def test_a_payout_whose_500_was_saved_is_not_retried_and_goes_to_a_person(
    world: StripeWorld,
) -> None:
    payout_id = _requested(world, "saved-a")
    world.emu.inject_fault("http_500", "/v1/transfers", method="POST")
    row = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                         operator=ADMIN)
    assert row.status == PayoutStatus.UNKNOWN and row.error_code == SAVED_SERVER_ERROR

    with pytest.raises(ConflictError, match="replays it to every retry"):
        execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                       operator=ADMIN)
    assert retry_unsettled(world.session_factory, gateway=world.gateway, operator=ADMIN) == []

    report = _reconcile(world)
    (item,) = report.items
    assert item.kind == SAVED_ERROR and item.payout_id == payout_id
    assert SAVED_ERROR in MISMATCH_KINDS and item not in report.resolved
    assert "A person decides" in item.detail
    assert world.transfers() == []


def test_a_saved_500_whose_transfer_exists_is_settled_by_reconciliation(
    world: StripeWorld,
) -> None:
    payout_id = _requested(world, "saved-b")
    world.emu.inject_fault("http_500", "/v1/transfers", method="POST", phase="after")
    row = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                         operator=ADMIN)
    assert row.status == PayoutStatus.UNKNOWN and row.error_code == SAVED_SERVER_ERROR
    report = _reconcile(world)
    assert [item.kind for item in report.items] == [RESOLVED_PAID]
    assert len(world.transfers()) == 1


def test_an_unsaved_500_is_still_retried_with_the_same_key(world: StripeWorld) -> None:
    payout_id = _requested(world, "saved-c")
    world.emu.inject_fault("http_500", "/v1/transfers", method="POST", saved=False)
    row = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                         operator=ADMIN)
    assert row.status == PayoutStatus.UNKNOWN and row.error_code != SAVED_SERVER_ERROR
    assert [item.kind for item in _reconcile(world).items] == [RETRY_SAME_KEY]
    (retried,) = retry_unsettled(world.session_factory, gateway=world.gateway, operator=ADMIN)
    assert retried.status == PayoutStatus.PAID and len(world.transfers()) == 1
