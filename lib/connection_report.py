"""The Connection metrics page's series for one range and grain, read together (issue 22).

Each series is a summary read (``lib.connection_metrics``, ``lib.connection_timing``); here
they go to the database as one statement, with the funnel's (or, for a range ending before the
newest attempt, its scan of that range's attempts). Two statements for the whole page where
each series alone was one: the per-statement cost was a sixth of the page at 1M.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from lib.connection_metrics import (
    DateRange,
    DurationBucket,
    FunnelStage,
    Grain,
    RatePoint,
    ReasonPoint,
    durations_ask,
    durations_from,
    funnel_asks,
    funnel_by_scan,
    funnel_from,
    funnel_from_summaries,
    rates_ask,
    rates_from,
    reasons_ask,
    reasons_from,
)
from lib.connection_timing import ConnectTiming, timing_ask, timing_from
from lib.roles import Action, Operator, authorize
from lib.summaries.store import read_many


@dataclass(frozen=True)
class ConnectionReport:
    """Every series of the Connection metrics page for one range and grain."""

    rates: list[RatePoint]
    funnel: list[FunnelStage]
    reasons: list[ReasonPoint]
    durations: list[DurationBucket]
    timing: ConnectTiming


def connection_report(session: Session, *, operator: Operator, period: DateRange,
                      grain: Grain) -> ConnectionReport:
    """The same series as the functions it reads through, called one by one."""
    authorize(operator, Action.VIEW_METRICS, session=session)
    summarised = funnel_from_summaries(session, period)
    asks = [rates_ask(period, grain), reasons_ask(period, grain), durations_ask(period),
            timing_ask(period)]
    found = read_many(session, asks + (funnel_asks(period) if summarised else []))
    return ConnectionReport(
        rates=rates_from(found["rates"], grain),
        funnel=funnel_from(found) if summarised else funnel_by_scan(session, period),
        reasons=reasons_from(found["reasons"], grain),
        durations=durations_from(found["durations"]),
        timing=timing_from(found["timing"]),
    )
