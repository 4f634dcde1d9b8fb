"""Payout commands for operators who script.

    python -m lib.payouts reconcile --since 2026-11-01 [--until 2026-12-01] --operator fiona
    python -m lib.payouts bulk FILE.csv --dry-run  --operator alice
    python -m lib.payouts bulk FILE.csv --confirm  --operator alice
    python -m lib.payouts retry --operator alice          # resend unknown/stale rows, same keys
    python -m lib.payouts retry-reversals --operator alice  # the same for reversals
    python -m lib.payouts reverse 1042 [--amount 10.00] --reason "Paid twice" --operator alice

Who acts: ``--operator USERNAME`` must be a user of the dashboard's users file
(``AUTH_CONFIG_PATH``) and acts with that user's roles, so the command line obeys the same rules
as the dashboard (``bulk`` needs an admin, ``reconcile`` admin or finance) and the audit log names
a person, never an anonymous script. Dates are UTC days; ``--until`` is exclusive.

Output is CSV on stdout (the report rows), a one-line summary on stderr. Exit codes: 0 done,
1 refused or failed (the reason on stderr), 2 configuration problem (one line).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.cli import CommandContext, run_command
from lib.errors import ConfigurationError, ValidationError
from lib.operator_accounts import load_credentials
from lib.payouts.bulk import confirm_bulk, preview_bulk
from lib.payouts.execution import retry_unsettled
from lib.payouts.ledger import scoped_token
from lib.payouts.reconciliation import reconcile
from lib.payouts.reversal import retry_unsettled_reversals, reverse_payout
from lib.roles import Operator, canonical_username
from lib.settings import Settings

logger = logging.getLogger(__name__)
PROG = "python -m lib.payouts"


def _day(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-01") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Connect Ops payout commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconcile", help="compare Stripe's transfers with the ledger")
    rec.add_argument("--since", type=_day, required=True, help="first UTC day (YYYY-MM-DD)")
    rec.add_argument("--until", type=_day, help="UTC day after the last one (default: now)")
    rec.add_argument("--operator", required=True, help="a user of AUTH_CONFIG_PATH")
    blk = sub.add_parser("bulk", help="preview or pay a bulk CSV")
    blk.add_argument("file", type=Path)
    mode = blk.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="validate and total; pay nothing")
    mode.add_argument("--confirm", action="store_true", help="pay every good row (resumable)")
    blk.add_argument("--acknowledge-matches", action="store_true",
                     help="pay rows that look like payouts already in the ledger (checked)")
    blk.add_argument("--operator", required=True, help="a user of AUTH_CONFIG_PATH")
    rty = sub.add_parser("retry", help="resend unknown and stale rows with their own keys")
    rty.add_argument("--operator", required=True, help="a user of AUTH_CONFIG_PATH")
    rrv = sub.add_parser("retry-reversals",
                         help="resend unknown and stale reversals with their own keys")
    rrv.add_argument("--operator", required=True, help="a user of AUTH_CONFIG_PATH")
    rev = sub.add_parser("reverse", help="reverse (part of) a paid payout")
    rev.add_argument("payout_id", type=int)
    rev.add_argument("--amount", help="major units, e.g. 10.00 (default: all that remains)")
    rev.add_argument("--reason", required=True)
    rev.add_argument("--key", help="an idempotency key: running the command again with the same "
                                   "key returns the same reversal")
    rev.add_argument("--confirm-duplicate-of", type=int,
                     help="the earlier reversal this one knowingly repeats")
    rev.add_argument("--operator", required=True, help="a user of AUTH_CONFIG_PATH")
    return parser


def operator_from_users_file(settings: Settings, username: str) -> Operator:
    """The operator ``username`` with the roles the users file gives them."""
    users = load_credentials(settings)["usernames"]
    wanted = canonical_username(username)
    user = next((u for name, u in users.items() if canonical_username(str(name)) == wanted), None)
    if user is None:
        raise ConfigurationError(
            f"--operator {username!r} is not a user of {settings.auth_config_path}."
        )
    return Operator.from_role_names(username, user.get("roles") or [])


def _write_csv(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"Cannot read {path}: {exc.strerror}.") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command(PROG, lambda cli: _run(cli, args), require=("STRIPE_SECRET_KEY",))


def _run(cli: CommandContext, args: argparse.Namespace) -> int:
    settings, factory, gateway = cli.settings, cli.factory, cli.gateway
    operator = operator_from_users_file(settings, args.operator)
    if args.command == "reconcile":
        report = reconcile(factory, gateway=gateway, operator=operator,
                           since=args.since, until=args.until)
        _write_csv(report.rows())
        sys.stderr.write(f"{PROG} reconcile: {report.summary()}\n")
        return 1 if report.mismatches else 0
    if args.command == "bulk":
        data = _read_file(args.file)
        if args.dry_run:
            with factory() as session:
                preview = preview_bulk(session, gateway=gateway, operator=operator,
                                       csv_bytes=data, settings=settings)
            _write_csv(preview.to_rows())
            totals = ", ".join(f"{t.currency.upper()} {t.to_row()['total']} "
                               f"({'covered' if t.covered else 'NOT covered'})"
                               for t in preview.totals)
            sys.stderr.write(f"{PROG} bulk: {len(preview.good_rows)} good rows, "
                             f"{len(preview.bad_rows)} with problems; {totals}\n")
            return 0
        result = confirm_bulk(factory, gateway=gateway, operator=operator, csv_bytes=data,
                              settings=settings, acknowledge_matches=args.acknowledge_matches)
        _write_csv(result.to_rows())
        sys.stderr.write(f"{PROG} bulk: {result.count('paid')} paid, "
                         f"{result.count('pending_approval')} awaiting approval, "
                         f"{result.count('unknown')} unknown, {len(result.skipped)} skipped\n")
        return 0
    if args.command == "reverse":
        reversal = reverse_payout(
            factory, gateway=gateway, operator=operator, payout_id=args.payout_id,
            amount=args.amount, reason=args.reason, settings=settings,
            client_request_token=scoped_token("cli", operator.username, args.key),
            confirm_duplicate_of=args.confirm_duplicate_of)
        _write_csv([{"reversal_id": reversal.id, "payout_id": reversal.payout_id,
                     "amount_minor": reversal.amount_minor, "status": reversal.status,
                     "stripe_reversal_id": reversal.stripe_reversal_id or "",
                     "error": reversal.error_message or ""}])
        return 0 if reversal.status in ("succeeded", "pending_approval") else 1
    if args.command == "retry-reversals":
        reversals = retry_unsettled_reversals(factory, gateway=gateway, operator=operator)
        _write_csv([{"reversal_id": r.id, "payout_id": r.payout_id, "status": r.status}
                    for r in reversals])
        return 0
    payouts = retry_unsettled(factory, gateway=gateway, operator=operator)
    _write_csv([{"payout_id": p.id, "status": p.status} for p in payouts])
    return 0


if __name__ == "__main__":
    sys.exit(main())
