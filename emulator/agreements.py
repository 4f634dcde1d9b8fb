"""Service agreements, capabilities and cross-border accounts: what Stripe accepts at creation.

Stripe's rules for accounts a platform creates without the full Stripe Dashboard (Express and
Custom), from "Service agreement types", "Cross-border payouts" and "Account capabilities":

- ``tos_acceptance[service_agreement]`` is ``full`` (the default) or ``recipient``, and is
  fixed once the account has accepted it.
- Under ``full``, requesting ``transfers`` without ``card_payments`` needs Stripe's approval of
  the platform (this emulator's platform has none), and ``card_payments`` cannot come without
  ``transfers``.
- Under ``recipient`` the account cannot request ``card_payments`` (nor process payments).
- An account in another country than the platform's is a cross-border account: only between the
  US, UK, EEA, Canada and Switzerland, and only under ``recipient`` (the country passed
  explicitly; without it the account is in the platform's country).

Where Stripe's exact wording is not public the messages are this emulator's own, in Stripe's
envelope (see "Known differences" in ``emulator/README.md``).
"""

from __future__ import annotations

from collections.abc import Collection

from emulator.errors import StripeApiError, invalid_request

AGREEMENTS = ("full", "recipient")
#: The European Economic Area (EU 27 + Iceland, Liechtenstein, Norway).
EEA = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
})
#: Where self-serve cross-border payouts go, from platforms in the same regions.
CROSS_BORDER_REGION = EEA | {"US", "GB", "CA", "CH"}

TRANSFERS_ONLY_NEEDS_APPROVAL = (
    "Your platform needs approval for accounts to have requested the `transfers` capability "
    "without the `card_payments` capability. If you would like to request transfers without "
    "card_payments, please contact us via https://support.stripe.com/contact."
)
CARD_PAYMENTS_NEEDS_TRANSFERS = (
    "Accounts do not currently support `card_payments` without `transfers`. Please visit "
    "https://stripe.com/docs/connect/account-capabilities#card-payments for more details."
)
RECIPIENT_CANNOT_TAKE_PAYMENTS = (
    "Accounts under the `recipient` service agreement cannot request the `card_payments` "
    "capability: they cannot process payments. Request only `transfers`, or use the `full` "
    "service agreement."
)


def agreement_of(account: dict[str, object]) -> str:
    """The account's service agreement (``full`` when none was chosen)."""
    tos = account.get("tos_acceptance") or {}
    value = tos.get("service_agreement") if isinstance(tos, dict) else None
    return str(value or "full")


def chosen_agreement(params: dict[str, object]) -> str | None:
    """``tos_acceptance[service_agreement]`` of a request, checked; None when not given."""
    tos = params.get("tos_acceptance")
    value = tos.get("service_agreement") if isinstance(tos, dict) else None
    if value in (None, ""):
        return None
    if value not in AGREEMENTS:
        raise invalid_request(
            f"Invalid service_agreement: must be one of {', '.join(AGREEMENTS)}",
            "tos_acceptance[service_agreement]",
        )
    return str(value)


def check_capabilities(agreement: str, capabilities: Collection[str]) -> None:
    """Refuse a capability set the agreement does not allow (creation or a later request)."""
    if agreement == "recipient":
        if "card_payments" in capabilities:
            raise invalid_request(RECIPIENT_CANNOT_TAKE_PAYMENTS, "capabilities[card_payments]")
        return
    if "card_payments" in capabilities and "transfers" not in capabilities:
        raise invalid_request(CARD_PAYMENTS_NEEDS_TRANSFERS, "capabilities")
    if "transfers" in capabilities and "card_payments" not in capabilities:
        raise invalid_request(TRANSFERS_ONLY_NEEDS_APPROVAL, "capabilities")


def check_country(agreement: str, country: str, platform_country: str) -> None:
    """Refuse a cross-border account Stripe would not let this platform pay."""
    if country == platform_country:
        return
    if platform_country not in CROSS_BORDER_REGION or country not in CROSS_BORDER_REGION:
        raise invalid_request(
            f"Cross-border payouts from a platform in {platform_country} to accounts in "
            f"{country} are not supported: both must be in the United States, the United "
            "Kingdom, the European Economic Area, Canada or Switzerland.",
            "country",
        )
    if agreement != "recipient":
        raise invalid_request(
            f"The account's country ({country}) differs from your platform's "
            f"({platform_country}): cross-border payouts only work with accounts under the "
            "`recipient` service agreement. Pass tos_acceptance[service_agreement]=recipient.",
            "tos_acceptance[service_agreement]",
        )


def check_new_account(*, account_type: str, agreement: str, country: str,
                      platform_country: str, capabilities: Collection[str]) -> None:
    """All of the above for ``POST /v1/accounts``."""
    if account_type == "standard":
        if agreement != "full":
            raise invalid_request(
                "The `recipient` service agreement is only available to accounts without "
                "access to the full Stripe Dashboard (Express and Custom accounts).",
                "tos_acceptance[service_agreement]",
            )
        return
    check_capabilities(agreement, capabilities)
    check_country(agreement, country, platform_country)


def check_agreement_change(account: dict[str, object], wanted: str) -> None:
    """The service agreement cannot change once the account has accepted it."""
    tos = account.get("tos_acceptance") or {}
    accepted = isinstance(tos, dict) and tos.get("date") is not None
    if accepted and wanted != agreement_of(account):
        raise StripeApiError(
            400,
            "You cannot change the service agreement of an account that has already accepted "
            "it.",
            param="tos_acceptance[service_agreement]",
        )
