"""The summaries' upkeep as the worker runs it, and the operator's commands.

- ``summaries_compact`` (every minute): PostgreSQL's deltas folded into the counts, so a page
  reads about one row per key.
- ``summaries_check`` (daily): every summary against a full recount of one snapshot, the result
  stored (:class:`~lib.models.SummaryCheck`); a difference opens the "Summaries differ from a
  recount" alert (``lib.alerts``). Nothing is repaired silently: ``python -m lib.summaries
  rebuild`` does that, on a person's decision, and the next check records it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.jobs import Job, JobContext, register_job
from lib.models import SummaryCheck
from lib.summaries import maintenance

logger = logging.getLogger(__name__)

COMPACT_EVERY = timedelta(minutes=1)
CHECK_EVERY = timedelta(days=1)


def run_check(factory: sessionmaker[Session]) -> SummaryCheck:
    """Compare in one snapshot, then store the result (a second, short transaction)."""
    with factory() as session:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            # The source rows, counts and deltas of one snapshot agree exactly (the triggers
            # write in the row's own transaction), whatever commits meanwhile.
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        result = maintenance.check(session)
    record = SummaryCheck(
        mismatches=len(result.differences),
        details={"keys_compared": result.keys_compared,
                 "differences": [d.to_dict() for d in
                                 result.differences[:maintenance.MAX_REPORTED]]})
    with factory.begin() as session:
        session.add(record)
    if result.differences:
        logger.error("summaries differ from a recount in %d place(s); first: %s",
                     len(result.differences), result.differences[0].to_dict())
    return record


def run_rebuild(factory: sessionmaker[Session]) -> int:
    with factory.begin() as session:
        rows = maintenance.rebuild(session)
        session.add(SummaryCheck(mismatches=0, repaired=True,
                                 details={"rebuilt_rows": rows}))
    return rows


def latest_check(session: Session) -> SummaryCheck | None:
    return session.scalar(select(SummaryCheck).order_by(SummaryCheck.checked_at.desc(),
                                                        SummaryCheck.id.desc()).limit(1))


def _compact(ctx: JobContext) -> str:
    with ctx.session_factory.begin() as session:
        moved = maintenance.compact(session)
    return f"folded {moved} summary delta(s) into the counts"


def _check(ctx: JobContext) -> str:
    record = run_check(ctx.session_factory)
    if record.mismatches:
        return (f"{record.mismatches} summary value(s) differ from a recount (check "
                f"#{record.id}): alert opened; run python -m lib.summaries rebuild")
    return f"summaries equal a recount ({record.details.get('keys_compared', 0)} keys)"


register_job(lambda settings: Job(
    "summaries_compact", COMPACT_EVERY, _compact,
    "Fold the summaries' pending changes into their counts (PostgreSQL)."))
register_job(lambda settings: Job(
    "summaries_check", CHECK_EVERY, _check,
    "Compare every dashboard summary with a full recount; a difference is an alert."))
