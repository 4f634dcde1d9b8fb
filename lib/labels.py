"""Words a person reads for the codes the desk stores (methods, outcomes, reasons, statuses).

One place, so the pages, the timeline, the exports and the notebook say the same thing.
Unknown codes fall back to the code itself, spelled out (``some_code`` -> ``Some code``).
"""

from __future__ import annotations

METHODS = {"oauth": "OAuth (Standard account)", "account_link": "Onboarding link (Express)"}

OUTCOMES = {"pending": "Pending", "succeeded": "Succeeded", "failed": "Failed",
            "abandoned": "Abandoned"}

#: Why a connection attempt failed (``lib.connection_attempts.FailureReason``).
FAILURE_REASONS = {
    "access_denied": "Freelancer declined on Stripe",
    "missing_parameters": "Callback missing parameters",
    "invalid_state": "Link expired or reused",
    "exchange_failed": "Stripe refused the connection",
    "server_error": "Our server failed",
    "account_already_connected": "Account already connected to someone else",
    "abandoned": "Left without finishing",
}

PAYOUT_STATUSES = {
    "pending_approval": "Awaiting approval", "pending": "Approved, not sent",
    "submitted": "Sent, awaiting Stripe", "paid": "Paid", "failed": "Failed",
    "unknown": "Unknown outcome", "rejected": "Rejected", "reversed": "Reversed",
}

BANK_PAYOUT_STATUSES = {"pending": "Pending", "in_transit": "In transit", "paid": "Paid",
                        "failed": "Failed", "canceled": "Canceled"}


def spelled(code: str | None) -> str:
    """``some_code`` -> ``Some code``; empty for None."""
    if not code:
        return ""
    words = code.replace("_", " ").replace(".", " ").strip()
    return words[:1].upper() + words[1:]


def method(code: str | None) -> str:
    return METHODS.get(code or "", spelled(code))


def outcome(code: str | None) -> str:
    return OUTCOMES.get(code or "", spelled(code))


def failure_reason(code: str | None) -> str:
    return FAILURE_REASONS.get(code or "", spelled(code))


def payout_status(code: str | None) -> str:
    return PAYOUT_STATUSES.get(code or "", spelled(code))


def bank_payout_status(code: str | None) -> str:
    return BANK_PAYOUT_STATUSES.get(code or "", spelled(code))
