"""The terms a new Express account is created with: country, service agreement, capabilities.

Stripe decides what it accepts from the freelancer's country relative to the platform's
(``STRIPE_PLATFORM_COUNTRY``), per its "Service agreement types" and "Cross-border payouts"
pages:

- **Same country**: the ``full`` service agreement with ``card_payments`` and ``transfers``.
  ``transfers`` alone under ``full`` needs Stripe's approval of the platform, which a platform
  does not have by default: without it Stripe refuses the account at creation.
- **Another country**: only under the ``recipient`` agreement, with ``transfers`` only (a
  recipient account cannot request ``card_payments`` or take payments, never has
  ``charges_enabled``, and receives transfers 24 hours later) and the ``country`` passed
  explicitly (without it Stripe creates the account in the platform's country).
- Cross-border payouts go only between the United States, the United Kingdom, the European
  Economic Area, Canada and Switzerland. Anything else is refused here, before Stripe is called.

One function decides, so the onboarding link, the demo seed and the contract suite create the
same accounts; the emulator enforces the same rules from Stripe's side.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.errors import ValidationError

FULL = "full"
RECIPIENT = "recipient"
#: The European Economic Area: the EU 27, Iceland, Liechtenstein and Norway.
EEA = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
})
#: Where Stripe's self-serve cross-border payouts go, from platforms in the same regions.
CROSS_BORDER_REGION = EEA | {"US", "GB", "CA", "CH"}


@dataclass(frozen=True, slots=True)
class AccountTerms:
    """What ``POST /v1/accounts`` is sent for one freelancer."""

    country: str
    service_agreement: str
    capabilities: tuple[str, ...]

    @property
    def cross_border(self) -> bool:
        return self.service_agreement == RECIPIENT


class UnsupportedCountryError(ValidationError):
    """Stripe cannot pay a freelancer in that country from this platform."""

    code = "unsupported_country"


def account_terms(*, platform_country: str, freelancer_country: str | None) -> AccountTerms:
    """The country, agreement and capabilities Stripe accepts for this freelancer.

    A freelancer without a country is onboarded in the platform's country (what Stripe does
    when ``country`` is not sent).
    """
    platform = platform_country.strip().upper()
    country = (freelancer_country or platform).strip().upper()
    if len(country) != 2 or not country.isalpha():
        raise ValidationError(f"{freelancer_country!r} is not a two-letter country code.")
    if country == platform:
        return AccountTerms(country=country, service_agreement=FULL,
                            capabilities=("card_payments", "transfers"))
    if platform not in CROSS_BORDER_REGION or country not in CROSS_BORDER_REGION:
        raise UnsupportedCountryError(
            f"Stripe cannot pay a freelancer in {country} from this platform ({platform}): "
            "payouts to another country only go between the United States, the United "
            "Kingdom, the European Economic Area, Canada and Switzerland. No Stripe account "
            "was created."
        )
    return AccountTerms(country=country, service_agreement=RECIPIENT,
                        capabilities=("transfers",))
