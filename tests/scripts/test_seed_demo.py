"""The demo seed on Stripe's real rules (issue 16): freelancers abroad connect and get paid.

The seed creates every Express account through the product's gateway against the emulator,
which refuses what Stripe refuses: accounts in the platform's country take the full agreement,
the others the recipient agreement, and both end up with paid payouts.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.accounts import get_account
from lib.models import Freelancer, Payout, PayoutStatus
from scripts import seed_demo
from tests.factories import make_settings


@pytest.mark.parametrize("platform", ["US", "GB"])
def test_the_seed_connects_and_pays_freelancers_here_and_abroad(
    emulator, database_url: str, session_factory: sessionmaker[Session], platform: str,
) -> None:
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url, database_url=database_url,
                             stripe_platform_country=platform)
    emulator.configure(backend_url=settings.backend_url, platform_country=platform)
    try:
        assert seed_demo.seed(settings) is True
    finally:
        emulator.configure(platform_country="US")

    with session_factory() as session:
        freelancers = list(session.scalars(select(Freelancer)))
        paid = {p.freelancer_id for p in session.scalars(
            select(Payout).where(Payout.status == PayoutStatus.PAID.value))}
        agreements: dict[str, set[str]] = {"home": set(), "abroad": set()}
        paid_abroad = 0
        for freelancer in freelancers:
            if not freelancer.stripe_account_id:
                continue
            mirror = get_account(session, stripe_id=freelancer.stripe_account_id)
            assert mirror is not None
            if mirror.type != "express":
                continue  # Standard accounts connected through OAuth
            side = "home" if mirror.country == platform else "abroad"
            agreements[side].add(mirror.raw["tos_acceptance"]["service_agreement"])
            if side == "abroad":
                assert mirror.raw["charges_enabled"] is False
                assert "card_payments" not in mirror.raw["capabilities"]
                paid_abroad += freelancer.id in paid
    assert agreements == {"home": {"full"}, "abroad": {"recipient"}}
    assert paid_abroad > 0
    assert {f.country for f in freelancers} - {platform}


def test_the_seed_shows_every_kind_of_reversal(emulator, database_url: str,
                                               session_factory: sessionmaker[Session]) -> None:
    """The Reversals page has something to show: made ones and one awaiting a second person."""
    from lib.models import PayoutReversal

    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url, database_url=database_url)
    emulator.configure(backend_url=settings.backend_url)
    assert seed_demo.seed(settings) is True
    with session_factory() as session:
        statuses = sorted(r.status for r in session.scalars(select(PayoutReversal)))
    assert statuses == ["pending_approval", "succeeded", "succeeded"]
