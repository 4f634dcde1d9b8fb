"""A bulk row's identity by its content, not by the bytes or line of the file it came in.

A sheet saved again (CRLF instead of LF, a BOM, a trailing newline, columns in another order,
rows sorted differently) is the same instruction to pay; the file's SHA-256 and line numbers
are not. So a bulk row is identified by what it pays: the freelancer, the wire amount, the
currency, the description (case and runs of white space folded) and, when the file has one,
its ``reference`` column. The key is a unique column of the ledger, so the database settles a
race between two confirms of the same sheet.

To pay the same freelancer the same amount for the same description again (next month's
retainer), give the row a reference (an invoice number) or a description that says which one.
"""

from __future__ import annotations

import hashlib
import json

#: Bumped if the canonical form ever changes (old keys then never equal new ones by accident).
_VERSION = 1


def canonical_text(value: str | None) -> str:
    """Case and runs of white space folded: 'Invoice  42' and 'invoice 42' are one description."""
    return " ".join((value or "").split()).casefold()


def bulk_row_key(
    *, freelancer_id: int, amount_minor: int, currency: str, description: str,
    reference: str | None,
) -> str:
    """The ledger's identity for one bulk row (64 hex characters)."""
    canonical = json.dumps(
        [_VERSION, int(freelancer_id), int(amount_minor), currency.strip().lower(),
         canonical_text(description), canonical_text(reference)],
        separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
