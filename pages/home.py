"""Home: who is signed in and which Stripe the desk is talking to."""

from __future__ import annotations

import streamlit as st

from dashboard.auth import current_operator
from dashboard.context import get_context

context = get_context()
operator = current_operator()
if operator is None:
    st.stop()

st.title("Connect Ops")
st.write(f"Welcome, **{operator.username}** ({operator.role_label}).")
st.metric("Stripe", context.settings.stripe_mode_label.title(), border=True)
