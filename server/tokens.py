"""``python -m server.tokens ROLE SUBJECT``: print an API bearer token (demo and scripts).

``python -m server.tokens freelancer 1`` for freelancer 1's API; ``python -m server.tokens admin
alice`` for the admin payout endpoint. Tokens are signed with JWT_SECRET and expire (default
60 minutes): treat them as secrets.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from lib.cli import run_command
from lib.roles import Role
from lib.settings import Settings
from lib.tokens import issue_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.tokens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=[r.value for r in Role])
    parser.add_argument("subject", help="freelancer id, or the operator's username")
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args(argv)
    if args.role == Role.FREELANCER.value and not args.subject.isdigit():
        sys.stderr.write("A freelancer token's subject is the freelancer's numeric id.\n")
        return 2
    if not 1 <= args.minutes <= 24 * 60:
        sys.stderr.write("--minutes must be between 1 and 1440.\n")
        return 2
    # Nothing to log: the token alone goes to stdout.
    return run_command("connect-ops tokens", lambda cli: _print_token(cli.settings, args),
                       require=("JWT_SECRET",), log=False)


def _print_token(settings: Settings, args: argparse.Namespace) -> int:
    assert settings.jwt_secret is not None
    token = issue_token(secret=settings.jwt_secret.get_secret_value(), subject=args.subject,
                        role=Role(args.role), lifetime=timedelta(minutes=args.minutes))
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
