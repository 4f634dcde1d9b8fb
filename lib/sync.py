"""Backfill and refresh the connected-account mirror from Stripe.

Safe while webhooks arrive: every upsert carries the time its page was fetched and the mirror
refuses older data. Rate limits (429, including ``lock_timeout``) back off and retry the same
page; other Stripe errors stop the run with what was done so far reported.

``python -m lib.sync`` runs a full sync (for a scheduler) and marks connection attempts pending
for over a day as abandoned (so the success-rate metrics count them); ``--account acct_…``
refreshes one account.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.accounts import upsert_account, upsert_accounts
from lib.connection_attempts import abandon_stale_attempts
from lib.db import make_engine, make_session_factory, utcnow
from lib.errors import ConfigurationError, ConnectOpsError, StripeRateLimitError
from lib.logging_setup import configure_logging
from lib.roles import Action, Operator, Role, authorize
from lib.settings import load_settings
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, bool], None]
"""Called after each page with (accounts synced so far, whether more pages follow)."""

#: The command-line sync acts as this system operator (it is what a scheduler runs).
SYSTEM_OPERATOR = Operator(username="system:sync", roles=frozenset({Role.ADMIN}))


@dataclass(frozen=True, slots=True)
class SyncReport:
    synced: int
    skipped_stale: int
    pages: int
    rate_limited: int
    seconds: float


def sync_all_accounts(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    progress: ProgressCallback | None = None, page_size: int = 100, max_backoff: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncReport:
    """Page through every connected account (``limit`` = ``page_size``) and upsert the mirror."""
    authorize(operator, Action.SYNC_ACCOUNTS, session=session_factory)
    started = time.monotonic()
    synced = stale = pages = limited = 0
    cursor: str | None = None
    backoff = 1.0
    while True:
        fetched_at = utcnow()
        try:
            accounts, has_more = gateway.list_accounts_page(starting_after=cursor, limit=page_size)
        except StripeRateLimitError:
            limited += 1
            logger.info("sync: rate limited, waiting %.1fs", backoff)
            sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
            continue
        backoff = 1.0
        pages += 1
        with session_factory.begin() as session:
            written = upsert_accounts(session, accounts=accounts, fetched_at=fetched_at)
        synced += written
        stale += len(accounts) - written
        if progress is not None:
            progress(synced + stale, has_more)
        if not has_more or not accounts:
            break
        cursor = str(accounts[-1]["id"])
    report = SyncReport(synced, stale, pages, limited, round(time.monotonic() - started, 3))
    with session_factory.begin() as session:
        audit.record(session, actor=operator, action="sync.all_accounts", result="ok",
                     input={"synced": synced, "skipped_stale": stale, "pages": pages})
    return report


def refresh_account(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    account_id: str,
) -> bool:
    """Re-read one account from Stripe into the mirror."""
    authorize(operator, Action.REFRESH_ACCOUNT, session=session_factory)
    fetched_at = utcnow()
    result = gateway.retrieve_account(account_id)
    with session_factory.begin() as session:
        written = upsert_account(session, account=result.data, fetched_at=fetched_at)
        audit.record(session, actor=operator, action="sync.refresh_account", result="ok",
                     target=account_id, stripe_request_id=result.request_id)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.sync", description=__doc__)
    parser.add_argument("--account", help="refresh only this account (acct_…)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings().require("STRIPE_SECRET_KEY")
    except ConfigurationError as exc:
        sys.stderr.write(f"connect-ops sync: {exc}\n")
        return 2
    configure_logging(settings.log_level)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    gateway = StripeGateway(settings)
    try:
        if args.account:
            refresh_account(factory, gateway=gateway, operator=SYSTEM_OPERATOR,
                            account_id=args.account)
            logger.info("refreshed %s", args.account)
        else:
            report = sync_all_accounts(
                factory, gateway=gateway, operator=SYSTEM_OPERATOR,
                progress=lambda n, more: logger.info("synced %d accounts%s", n,
                                                      "…" if more else ""),
            )
            logger.info("sync done: %s", report)
            with factory.begin() as session:
                abandoned = abandon_stale_attempts(session)
            logger.info("%d connection attempts marked abandoned", abandoned)
    except ConnectOpsError as exc:
        sys.stderr.write(f"connect-ops sync: {exc}\n")
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
