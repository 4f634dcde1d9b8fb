"""``python -m server.links FREELANCER_ID_or_EMAIL [--minutes 30]``: a freelancer's page link.

The link opens ``/freelancer/login`` on this service with a short-lived freelancer token; the
service trades it for a session cookie at once. An admin (or ``make demo``) hands it to the
freelancer, who needs no password: whoever holds the link is that freelancer until it expires,
so keep the lifetime short and send it only to the freelancer's own address.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy.exc import SQLAlchemyError

from lib.db import make_engine, make_session_factory
from lib.errors import ConfigurationError, NotFoundError
from lib.freelancers import find_by_email, get_freelancer
from lib.roles import Role
from lib.settings import Settings, load_settings
from lib.tokens import issue_token

LOGIN_PATH = "/freelancer/login"
DEFAULT_MINUTES = 30
MAX_MINUTES = 24 * 60


def freelancer_page_link(settings: Settings, freelancer_id: int, lifetime: timedelta) -> str:
    """The signed link to ``freelancer_id``'s payment settings on this service."""
    settings.require("JWT_SECRET")
    assert settings.jwt_secret is not None
    token = issue_token(secret=settings.jwt_secret.get_secret_value(),
                        subject=str(freelancer_id), role=Role.FREELANCER, lifetime=lifetime)
    return f"{settings.backend_url.rstrip('/')}{LOGIN_PATH}?{urlencode({'token': token})}"


def resolve_freelancer(settings: Settings, who: str) -> int:
    """The id of the freelancer named by id or email; NotFoundError when there is none."""
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            if who.strip().isdigit():
                return get_freelancer(session, freelancer_id=int(who)).id
            freelancer = find_by_email(session, email=who)
            if freelancer is None:
                raise NotFoundError(f"No freelancer has the email {who.strip().lower()}.")
            return freelancer.id
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.links", description=__doc__.split("\n")[0])
    parser.add_argument("freelancer", help="the freelancer's id or email")
    parser.add_argument("--minutes", type=int, default=DEFAULT_MINUTES,
                        help=f"how long the link works (1 to {MAX_MINUTES}; default {DEFAULT_MINUTES})")
    args = parser.parse_args(argv)
    if not 1 <= args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be between 1 and {MAX_MINUTES}")
    try:
        settings = load_settings()
        settings.require("JWT_SECRET")
        freelancer_id = resolve_freelancer(settings, args.freelancer)
        link = freelancer_page_link(settings, freelancer_id, timedelta(minutes=args.minutes))
    except (ConfigurationError, NotFoundError) as exc:
        sys.stderr.write(f"connect-ops links: {exc}\n")
        return 2
    except SQLAlchemyError as exc:
        sys.stderr.write(f"connect-ops links: the database is unreachable ({exc.__class__.__name__}).\n")
        return 2
    sys.stdout.write(link + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
