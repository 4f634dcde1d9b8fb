"""``python -m scripts.read_mail [--last N]``: what the demo sent, from its local SMTP sink.

``make demo`` runs aiosmtpd with its Maildir handler into ``data/mail`` (``DEMO_DATA_DIR``
moves it): every email the product sends during the demo lands there and nowhere else. This
lists them oldest first (when, to, subject); ``--last N`` prints the Nth newest one's text.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import sys
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIL = Path(os.environ.get("DEMO_DATA_DIR") or ROOT / "data").resolve() / "mail"


def messages(folder: Path = MAIL) -> list[EmailMessage]:
    """Every email in the Maildir, oldest first."""
    if not (folder / "new").exists() or not (folder / "cur").exists():
        return []  # the sink creates the Maildir when it starts
    box = mailbox.Maildir(folder, factory=None, create=False)
    parser = BytesParser(policy=policy.default)
    found = [parser.parsebytes(box.get_bytes(key)) for key in box.keys()]

    def sent(message: EmailMessage) -> float:
        try:
            return parsedate_to_datetime(str(message["Date"])).timestamp()
        except (TypeError, ValueError):
            return 0.0
    return sorted((m for m in found if isinstance(m, EmailMessage)), key=sent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.read_mail", description=__doc__)
    parser.add_argument("--last", type=int, metavar="N",
                        help="print the Nth newest email's text (1 = the newest)")
    args = parser.parse_args(argv)
    found = messages()
    if not found:
        sys.stdout.write(f"No email in {MAIL} yet.\n")
        return 0
    if args.last:
        if not 1 <= args.last <= len(found):
            parser.error(f"--last must be between 1 and {len(found)}")
        message = found[-args.last]
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        sys.stdout.write(f"Date: {message['Date']}\nTo: {message['To']}\n"
                         f"Subject: {message['Subject']}\n\n{text}\n")
        return 0
    for number, message in enumerate(found, start=1):
        sys.stdout.write(f"{len(found) - number + 1:>3}  {message['Date']}  {message['To']}  "
                         f"{message['Subject']}\n")
    sys.stdout.write(f"{len(found)} email(s) in {MAIL}; --last N prints one.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
