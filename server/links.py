"""``python -m server.links FREELANCER_ID_or_EMAIL [--minutes 30] [--revoke]``: page links.

The link opens ``/freelancer/login`` on this service with a short-lived freelancer token; the
service trades it for a session cookie at once. An admin (or ``make demo``) hands it to the
freelancer, who needs no password: whoever holds the link is that freelancer until it expires,
so keep the lifetime short and send it only to the freelancer's own address.

Lifetimes: the link works for ``--minutes`` (30 by default, at most 24 hours); the session it
opens lasts 8 hours (``server.pages.SESSION_LIFETIME``). ``--revoke`` ends every link and
session of that freelancer issued so far, at once (``lib.page_access``): use it when a link went
to the wrong address or a device was lost, then send a new one.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from lib import audit
from lib.cli import EXIT_CONFIGURATION, CommandContext, run_command, say
from lib.errors import NotFoundError
from lib.freelancers import find_by_email, get_freelancer
from lib.page_access import (
    LOGIN_PATH,  # noqa: F401 (re-exported: where the link lands)
    page_access_generation,
    payment_settings_link,
    revoke_page_access,
)
from lib.settings import Settings

DEFAULT_MINUTES = 30
MAX_MINUTES = 24 * 60
PROG = "connect-ops links"
#: Who the audit log names for what this command does (it runs with the operator's shell).
ACTOR = "cli:server.links"


def freelancer_page_link(settings: Settings, freelancer_id: int, lifetime: timedelta, *,
                         generation: int = 0) -> str:
    """The signed link to ``freelancer_id``'s payment settings on this service.

    ``generation`` is the freelancer's current page-access generation: a link of an older one
    is refused (revoked).
    """
    return payment_settings_link(settings, freelancer_id, lifetime, generation=generation)


def _freelancer_id(session: Session, who: str) -> int:
    if who.strip().isdigit():
        return get_freelancer(session, freelancer_id=int(who)).id
    freelancer = find_by_email(session, email=who)
    if freelancer is None:
        raise NotFoundError(f"No freelancer has the email {who.strip().lower()}.")
    return freelancer.id


def issue_link(session: Session, *, settings: Settings, who: str, lifetime: timedelta) -> str:
    """A link for the freelancer named by id or email, in their current generation; audited."""
    freelancer_id = _freelancer_id(session, who)
    generation = page_access_generation(session, freelancer_id=freelancer_id)
    link = freelancer_page_link(settings, freelancer_id, lifetime, generation=generation)
    audit.record(session, actor=ACTOR, action="freelancer.page_link", result="issued",
                 target=f"freelancer:{freelancer_id}",
                 input={"minutes": int(lifetime.total_seconds() // 60), "generation": generation})
    return link


def revoke_links(session: Session, *, who: str) -> int:
    """Revoke every link and session of the freelancer named by id or email; their id."""
    freelancer_id = _freelancer_id(session, who)
    revoke_page_access(session, freelancer_id=freelancer_id, actor=ACTOR)
    return freelancer_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.links", description=__doc__.split("\n")[0])
    parser.add_argument("freelancer", help="the freelancer's id or email")
    parser.add_argument("--minutes", type=int, default=DEFAULT_MINUTES,
                        help=f"how long the link works (1 to {MAX_MINUTES}; default {DEFAULT_MINUTES})")
    parser.add_argument("--revoke", action="store_true",
                        help="end every link and session of this freelancer issued so far")
    args = parser.parse_args(argv)
    if not 1 <= args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be between 1 and {MAX_MINUTES}")
    # Nothing to log: the link alone goes to stdout.
    return run_command(PROG, lambda cli: _run(cli, args), require=("JWT_SECRET",), log=False)


def _run(cli: CommandContext, args: argparse.Namespace) -> int:
    try:
        with cli.factory.begin() as session:
            if args.revoke:
                freelancer_id = revoke_links(session, who=args.freelancer)
            else:
                link = issue_link(session, settings=cli.settings, who=args.freelancer,
                                  lifetime=timedelta(minutes=args.minutes))
    except NotFoundError as exc:
        say(PROG, exc)
        return EXIT_CONFIGURATION
    except SQLAlchemyError as exc:
        say(PROG, f"the database is unreachable ({exc.__class__.__name__}).")
        return EXIT_CONFIGURATION
    if args.revoke:
        sys.stderr.write(f"Every payment-settings link and session of freelancer "
                         f"{freelancer_id} is revoked.\n")
    else:
        sys.stdout.write(link + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
