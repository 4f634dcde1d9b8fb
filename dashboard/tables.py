"""Tables a finance person reads: human column names, formatted values, one time zone.

Every table of the dashboard goes through :func:`show_table` (or :func:`humanise` for its
rows): headers are words (``Last received``, not ``last_received_at``), ``None`` is an empty
cell, booleans are Yes/No, times are UTC to the minute (:data:`TIME_ZONE`, said under the
table once), and money is shown with its currency by the page (``lib.money.format_money``).
Numbers stay numbers so columns still sort.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

import pandas as pd
import streamlit as st

from lib.money import SUPPORTED_CURRENCIES, Money, format_money

#: The one zone every time on the desk is shown in (README: "Times").
TIME_ZONE = "UTC"

#: Column names that words alone do not make readable; the rest are spelled out by :func:`label`.
LABELS: dict[str, str] = {
    "id": "ID", "stripe_event_id": "Stripe event", "stripe_transfer_id": "Stripe transfer",
    "stripe_account_id": "Stripe account", "stripe_payout_id": "Stripe payout",
    "stripe_reversal_id": "Stripe reversal", "last_event_id": "Last event",
    "last_received_at": "Last received", "last_status": "Last status",
    "last_account": "Last account", "received_at": "Received", "created_at": "Created",
    "started_at": "Started", "link_expires_at": "Link expires", "occurred_at": "When",
    "completed_at": "Completed", "freelancer_name": "Freelancer",
    "freelancer_email": "Email", "freelancer_id": "Freelancer ID", "payout_type": "Type",
    "amount_minor": "Amount (minor units)", "failure_reason": "Failure reason",
    "error_message": "Error", "error_code": "Error code", "actor_role": "Role",
    "idempotency_key": "Idempotency key", "stripe_request_id": "Stripe request",
    "share_of_issued": "Share of links issued (%)", "success_rate": "Success rate (%)",
    "payout_id": "Payout ID", "ledger_status": "Ledger status", "stripe_status": "Stripe status",
    "ledger_amount": "Ledger amount", "stripe_amount": "Stripe amount",
    "requested_by": "Requested by", "approved_by": "Approved by", "issued_by": "Issued by",
}


def label(column: str) -> str:
    """``last_received_at`` -> ``Last received``; known names from :data:`LABELS`."""
    if column in LABELS:
        return LABELS[column]
    words = column.replace("_", " ").strip()
    if words.endswith(" at"):
        words = words[:-3]
    return words[:1].upper() + words[1:]


def when(moment: datetime | None) -> str:
    """A time for a table: UTC, to the minute (a naive time is taken to be UTC already)."""
    if moment is None:
        return ""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.strftime(f"%Y-%m-%d %H:%M {TIME_ZONE}")


def money(amount_minor: int | None, currency: str | None) -> str:
    """``$1,234.50 USD``; empty when there is no amount."""
    if amount_minor is None or not currency:
        return ""
    code = currency.lower()
    if code in SUPPORTED_CURRENCIES:
        return format_money(Money(int(amount_minor), code))
    return f"{currency.upper()} {amount_minor:,} (minor units)"


def cell(value: Any) -> Any:
    """One value as a person reads it (numbers stay numbers)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dict | list | tuple):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) \
            else ", ".join(str(v) for v in value)
    return value


def humanise(rows: Iterable[Mapping[str, Any]], columns: Sequence[str],
             labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``rows`` restricted to ``columns``, with human headers and readable cells."""
    names = {c: (labels or {}).get(c) or label(c) for c in columns}
    frame = pd.DataFrame([{names[c]: cell(row.get(c)) for c in columns} for row in rows],
                         columns=[names[c] for c in columns])
    return frame


def show_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, key: str,
               labels: Mapping[str, str] | None = None,
               column_config: Mapping[str, Any] | None = None, note_zone: bool = True,
               height: int | Literal["auto", "content", "stretch"] = "auto",
               ) -> pd.DataFrame:
    """A read-only table of ``rows`` (dicts keyed by ``columns``), as wide as the page."""
    frame = humanise(rows, columns, labels)
    st.dataframe(frame, hide_index=True, width="stretch", key=key, height=height,
                 column_config=dict(column_config or {}))
    if note_zone and any(c.endswith("_at") or c in {"when", "deadline"} for c in columns):
        st.caption(f"Times are {TIME_ZONE}.")
    return frame
