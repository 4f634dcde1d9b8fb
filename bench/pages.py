"""Benchmark 1 (issues 7, 22): every dashboard page on an empty database, at 1,000 accounts and
at 100,000 (or 1,000,000), against the floor.

``python -m bench.pages [--backend sqlite|postgresql|all] [--small 1000] [--large 100000]
[--repeat 5] [--passes 1]``; ``--accounts 1000 1000000`` (or ``BENCH_PAGES_ACCOUNTS="1000 1000000"`` in the
environment, which ``python -m bench`` passes on) sets both sizes at once: issue 22's run.

For each page of ``dashboard.navigation.PAGES``: the median AppTest script run, logged in as a
user who may see it, default filters, cold (``st.cache_data`` cleared before each run, what a
user meets whenever a cache entry expires) and warm. The floor is the run of a page that only
imports streamlit and writes a title, measured before and after the pages in the same process.
Targets: page@large ≤ 3× the floor, page@large ≤ 1.5× page@small (cold), and (issue 22)
page@large ≤ 2× the same page on an empty database — migrated, no rows, created afresh in the
same run, so it is the page's own fixed cost (imports, queries, widgets) on this machine — and
page@large ≤ 2× the page on its widgets' floor (``bench._widgets_floor``: on an empty database
most pages draw a notice instead of their charts and tables; the widgets' floor draws them all
on a database of a few hundred accounts, and each page's widgets are counted at both sizes so
a floor that draws fewer is named). Beside
each page's time, the time its statements took in the database (info): what could grow with the
data, the rest being rendering. Then
the Streamlit server's peak RSS while a real browser logs in and opens every page at the large
size (target ≤ 300 MB).

The databases come from ``bench.generate`` (10 attempts and 2 payouts per account, the demo's
state mix over a year) and are reused while their recorded sizes, seed and migration head
still match. A 1,000,000-account database takes a while to build the first time (see
``bench.generate``); later runs reuse it.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

from streamlit import config as streamlit_config
from streamlit import logger as streamlit_logger

from bench._pages_apptest import (
    PageFailed,
    PageTiming,
    floor_samples,
    server_like_script_cache,
    time_all_pages,
)
from bench._pages_env import dashboard_environment
from bench._pages_memory import MemoryRunFailed, peak_memory
from bench._widgets_floor import WIDGETS_ACCOUNTS, WIDGETS_DATABASE, build_widgets_floor
from bench.common import Figure, backends, fresh_database, report
from bench.generate import Sizes, ensure_database
from dashboard.navigation import PAGES

logger = logging.getLogger("bench.pages")

BENCHMARK = "pages"
FLOOR_LIMIT = 3.0
GROWTH_LIMIT = 1.5
#: Issue 22: a page at the large size against the same page on an empty database.
EMPTY_LIMIT = 2.0
RSS_LIMIT_MB = 300.0
#: The empty (migrated, no rows) database every page is also timed on.
EMPTY_DATABASE = "accounts_empty"
#: ``runs`` key of the widgets' floor (0 is the empty database, the others account counts).
WIDGETS = -1
#: ``"SMALL LARGE"``: the default of ``--accounts`` (``python -m bench`` passes no sizes).
ACCOUNTS_ENV = "BENCH_PAGES_ACCOUNTS"


def short(count: int) -> str:
    """1000 -> '1k', 100000 -> '100k', 1000000 -> '1M', 20 -> '20'."""
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count >= 1000 and count % 1000 == 0 else str(count)


def database_name(accounts: int) -> str:
    return f"accounts_{accounts}"


def page_figures(backend: str, floor: float, small: int, large: int,
                 at_small: dict[str, PageTiming], at_large: dict[str, PageTiming],
                 at_empty: dict[str, PageTiming], at_widgets: dict[str, PageTiming],
                 widgets_accounts: int = WIDGETS_ACCOUNTS) -> list[Figure]:
    """Per page: cold@large/floor, cold@large/cold@small, cold@large/cold on an empty database,
    cold@large/cold on its widgets' floor (targets), warm@large/floor and the empty database's
    cold run against the floor (info)."""
    figures = []
    s, b = short(small), short(large)
    for spec in PAGES:
        lo, hi, empty = at_small[spec.file], at_large[spec.file], at_empty[spec.file]
        widgets = at_widgets[spec.file]
        fewer = fewer_widgets(widgets, hi)
        details: dict[str, object] = {
            "page": spec.title, "file": spec.file, "small": small, "large": large,
            "floor_ms": round(floor * 1000, 2),
            "cold_empty_ms": round(empty.cold * 1000, 2),
            f"cold_{s}_ms": round(lo.cold * 1000, 2), f"cold_{b}_ms": round(hi.cold * 1000, 2),
            "warm_empty_ms": round(empty.warm * 1000, 2),
            f"warm_{s}_ms": round(lo.warm * 1000, 2), f"warm_{b}_ms": round(hi.warm * 1000, 2),
            "queries_empty": empty.queries, f"queries_{s}": lo.queries,
            f"queries_{b}": hi.queries,
            f"cold_samples_{b}_ms": [round(x * 1000, 1) for x in hi.cold_samples],
            "sql_empty_ms": round(empty.cold_sql * 1000, 2),
            f"sql_{s}_ms": round(lo.cold_sql * 1000, 2), f"sql_{b}_ms": round(hi.cold_sql * 1000, 2),
            "growth_ratio": round(hi.cold / lo.cold, 3),
            "empty_ratio": round(hi.cold / empty.cold, 3),
            "widgets_accounts": widgets_accounts,
            "cold_widgets_ms": round(widgets.cold * 1000, 2),
            "sql_widgets_ms": round(widgets.cold_sql * 1000, 2),
            "widgets_ratio": round(hi.cold / widgets.cold, 3),
            "widgets_drawn": {"empty": empty.widgets, "widgets_floor": widgets.widgets,
                              s: lo.widgets, b: hi.widgets},
        }
        if fewer:
            details["widgets_floor_draws_fewer"] = fewer
        if hi.errors:
            details["errors_shown"] = hi.errors
        figures += [
            Figure(BENCHMARK, f"{spec.title} on an empty database cold / floor",
                   empty.cold * 1000, "ms", "(the page's own floor, info)",
                   ratio=empty.cold / floor, backend=backend, details=details),
            Figure(BENCHMARK, f"{spec.title} @{b} / empty database cold", hi.cold * 1000, "ms",
                   f"<= {EMPTY_LIMIT:g}x page on empty db", ratio=hi.cold / empty.cold,
                   limit=EMPTY_LIMIT, backend=backend, details=details),
            Figure(BENCHMARK, f"{spec.title} @{b} / its widgets' floor cold", hi.cold * 1000,
                   "ms", f"<= {EMPTY_LIMIT:g}x page with its widgets drawn on "
                   f"{widgets_accounts} accounts" + (
                       f" (the floor draws fewer: {fewer})" if fewer else ""),
                   ratio=hi.cold / widgets.cold, limit=EMPTY_LIMIT, backend=backend,
                   details=details),
            Figure(BENCHMARK, f"{spec.title} @{b} cold / floor", hi.cold * 1000, "ms",
                   f"<= {FLOOR_LIMIT:g}x floor", ratio=hi.cold / floor, limit=FLOOR_LIMIT,
                   backend=backend, details=details),
            Figure(BENCHMARK, f"{spec.title} @{b} / @{s} cold", hi.cold * 1000, "ms",
                   f"<= {GROWTH_LIMIT:g}x page @{s}", ratio=hi.cold / lo.cold,
                   limit=GROWTH_LIMIT, backend=backend, details=details),
            Figure(BENCHMARK, f"{spec.title} database time @{b} / @{s} cold",
                   hi.cold_sql * 1000, "ms", "(the queries' share of the page, info)",
                   ratio=hi.cold_sql / lo.cold_sql if lo.cold_sql else None, backend=backend,
                   details=details),
            Figure(BENCHMARK, f"{spec.title} @{b} warm / floor", hi.warm * 1000, "ms",
                   "(warm: cached reads, info)", ratio=hi.warm / floor, backend=backend,
                   details=details),
        ]
    return figures


def fewer_widgets(floor: PageTiming, large: PageTiming) -> dict[str, list[int]]:
    """Each widget kind the floor drew fewer of than the large size: ``{kind: [floor, large]}``
    (a floor that leaves a widget out is cheaper than the page's own, and must say so)."""
    return {kind: [floor.widgets.get(kind, 0), count] for kind, count in large.widgets.items()
            if floor.widgets.get(kind, 0) < count}


def merged(runs: list[PageTiming]) -> PageTiming:
    """One page's passes as one timing: medians over every pass's samples."""
    cold = [x for run in runs for x in run.cold_samples]
    warm = [x for run in runs for x in run.warm_samples]
    return PageTiming(cold=statistics.median(cold), warm=statistics.median(warm),
                      cold_samples=cold, warm_samples=warm, queries=runs[0].queries,
                      errors=[e for run in runs for e in run.errors],
                      cold_sql=statistics.median(run.cold_sql for run in runs),
                      widgets=runs[0].widgets)


def run_backend(backend: str, *, small: int, large: int, repeat: int, seed: int,
                memory: bool, passes: int = 1,
                widgets_accounts: int = WIDGETS_ACCOUNTS) -> list[Figure]:
    """Every figure of this benchmark on one backend."""
    urls = {size: ensure_database(backend, database_name(size), Sizes.scaled(size), seed=seed,
                                  log=logger.info)
            for size in (small, large)}
    with fresh_database(backend, EMPTY_DATABASE) as empty_url:
        urls[0] = empty_url
    with fresh_database(backend, WIDGETS_DATABASE) as widgets_url:
        build_widgets_floor(widgets_url, seed=seed, accounts=widgets_accounts)
        urls[WIDGETS] = widgets_url
    runs: dict[int, list[dict[str, PageTiming]]] = {0: [], WIDGETS: [], small: [], large: []}
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as workdir, \
            server_like_script_cache():
        floors = floor_samples(repeat=repeat)
        # Each pass times every size in turn: the machine's drift over a run falls on every
        # size alike instead of on whichever ran last.
        for number in range(passes):
            for size in (0, WIDGETS, small, large):
                what = ("empty database (no rows)" if size == 0 else
                        f"widgets' floor ({widgets_accounts:,} accounts)" if size == WIDGETS
                        else f"{size:,} accounts")
                logger.info("%s, %s (pass %d of %d):", backend, what, number + 1, passes)
                with dashboard_environment(urls[size], Path(workdir)):
                    runs[size].append(time_all_pages(repeat=repeat, progress=logger.info))
        floors += floor_samples(repeat=repeat)
    timings = {size: {page: merged([run[page] for run in passes_of])
                      for page in passes_of[0]}
               for size, passes_of in runs.items()}
    floor = statistics.median(floors)
    logger.info("%s floor (empty page): %.1f ms", backend, floor * 1000)
    figures = [Figure(BENCHMARK, "empty page (framework floor)", floor * 1000, "ms",
                      "the floor", backend=backend,
                      details={"samples_ms": [round(x * 1000, 2) for x in floors]})]
    figures += page_figures(backend, floor, small, large, timings[small], timings[large],
                            timings[0], timings[WIDGETS], widgets_accounts)
    if memory:
        logger.info("%s, server memory at %s accounts (browser visit of every page):",
                    backend, f"{large:,}")
        result = peak_memory(urls[large], progress=logger.info)
        figures.append(Figure(
            BENCHMARK, f"server peak RSS @{short(large)}", result.peak_rss_mb, "MB",
            f"<= {RSS_LIMIT_MB:g} MB", ratio=result.peak_rss_mb / RSS_LIMIT_MB, limit=1.0,
            backend=backend, details={"rss_after_login_mb": round(result.rss_after_login_mb, 1),
                                      "pages_visited": result.pages_visited}))
    return figures


def _accounts_from_env() -> list[int] | None:
    """``BENCH_PAGES_ACCOUNTS="1000 1000000"`` as [1000, 1000000]; None when unset."""
    raw = os.environ.get(ACCOUNTS_ENV, "").replace(",", " ").split()
    if not raw:
        return None
    try:
        sizes = [int(value) for value in raw]
    except ValueError:
        raise SystemExit(f"{ACCOUNTS_ENV} must be two account counts, e.g. '1000 1000000'") \
            from None
    if len(sizes) != 2:
        raise SystemExit(f"{ACCOUNTS_ENV} must be two account counts, e.g. '1000 1000000'")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all",
                        help="all = SQLite, and PostgreSQL when TEST_DATABASE_URL is set")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        default=_accounts_from_env(),
                        help="both sizes at once, e.g. 1000 1000000 (issue 22); default from "
                             f"${ACCOUNTS_ENV}, else --small and --large")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--passes", type=int, default=1,
                        help="time every size this many times in turn and merge the samples")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--widgets-accounts", type=int, default=WIDGETS_ACCOUNTS,
                        help="accounts in the widgets' floor database (issue 22)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the browser run that measures the server's peak memory")
    args = parser.parse_args(argv)
    if args.accounts:
        args.small, args.large = args.accounts
    if not 0 < args.small < args.large or args.repeat < 1 or args.passes < 1 \
            or args.widgets_accounts < 1:
        parser.error("need 0 < --small < --large, --repeat >= 1, --passes >= 1 and "
                     "--widgets-accounts >= 1")
    logging.basicConfig(level=logging.INFO, format="pages: %(message)s", stream=sys.stderr)
    # The dashboard's context sets the root level from LOG_LEVEL: keep this one's progress.
    logger.setLevel(logging.INFO)
    for noisy in ("lib", "alembic", "bench.generate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # AppTest outside a server warns on every cache clear ("No runtime found"): not news here.
    os.environ["STREAMLIT_LOGGER_LEVEL"] = "error"
    streamlit_config.get_config_options(force_reparse=True)
    streamlit_logger.set_log_level("error")
    chosen = backends() if args.backend == "all" else [args.backend]
    figures: list[Figure] = []
    try:
        for backend in chosen:
            figures += run_backend(backend, small=args.small, large=args.large,
                                   repeat=args.repeat, seed=args.seed, memory=args.memory,
                                   passes=args.passes,
                                   widgets_accounts=args.widgets_accounts)
    except (PageFailed, MemoryRunFailed) as exc:
        if figures:
            report(figures)
        sys.stderr.write(f"pages: {exc}\n")
        return 1
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
