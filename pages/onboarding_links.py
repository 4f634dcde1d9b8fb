"""Onboarding links: pick or add a freelancer, issue an OAuth or onboarding link, copy it.

OAuth is for freelancers who already have a Standard Stripe account; a hosted onboarding link
creates (once) and onboards a new Express account. Links are short-lived and single use, so the
page shows when each expires and what became of it.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import plain, require_page, show_error
from dashboard.tables import show_table
from lib import labels
from lib.connect_flow import create_connect_link
from lib.db import utcnow
from lib.errors import ConnectOpsError, NotFoundError
from lib.freelancers import create_freelancer, get_freelancer, search_freelancers
from lib.link_queries import recent_links
from lib.models import ConnectionMethod
from lib.roles import Action

operator = require_page(Action.GENERATE_LINK)
context = get_context()
state = st.session_state
ONBOARDING = "Onboarding link: create a new Express account"
OAUTH = "OAuth link: connect an existing Standard account"
#: The radio's words, mapped to how the link connects (lib.connect_flow.create_connect_link).
METHODS = {ONBOARDING: ConnectionMethod.ACCOUNT_LINK, OAUTH: ConnectionMethod.OAUTH}
#: What became of the link first: the status is why a person opens this table.
LINK_COLUMNS = ["started_at", "freelancer_name", "status", "method", "failure_reason",
                "link_expires_at", "freelancer_email", "issued_by", "stripe_account_id"]

st.title("Onboarding links")


def add_freelancer() -> None:
    with st.form("onboarding_links_new_freelancer", clear_on_submit=True):
        name = st.text_input("Name", key="onboarding_links_name")
        email = st.text_input("Email", key="onboarding_links_email")
        country = st.text_input("Country (two letters)", key="onboarding_links_country",
                                max_chars=2, placeholder="US")
        added = st.form_submit_button("Add freelancer")
    if not added:
        return
    try:
        with context.session_factory.begin() as session:
            freelancer = create_freelancer(session, name=name, email=email, country=country)
            session.flush()
            state["onboarding_links_freelancer_id"] = freelancer.id
            shown = freelancer.name
    except ConnectOpsError as exc:
        show_error(exc)
        return
    state["onboarding_links_flash"] = f"Added {plain(shown)}: now choose how they connect."
    st.rerun()


def choose_freelancer() -> int | None:
    search = st.text_input("Find a freelancer", key="onboarding_links_search",
                           placeholder="name, email or acct_…")
    with context.session_factory() as session:
        found = search_freelancers(session, text=search, limit=50)
        added = state.get("onboarding_links_freelancer_id")
        if added is not None and all(f.id != added for f in found):
            try:
                found.insert(0, get_freelancer(session, freelancer_id=int(added)))
            except NotFoundError:
                state.pop("onboarding_links_freelancer_id", None)
        options = {f.id: f"{f.name} · {f.email} · {f.stripe_account_id or 'not connected'}"
                   for f in found}
    if not options:
        st.info("No freelancer matches: add one below.")
        return None
    ids = list(options)
    return st.selectbox("Freelancer", ids, format_func=options.__getitem__,
                        index=ids.index(added) if added in ids else 0,
                        key="onboarding_links_freelancer")


def generate(freelancer_id: int, method: str) -> None:
    try:
        link = create_connect_link(context.session_factory, gateway=context.gateway,
                                   settings=context.settings, operator=operator,
                                   freelancer_id=freelancer_id, method=METHODS[method])
    except ConnectOpsError as exc:
        show_error(exc)
        return
    state["onboarding_links_last"] = {
        "url": link.url, "method": link.method.value, "attempt_id": link.attempt_id,
        "expires_at": utcnow() + timedelta(seconds=link.expires_in),
    }


def show_link() -> None:
    last = state.get("onboarding_links_last")
    if not last:
        return
    remaining = int((last["expires_at"] - utcnow()).total_seconds())
    st.success("Link ready: copy it and send it to the freelancer.")
    st.code(last["url"], language=None, wrap_lines=True)
    if remaining > 0:
        st.caption(f"Single use; expires in {remaining // 60} min {remaining % 60} s "
                   f"({last['expires_at']:%H:%M:%S} UTC).")
    else:
        st.warning("This link has expired: generate a new one.")


def recent() -> None:
    st.subheader("Recent links")
    try:
        with context.session_factory() as session:
            rows = recent_links(session, operator=operator, limit=50)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    if not rows:
        st.info("No links issued yet.")
        return
    show_table([{**r.to_dict(), "method": labels.method(r.method),
                 "status": labels.spelled(r.status),
                 "failure_reason": labels.failure_reason(r.failure_reason)} for r in rows],
               LINK_COLUMNS, key="onboarding_links_table",
               labels={"started_at": "Issued", "freelancer_name": "Freelancer",
                       "freelancer_email": "Email"})


left, right = st.columns([3, 2])
with left:
    if state.get("onboarding_links_flash"):
        st.success(state.pop("onboarding_links_flash"))
    freelancer_id = choose_freelancer()
    method = st.radio("Method", [ONBOARDING, OAUTH], key="onboarding_links_method")
    if st.button("Generate link", key="onboarding_links_generate", type="primary",
                 disabled=freelancer_id is None) and freelancer_id is not None:
        generate(int(freelancer_id), method)
    show_link()
with right:
    with st.expander("Add a freelancer", expanded=False):
        add_freelancer()
recent()
