"""Shared UI pieces: the Stripe-mode banner every page shows."""

from __future__ import annotations

import streamlit as st

from lib.settings import Settings

_BANNERS = {
    "live": ("#b42318", "LIVE MODE: real money moves from this desk."),
    "test": ("#b54708", "TEST MODE: Stripe test data, no real money."),
    "emulator": ("#175cd3", "LOCAL EMULATOR: no Stripe account is involved."),
}


def mode_banner(settings: Settings) -> None:
    """A colour nobody can miss saying which Stripe this desk talks to."""
    colour, text = _BANNERS[settings.stripe_mode_label]
    st.html(
        f'<div data-testid="mode-banner" style="background:{colour};color:#fff;'
        f'padding:6px 12px;border-radius:6px;font-weight:600;">{text}</div>'
    )
