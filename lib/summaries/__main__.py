"""``python -m lib.summaries check|rebuild|compact``: the summaries' upkeep by hand.

- ``check``: compare every summary with a full recount; exit 1 when they differ (the
  differences are logged and stored, and the alert rule sees them).
- ``rebuild``: recompute every summary from the tables (after a bulk load, or to repair what
  a check found); writers wait while it runs.
- ``compact``: fold PostgreSQL's pending deltas into the counts now.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from lib.db import make_engine, make_session_factory
from lib.logging_setup import configure_logging
from lib.settings import load_settings
from lib.summaries import maintenance
from lib.summaries.runs import run_check, run_rebuild

logger = logging.getLogger("lib.summaries")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.summaries", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("check", "rebuild", "compact"))
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    try:
        return _run(args.command, factory)
    except (OperationalError, ProgrammingError) as exc:
        # A database that is not migrated (or not reachable): say so, without the SQL.
        sys.stderr.write(f"connect-ops summaries: the database could not be read "
                         f"({type(exc.orig).__name__}); run python -m lib.migrate first.\n")
        return 2
    finally:
        engine.dispose()


def _run(command: str, factory: sessionmaker[Session]) -> int:
    if command == "check":
        record = run_check(factory)
        logger.info("check #%s: %d difference(s) over %s key(s)", record.id,
                    record.mismatches, record.details.get("keys_compared"))
        return 1 if record.mismatches else 0
    if command == "rebuild":
        logger.info("summaries rebuilt: %d row(s)", run_rebuild(factory))
        return 0
    with factory.begin() as session:
        logger.info("folded %d delta(s)", maintenance.compact(session))
    return 0


if __name__ == "__main__":
    sys.exit(main())
