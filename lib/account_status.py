"""What a connected account's Stripe state means for paying the freelancer.

Pure functions of the mirrored account dict (Stripe's own shape), so the same answer comes from
the dashboard, the API and the tests. The order of the checks is the product's contract:
REJECTED, DISABLED, PENDING, RESTRICTED, ACTIVE; NOT_CONNECTED when there is no account — with
one refinement: an account whose details were never submitted is PENDING before it can be
DISABLED (see ``derive_status``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class ConnectionStatus(enum.StrEnum):
    NOT_CONNECTED = "NOT_CONNECTED"
    REJECTED = "REJECTED"
    DISABLED = "DISABLED"
    PENDING = "PENDING"
    RESTRICTED = "RESTRICTED"
    ACTIVE = "ACTIVE"


#: disabled_reason values that stop payouts until someone acts (beyond paperwork in review).
BLOCKING_REASONS = frozenset(
    {
        "requirements.past_due",
        "platform_paused",
        "listed",
        "other",
        "action_required.requested_capabilities",
    }
)
#: disabled_reason values that mean "Stripe is looking at it": wait, don't chase the freelancer.
REVIEW_REASONS = frozenset({"requirements.pending_verification", "under_review"})


def _list(requirements: Mapping[str, Any] | None, key: str) -> list[str]:
    if not requirements:
        return []
    value = requirements.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


def transfers_capability(account: Mapping[str, Any]) -> str | None:
    """``active`` / ``inactive`` / ``pending``, or None when transfers were never requested."""
    capabilities = account.get("capabilities") or {}
    value = capabilities.get("transfers") if isinstance(capabilities, Mapping) else None
    return str(value) if value else None


def deadline_of(account: Mapping[str, Any]) -> datetime | None:
    """The earliest deadline in requirements or future_requirements, as aware UTC."""
    stamps = [
        (account.get(key) or {}).get("current_deadline")
        for key in ("requirements", "future_requirements")
    ]
    values = [int(s) for s in stamps if isinstance(s, int | float) and s]
    return datetime.fromtimestamp(min(values), tz=UTC) if values else None


def derive_status(account: Mapping[str, Any] | None) -> ConnectionStatus:
    """The connection status of a Stripe account dict (None: not connected)."""
    if not account:
        return ConnectionStatus.NOT_CONNECTED
    requirements = account.get("requirements") or {}
    future = account.get("future_requirements") or {}
    reason = str(requirements.get("disabled_reason") or "")
    transfers = transfers_capability(account)
    past_due = _list(requirements, "past_due")
    blocked = not account.get("payouts_enabled") or transfers == "inactive"

    if reason.startswith("rejected."):
        return ConnectionStatus.REJECTED
    if not account.get("details_submitted"):
        # Onboarding not finished. Stripe marks a new account's requirements past due at once
        # (disabled_reason requirements.past_due), so without this the freelancer who simply
        # has not finished the form would read as DISABLED: they are PENDING, and the fix is
        # the same onboarding link either way.
        return ConnectionStatus.PENDING
    if blocked and (past_due or reason in BLOCKING_REASONS):
        return ConnectionStatus.DISABLED
    if (
        _list(requirements, "pending_verification")
        or reason in REVIEW_REASONS
        or transfers == "pending"
    ):
        return ConnectionStatus.PENDING
    if blocked:
        # Submitted, nothing in review, yet payouts are off: we cannot pay this account.
        return ConnectionStatus.DISABLED
    if (
        _list(requirements, "currently_due")
        or _list(future, "currently_due")
        or _list(future, "past_due")
    ):
        return ConnectionStatus.RESTRICTED
    return ConnectionStatus.ACTIVE


def is_verified(account: Mapping[str, Any] | None) -> bool:
    """Payable: ``transfers`` active, payouts enabled, details submitted, nothing due.

    Never ``charges_enabled``: the product only sends transfers, and an account under the
    ``recipient`` service agreement (every cross-border freelancer) never has charges enabled.
    """
    if not account:
        return False
    requirements = account.get("requirements") or {}
    return bool(
        transfers_capability(account) == "active"
        and account.get("payouts_enabled")
        and account.get("details_submitted")
        and not _list(requirements, "currently_due")
        and not _list(requirements, "past_due")
    )


@dataclass(frozen=True, slots=True)
class RequirementSummary:
    currently_due: list[str]
    past_due: list[str]
    eventually_due: list[str]
    pending_verification: list[str]
    future_currently_due: list[str]
    deadline: datetime | None
    disabled_reason: str | None


def summarise_requirements(account: Mapping[str, Any]) -> RequirementSummary:
    """The requirement lists the dashboard shows and filters on."""
    requirements = account.get("requirements") or {}
    future = account.get("future_requirements") or {}
    return RequirementSummary(
        currently_due=_list(requirements, "currently_due"),
        past_due=_list(requirements, "past_due"),
        eventually_due=_list(requirements, "eventually_due"),
        pending_verification=_list(requirements, "pending_verification"),
        future_currently_due=_list(future, "currently_due"),
        deadline=deadline_of(account),
        disabled_reason=requirements.get("disabled_reason") or None,
    )


# ---- human-readable requirement labels ---------------------------------------------------

_LABELS = {
    "external_account": "Bank account or debit card for payouts",
    "tos_acceptance.date": "Accept Stripe's terms of service",
    "tos_acceptance.ip": "Accept Stripe's terms of service",
    "business_type": "Business type",
    "business_profile.url": "Business website",
    "business_profile.mcc": "Business category",
    "business_profile.product_description": "Description of the services offered",
    "individual.verification.document": "Identity document (passport, ID card or licence)",
    "individual.verification.additional_document": "Proof of address document",
    "individual.id_number": "Government ID number",
    "individual.ssn_last_4": "Last 4 digits of the Social Security number",
    "individual.dob.day": "Date of birth",
    "individual.dob.month": "Date of birth",
    "individual.dob.year": "Date of birth",
    "individual.first_name": "First name",
    "individual.last_name": "Last name",
    "individual.email": "Email address",
    "individual.phone": "Phone number",
    "individual.address.line1": "Home address",
    "individual.address.city": "Home address (city)",
    "individual.address.postal_code": "Home address (postal code)",
    "individual.address.state": "Home address (state)",
    "company.tax_id": "Company tax ID",
    "company.name": "Company name",
    "company.address.line1": "Company address",
    "company.verification.document": "Company registration document",
    "representative.verification.document": "Representative's identity document",
}

_DISABLED_REASON_LABELS = {
    "requirements.past_due": "Required information is past due",
    "requirements.pending_verification": "Stripe is verifying submitted information",
    "under_review": "Under review by Stripe",
    "listed": "Listed on a prohibited list; under review",
    "platform_paused": "Paused by the platform",
    "other": "Disabled by Stripe (other reason)",
    "action_required.requested_capabilities": "Capabilities must be requested",
    "rejected.fraud": "Rejected: suspected fraud",
    "rejected.terms_of_service": "Rejected: terms of service violation",
    "rejected.listed": "Rejected: on a prohibited list",
    "rejected.other": "Rejected by Stripe",
    "rejected.incomplete_verification": "Rejected: verification not completed",
    "rejected.platform_fraud": "Rejected by the platform: fraud",
    "rejected.platform_other": "Rejected by the platform",
    "rejected.platform_terms_of_service": "Rejected by the platform: terms of service",
}


def requirement_label(code: str) -> str:
    """Plain words for a Stripe requirement code (``person_xxx.`` prefixes are generalised)."""
    if code in _LABELS:
        return _LABELS[code]
    head, _, rest = code.partition(".")
    if head.startswith("person_") and rest:
        inner = requirement_label("individual." + rest)
        return f"Person: {inner[0].lower()}{inner[1:]}"
    words = code.replace("_", " ").split(".")
    return " › ".join(w.strip().capitalize() for w in words if w.strip())


def disabled_reason_label(reason: str | None) -> str | None:
    """Plain words for a ``disabled_reason``."""
    if not reason:
        return None
    return _DISABLED_REASON_LABELS.get(reason, reason.replace("_", " ").replace(".", ": "))
