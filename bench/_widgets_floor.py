"""Issue 22's "its own widgets' floor": each page with every widget it draws, on almost no data.

On an empty database most pages draw a one-line notice ("No connection attempts yet") instead
of their charts and tables, so the empty database's time is not what the target's parenthesis
names: "its own widgets' floor". This database is: the generator's own mix at
:data:`WIDGETS_ACCOUNTS` accounts (a year of attempts, payouts, events and audit entries), plus
the rows a mix that small does not reach (:func:`plant_rarities`: a payout only a person can
settle). Each page's timing records the widgets it drew (``PageTiming.widgets``); a page that
draws fewer of any kind here than at the large size is named in the results, so a floor that
leaves a widget out cannot pass unnoticed.

It is created afresh in every run (seconds), at the run's own "now", like the empty database.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bench.generate import CURRENCIES, Sizes, build
from lib.db import make_engine, make_session_factory, utcnow
from lib.models import Freelancer, Payout

WIDGETS_DATABASE = "accounts_widgets"
#: Enough for every status, method and currency of the generator's mix to appear somewhere.
WIDGETS_ACCOUNTS = 200


def plant_rarities(url: str) -> None:
    """What a mix of :data:`WIDGETS_ACCOUNTS` accounts may not reach: a payout first sent two
    days ago with no known outcome (the Reconciliation page's "needs a person's decision"
    table: about one in 12,000 of the generator's payouts), and a payout waiting to be sent in
    every currency (one Funding tile each)."""
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        with factory.begin() as session:
            # A connected freelancer when there is one (a handful of accounts may have none).
            freelancer = session.scalars(select(Freelancer).order_by(
                Freelancer.stripe_account_id.is_(None), Freelancer.id)).first()
            assert freelancer is not None, "the generator made no freelancer"
            sent = utcnow() - timedelta(days=2)
            session.add(Payout(
                freelancer_id=freelancer.id, stripe_account_id=freelancer.stripe_account_id,
                amount_minor=4_200, currency="usd", description="Lost answer",
                status="unknown", error_code="stripe_connection_error",
                idempotency_key="widgets-floor-unknown-1", requested_by="bench",
                created_at=sent, submitted_at=sent, updated_at=sent))
            for currency in CURRENCIES:
                session.add(Payout(
                    freelancer_id=freelancer.id, amount_minor=1_000, currency=currency,
                    stripe_account_id=freelancer.stripe_account_id, status="pending",
                    description="Waiting to be sent", requested_by="bench",
                    idempotency_key=f"widgets-floor-pending-{currency}"))
    finally:
        engine.dispose()


def build_widgets_floor(url: str, *, seed: int, accounts: int = WIDGETS_ACCOUNTS) -> None:
    """Fill the empty, migrated database at ``url`` (see the module's docstring)."""
    build(url, Sizes.scaled(accounts), seed=seed)
    plant_rarities(url)
