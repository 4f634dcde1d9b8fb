"""Process-wide resources for the dashboard, cached once per Streamlit server.

Only resources that are the same for every user live here (settings, engine, gateway);
nothing per-user or secret is cached globally.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lib.db import make_engine, make_session_factory
from lib.errors import ConfigurationError
from lib.logging_setup import configure_logging
from lib.settings import Settings, load_settings
from lib.stripe_gateway import StripeGateway

#: What the dashboard needs to start (AUTH_COOKIE_KEY only for the users-file sign-in).
REQUIRED_SETTINGS = ("STRIPE_SECRET_KEY", "AUTH_COOKIE_KEY")


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    session_factory: sessionmaker[Session]
    gateway: StripeGateway


def _release(context: AppContext) -> None:
    """Close the engine's pooled connections when Streamlit drops the cached context (a cache
    clear, or the server stopping), rather than leaving them to the garbage collector."""
    engine = context.session_factory.kw.get("bind")
    if isinstance(engine, Engine):
        engine.dispose()


@st.cache_resource(show_spinner=False, on_release=_release)
def _build_context() -> AppContext:
    settings = load_settings()
    settings.require(*(name for name in REQUIRED_SETTINGS
                       if name != "AUTH_COOKIE_KEY" or settings.dashboard_sign_in == "password"))
    configure_logging(settings.log_level)
    engine = make_engine(settings.database_url)
    return AppContext(
        settings=settings,
        session_factory=make_session_factory(engine),
        gateway=StripeGateway(settings),
    )


def get_context() -> AppContext:
    """The shared context, or a clear one-line error on the page and a stop."""
    try:
        return _build_context()
    except ConfigurationError as exc:
        st.error(f"Connect Ops is not configured: {exc}")
        st.stop()
        raise  # unreachable: st.stop() ends the script run
