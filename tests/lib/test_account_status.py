from datetime import UTC, datetime
from typing import Any

import pytest

from lib.account_status import (
    ConnectionStatus,
    derive_status,
    disabled_reason_label,
    is_verified,
    requirement_label,
    summarise_requirements,
)


def account(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "acct_1",
        "charges_enabled": True,
        "payouts_enabled": True,
        "details_submitted": True,
        "capabilities": {"transfers": "active"},
        "requirements": {"currently_due": [], "past_due": [], "eventually_due": [],
                         "pending_verification": [], "disabled_reason": None,
                         "current_deadline": None},
        "future_requirements": {"currently_due": [], "past_due": []},
    }
    for key, value in overrides.items():
        if key in ("requirements", "future_requirements"):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


@pytest.mark.parametrize(
    ("acct", "expected"),
    [
        (None, ConnectionStatus.NOT_CONNECTED),
        (account(), ConnectionStatus.ACTIVE),
        (account(requirements={"disabled_reason": "rejected.fraud"}, payouts_enabled=False),
         ConnectionStatus.REJECTED),
        # Rejected wins over everything else.
        (account(requirements={"disabled_reason": "rejected.other", "past_due": ["x"]},
                 details_submitted=False), ConnectionStatus.REJECTED),
        (account(payouts_enabled=False, requirements={"past_due": ["external_account"],
                                                      "disabled_reason": "requirements.past_due"}),
         ConnectionStatus.DISABLED),
        (account(capabilities={"transfers": "inactive"}, requirements={"past_due": ["x"]}),
         ConnectionStatus.DISABLED),
        (account(payouts_enabled=False, requirements={"disabled_reason": "platform_paused"}),
         ConnectionStatus.DISABLED),
        (account(details_submitted=False, payouts_enabled=False, charges_enabled=False,
                 capabilities={"transfers": "inactive"},
                 requirements={"currently_due": ["external_account"]}),
         ConnectionStatus.PENDING),
        (account(requirements={"pending_verification": ["individual.verification.document"]}),
         ConnectionStatus.PENDING),
        # A brand-new Express account: Stripe marks its requirements past due at once.
        (account(details_submitted=False, payouts_enabled=False, charges_enabled=False,
                 capabilities={"transfers": "inactive"},
                 requirements={"currently_due": ["external_account"],
                               "past_due": ["external_account"],
                               "disabled_reason": "requirements.past_due"}),
         ConnectionStatus.PENDING),
        (account(payouts_enabled=False, requirements={"disabled_reason": "under_review"}),
         ConnectionStatus.PENDING),
        (account(capabilities={"transfers": "pending"}), ConnectionStatus.PENDING),
        (account(requirements={"currently_due": ["individual.id_number"],
                               "current_deadline": 1_900_000_000}),
         ConnectionStatus.RESTRICTED),
        (account(future_requirements={"currently_due": ["individual.verification.document"]}),
         ConnectionStatus.RESTRICTED),
        # Submitted and not in review, yet payouts off with no stated reason: cannot be paid.
        (account(payouts_enabled=False), ConnectionStatus.DISABLED),
    ],
)
def test_status_order(acct, expected) -> None:
    assert derive_status(acct) is expected


def test_restricted_then_disabled_after_deadline() -> None:
    before = account(requirements={"currently_due": ["external_account"],
                                   "eventually_due": ["external_account"],
                                   "current_deadline": 1_800_000_000})
    assert derive_status(before) is ConnectionStatus.RESTRICTED
    after = account(payouts_enabled=False,
                    requirements={"currently_due": ["external_account"],
                                  "past_due": ["external_account"],
                                  "disabled_reason": "requirements.past_due"})
    assert derive_status(after) is ConnectionStatus.DISABLED


def test_verified_means_payable_and_nothing_due() -> None:
    assert is_verified(account())
    assert not is_verified(None)
    assert not is_verified(account(requirements={"currently_due": ["external_account"]}))
    assert not is_verified(account(requirements={"past_due": ["external_account"]}))
    assert not is_verified(account(payouts_enabled=False))
    assert not is_verified(account(details_submitted=False))
    for transfers in ("inactive", "pending", None):
        assert not is_verified(account(capabilities={"transfers": transfers}))
    assert not is_verified(account(capabilities={"card_payments": "active"}))


def test_a_recipient_account_is_verified_without_charges() -> None:
    """Issue 16, finding 2: a recipient account never has charges_enabled, yet it is payable.

    Failed on 99ac47c, where "verified" required charges_enabled.
    """
    recipient = account(charges_enabled=False,
                        tos_acceptance={"service_agreement": "recipient"})
    assert is_verified(recipient)
    assert derive_status(recipient) is ConnectionStatus.ACTIVE
    # Charges without the transfers capability do not make an account payable.
    assert not is_verified(account(charges_enabled=True, capabilities={"card_payments": "active",
                                                                         "transfers": "inactive"}))


def test_summary_takes_earliest_deadline() -> None:
    summary = summarise_requirements(
        account(requirements={"current_deadline": 1_900_000_000, "currently_due": ["a"]},
                future_requirements={"current_deadline": 1_800_000_000})
    )
    assert summary.deadline == datetime.fromtimestamp(1_800_000_000, tz=UTC)
    assert summary.currently_due == ["a"]


def test_requirement_labels() -> None:
    assert requirement_label("external_account") == "Bank account or debit card for payouts"
    assert requirement_label("individual.verification.document").startswith("Identity document")
    assert requirement_label("person_abc123.verification.document").startswith("Person: identity")
    assert requirement_label("company.owners_provided") == "Company › Owners provided"
    assert disabled_reason_label("requirements.past_due") == "Required information is past due"
    assert disabled_reason_label(None) is None
