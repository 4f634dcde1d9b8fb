"""Backfill and refresh the connected-account mirror from Stripe.

Safe while webhooks arrive: every upsert carries the time its page was fetched and the mirror
refuses older data.

A full sync reads the next page from Stripe while it writes the current one: one helper thread
only fetches (it never touches the database, and it is the only one using the gateway during the
sync); this thread writes, reports progress and decides about retries. A page is written only
after the previous one, so what a sync has written is always a prefix of Stripe's list.

Rate limits (429, including ``lock_timeout``) back off exponentially and retry the same page, at
most ``max_attempts`` times per page, waiting at least what ``Retry-After`` asks and not at all
when Stripe says ``Stripe-Should-Retry: false``; then the sync stops with
:class:`SyncRateLimitedError`, which says what was synced so far (kept: a rerun resumes cheaply,
older data never overwrites newer). Other Stripe errors stop the run as they are.

``python -m lib.sync`` runs a full sync (for a scheduler) and marks connection attempts pending
for over a day as abandoned (so the success-rate metrics count them); ``--account acct_…``
refreshes one account.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.accounts import upsert_account, upsert_accounts
from lib.cli import CommandContext, run_command
from lib.connection_attempts import abandon_stale_attempts
from lib.db import utcnow
from lib.errors import StripeRateLimitError
from lib.roles import Action, Operator, Role, authorize_in
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, bool], None]
"""Called after each page with (accounts synced so far, whether more pages follow)."""

#: The command-line sync acts as this system operator (it is what a scheduler runs).
SYSTEM_OPERATOR = Operator(username="system:sync", roles=frozenset({Role.ADMIN}))

#: Attempts per page when Stripe answers 429 (the first try included).
MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class SyncReport:
    synced: int
    skipped_stale: int
    pages: int
    rate_limited: int
    seconds: float


class SyncRateLimitedError(StripeRateLimitError):
    """Stripe kept answering 429 for one page; the pages before it are synced and kept."""

    def __init__(self, message: str, *, report: SyncReport, resume_after: str | None,
                 cause: StripeRateLimitError) -> None:
        super().__init__(message, stripe_code=cause.stripe_code, request_id=cause.request_id,
                         http_status=cause.http_status, param=cause.param)
        self.report = report
        self.resume_after = resume_after


def jittered_sleep(seconds: float) -> None:
    """Sleep 100–150 % of ``seconds``: never sooner than asked, and not in step with others."""
    time.sleep(seconds * random.uniform(1.0, 1.5))  # spreads retries; not a secret


@dataclass(frozen=True, slots=True)
class _Page:
    accounts: list[dict[str, Any]]
    has_more: bool
    fetched_at: datetime


def _fetch(gateway: StripeGateway, cursor: str | None, page_size: int) -> _Page:
    fetched_at = utcnow()  # before the request: the page is at least this fresh
    accounts, has_more = gateway.list_accounts_page(starting_after=cursor, limit=page_size)
    return _Page(accounts, has_more, fetched_at)


def sync_all_accounts(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    progress: ProgressCallback | None = None, page_size: int = 100, max_backoff: float = 30.0,
    max_attempts: int = MAX_ATTEMPTS, sleep: Callable[[float], None] = jittered_sleep,
) -> SyncReport:
    """Page through every connected account (``limit`` = ``page_size``) and upsert the mirror.

    ``sleep`` gets each backoff (1 s, 2 s, 4 s … up to ``max_backoff``, or ``Retry-After`` when
    longer); the default adds jitter.
    """
    authorize_in(factory, operator, Action.SYNC_ACCOUNTS)
    started = time.monotonic()
    synced = stale = pages = limited = 0
    cursor: str | None = None

    def report() -> SyncReport:
        return SyncReport(synced, stale, pages, limited, round(time.monotonic() - started, 3))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-fetch") as fetcher:

        def fetch(after: str | None) -> Future[_Page]:
            return fetcher.submit(_fetch, gateway, after, page_size)

        pending: Future[_Page] | None = fetch(None)
        while pending is not None:
            backoff = 1.0
            attempt = 1
            while True:
                try:
                    page = pending.result()
                    break
                except StripeRateLimitError as exc:
                    limited += 1
                    should_retry = getattr(exc, "should_retry", None)
                    if attempt >= max_attempts or should_retry is False:
                        error = _gave_up(exc, report(), cursor, attempt, should_retry)
                        audit.record_now(
                            factory, actor=operator, action="sync.all_accounts",
                            result=f"failed:{error.code}", detail=error.message,
                            input={"synced": synced, "skipped_stale": stale, "pages": pages,
                                   "resume_after": cursor, "attempts": attempt},
                            stripe_request_id=exc.request_id)
                        raise error from None
                    wait = min(max(backoff, getattr(exc, "retry_after", None) or 0.0),
                               max_backoff)
                    logger.info("sync: rate limited (%s), attempt %d of %d, waiting %.1fs",
                                exc.stripe_code, attempt, max_attempts, wait)
                    sleep(wait)
                    backoff = min(backoff * 2, max_backoff)
                    attempt += 1
                    pending = fetch(cursor)
            pages += 1
            # Ask for the next page before writing this one: Stripe answers while we write.
            more = page.has_more and bool(page.accounts)
            next_cursor = str(page.accounts[-1]["id"]) if more else None
            pending = fetch(next_cursor) if more else None
            with factory.begin() as session:
                written = upsert_accounts(session, accounts=page.accounts,
                                          fetched_at=page.fetched_at)
            synced += written
            stale += len(page.accounts) - written
            cursor = next_cursor
            if progress is not None:
                progress(synced + stale, more)
    final = report()
    with factory.begin() as session:
        audit.record(session, actor=operator, action="sync.all_accounts", result="ok",
                     input={"synced": synced, "skipped_stale": stale, "pages": pages})
    return final


def _gave_up(exc: StripeRateLimitError, report: SyncReport, cursor: str | None, attempts: int,
             should_retry: bool | None) -> SyncRateLimitedError:
    why = ("Stripe asked us not to retry" if should_retry is False
           else f"still refused after {attempts} attempts")
    where = f"the page after {cursor}" if cursor else "the first page"
    logger.warning("sync: gave up on %s (%s, %s); %d synced in %d pages", where,
                   exc.stripe_code, why, report.synced + report.skipped_stale, report.pages)
    return SyncRateLimitedError(
        f"Sync stopped: Stripe is rate limiting the account list ({exc.stripe_code or '429'}; "
        f"{why} for {where}). {report.synced + report.skipped_stale} account(s) in "
        f"{report.pages} page(s) were synced before it and are kept "
        f"({report.skipped_stale} already had newer data); run the sync again later.",
        report=report, resume_after=cursor, cause=exc,
    )


def refresh_account(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    account_id: str,
) -> bool:
    """Re-read one account from Stripe into the mirror."""
    authorize_in(factory, operator, Action.REFRESH_ACCOUNT)
    fetched_at = utcnow()
    result = gateway.retrieve_account(account_id)
    with factory.begin() as session:
        written = upsert_account(session, account=result.data, fetched_at=fetched_at)
        audit.record(session, actor=operator, action="sync.refresh_account", result="ok",
                     target=account_id, stripe_request_id=result.request_id)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.sync", description=__doc__)
    parser.add_argument("--account", help="refresh only this account (acct_…)")
    args = parser.parse_args(argv)
    return run_command("connect-ops sync", lambda cli: _run(cli, args.account),
                       require=("STRIPE_SECRET_KEY",))


def _run(cli: CommandContext, account_id: str | None) -> int:
    factory, gateway = cli.factory, cli.gateway
    if account_id:
        refresh_account(factory, gateway=gateway, operator=SYSTEM_OPERATOR,
                        account_id=account_id)
        logger.info("refreshed %s", account_id)
        return 0
    report = sync_all_accounts(
        factory, gateway=gateway, operator=SYSTEM_OPERATOR,
        progress=lambda n, more: logger.info("synced %d accounts%s", n, "…" if more else ""),
    )
    logger.info("sync done: %s", report)
    with factory.begin() as session:
        abandoned = abandon_stale_attempts(session)
    logger.info("%d connection attempts marked abandoned", abandoned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
