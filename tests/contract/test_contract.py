"""The contract suite: every scenario of ``scenarios.py`` against the emulator and against Stripe.

The emulator run is part of the normal suite. The ``stripe_live`` run uses Stripe's test mode
and is opt-in::

    STRIPE_LIVE_TEST_SECRET_KEY=sk_test_… .venv/bin/python -m pytest -m stripe_live tests/contract

Without the key it is collected and skipped, saying why; a live-mode key (``sk_live_…``) is
refused outright. Optional: ``STRIPE_LIVE_PLATFORM_COUNTRY`` (the platform's country, default
US), ``STRIPE_LIVE_CURRENCY`` (default usd), ``STRIPE_LIVE_CONNECT_CLIENT_ID`` (the test-mode
``ca_…`` id, for the OAuth error scenario) and ``STRIPE_LIVE_TEST_DESTINATION`` (an onboarded
test-mode connected account with ``transfers`` active, for the transfer and reversal scenarios;
they are skipped without it). Accounts the scenarios create are deleted afterwards.

The variables are read when this module is imported: the suite's autouse fixture hides every
``STRIPE_*`` variable from the tests themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import stripe

from emulator.testing import EmulatorHandle, stripe_client
from lib.stripe_gateway import STRIPE_API_VERSION, StripeGateway
from tests.contract.scenarios import SCENARIOS, ContractTarget
from tests.factories import make_settings

LIVE_KEY = os.environ.get("STRIPE_LIVE_TEST_SECRET_KEY") or None
LIVE_COUNTRY = (os.environ.get("STRIPE_LIVE_PLATFORM_COUNTRY") or "US").upper()
LIVE_CURRENCY = (os.environ.get("STRIPE_LIVE_CURRENCY") or "usd").lower()
LIVE_CLIENT_ID = os.environ.get("STRIPE_LIVE_CONNECT_CLIENT_ID") or None
LIVE_DESTINATION = os.environ.get("STRIPE_LIVE_TEST_DESTINATION") or None

NO_KEY = ("stripe_live: set STRIPE_LIVE_TEST_SECRET_KEY=sk_test_… (a test-mode secret key of a "
          "Connect platform) to run the contract scenarios against Stripe; see README.md → Tests")


def live_key(value: str | None) -> str:
    """The test-mode key to run against Stripe with; skip without one, refuse a live key."""
    if not value:
        pytest.skip(NO_KEY)
    if value.startswith(("sk_live_", "rk_live_")):
        pytest.fail("STRIPE_LIVE_TEST_SECRET_KEY is a live-mode key: the contract suite creates "
                    "and deletes accounts and moves money, so it only runs in test mode "
                    "(sk_test_…).", pytrace=False)
    if not value.startswith(("sk_test_", "rk_test_")):
        pytest.fail("STRIPE_LIVE_TEST_SECRET_KEY does not look like a Stripe test-mode secret "
                    "key (sk_test_…).", pytrace=False)
    return value


def _emulator_target(emulator: EmulatorHandle) -> ContractTarget:
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url)
    gateway = StripeGateway(settings)
    raw = stripe_client(emulator.base_url)

    def payable_account() -> str:
        account = gateway.create_express_account(
            email="payee@example.com", country=settings.stripe_platform_country, metadata={},
            idempotency_key=f"contract-payee-{emulator.state()['counts']['accounts']}")
        emulator.set_account(account.id, onboarding="complete")
        return account.id

    return ContractTarget(
        name="emulator", gateway=gateway, platform_country=settings.stripe_platform_country,
        currency="usd", fund=lambda amount: emulator.set_balance(amount, "usd", mode="add"),
        payable_account=payable_account, delete_account=lambda a: raw.v1.accounts.delete(a),
    )


def _live_target(key: str) -> ContractTarget:
    settings = make_settings(stripe_secret_key=key, stripe_api_base=None,
                             stripe_connect_base=None,
                             stripe_connect_client_id=LIVE_CLIENT_ID or "ca_notconfigured",
                             stripe_platform_country=LIVE_COUNTRY,
                             stripe_max_network_retries=2, stripe_timeout_seconds=30)
    raw = stripe.StripeClient(key, stripe_version=STRIPE_API_VERSION, max_network_retries=2)

    def fund(amount: int) -> None:
        # Test mode's tok_bypassPending charge lands in the available balance at once.
        raw.v1.charges.create(params={"amount": amount, "currency": LIVE_CURRENCY,
                                      "source": "tok_bypassPending",
                                      "description": "connect-ops contract suite"})

    def payable_account() -> str:
        if not LIVE_DESTINATION:
            pytest.skip("set STRIPE_LIVE_TEST_DESTINATION=acct_… (an onboarded test-mode "
                        "connected account with transfers active) for the money scenarios")
        return LIVE_DESTINATION

    return ContractTarget(
        name="stripe_live", gateway=StripeGateway(settings), platform_country=LIVE_COUNTRY,
        currency=LIVE_CURRENCY, fund=fund, payable_account=payable_account,
        delete_account=lambda a: raw.v1.accounts.delete(a), has_client_id=bool(LIVE_CLIENT_ID),
    )


@pytest.fixture(params=[pytest.param("emulator", id="emulator"),
                        pytest.param("stripe_live", id="stripe_live",
                                     marks=pytest.mark.stripe_live)])
def target(request: pytest.FixtureRequest) -> Iterator[ContractTarget]:
    if request.param == "emulator":
        built = _emulator_target(request.getfixturevalue("emulator"))
    else:
        built = _live_target(live_key(LIVE_KEY))
    try:
        yield built
    finally:
        built.cleanup()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_contract(target: ContractTarget, scenario: Callable[[ContractTarget], None]) -> None:
    scenario(target)


def test_the_live_run_needs_a_test_mode_key() -> None:
    """Skipped with the reason without a key; a live or malformed key is refused, not used."""
    with pytest.raises(pytest.skip.Exception, match="STRIPE_LIVE_TEST_SECRET_KEY"):
        live_key(None)
    for refused in ("sk_live_" + "x" * 24, "rk_live_" + "x" * 24, "pk_test_" + "x" * 24):
        with pytest.raises(pytest.fail.Exception):
            live_key(refused)
    assert live_key("sk_test_" + "x" * 24).startswith("sk_test_")
