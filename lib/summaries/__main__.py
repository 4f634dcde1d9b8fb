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

from lib.cli import EXIT_CONFIGURATION, CommandContext, run_command, say
from lib.summaries import maintenance
from lib.summaries.runs import run_check, run_rebuild

logger = logging.getLogger("lib.summaries")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.summaries", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("check", "rebuild", "compact"))
    args = parser.parse_args(argv)
    return run_command("connect-ops summaries", lambda cli: _checked_run(args.command, cli))


def _checked_run(command: str, cli: CommandContext) -> int:
    try:
        return _run(command, cli.factory)
    except (OperationalError, ProgrammingError) as exc:
        # A database that is not migrated (or not reachable): say so, without the SQL.
        say("connect-ops summaries", f"the database could not be read "
            f"({type(exc.orig).__name__}); run python -m lib.migrate first.")
        return EXIT_CONFIGURATION


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
