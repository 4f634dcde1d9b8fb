"""Alerts: the rules the worker checks, their settings and recipients, and a check on demand.

Each rule is a kind of condition (``lib.alerts.KINDS``) with its thresholds, the addresses it
emails, whether it posts to the chat webhook, and whether its alerts wait for the daily digest.
An alert is opened once per episode of its condition and shown on the Overview; its messages
go through the Outbox. Managing rules is ``MANAGE_ALERTS`` (admins), checked again in ``lib``.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import require_page, show_error, show_flash
from lib.alerts import KINDS, RuleView, add_recommended_rules, check_now, list_rules, save_rule
from lib.errors import ConnectOpsError
from lib.roles import Action

operator = require_page(Action.MANAGE_ALERTS)
context = get_context()
state = st.session_state

st.title("Alerts")
st.caption("The worker checks these rules every "
           f"{context.settings.alert_check_interval_seconds} s (the worker's own heartbeat is "
           "checked by the companion service). A condition is alerted once when it starts to "
           "hold and again only after it cleared; alerts are listed on the Overview.")
show_flash("alerts_flash")

settings = context.settings
if not (settings.smtp_host and settings.smtp_sender):
    st.warning("Email is not configured (SMTP_HOST, SMTP_SENDER): alert emails wait in the "
               "Outbox until it is.", icon=":material/mail_lock:")
if settings.alert_chat_webhook_url is None:
    st.caption("The chat webhook is not configured (ALERT_CHAT_WEBHOOK_URL): rules that post "
               "to chat wait in the Outbox until it is.")

try:
    with context.session_factory() as session:
        rules = list_rules(session, operator=operator)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()


def _act(run: Callable[[], object], message: str) -> None:
    try:
        result = run()
    except ConnectOpsError as exc:
        show_error(exc)
        return
    state["alerts_flash"] = ("ok", message.format(result=result))
    st.rerun()


buttons = st.columns(2)
if buttons[0].button("Check the rules now", key="alerts_check_now", icon=":material/rule:",
                     disabled=not rules):
    _act(lambda: check_now(context.session_factory, operator=operator).line(), "{result}.")
if buttons[1].button("Add the recommended rules", key="alerts_recommended",
                     icon=":material/playlist_add:"):
    def _recommended() -> int:
        with context.session_factory.begin() as session:
            return len(add_recommended_rules(session, operator=operator))
    _act(_recommended, "{result} rule(s) added with their default settings: add recipients "
                       "to each below.")

if rules:
    st.dataframe(pd.DataFrame([{
        "Id": r.id, "Rule": r.name, "Kind": r.title, "On": r.enabled,
        "Settings": ", ".join(f"{k}={v}" for k, v in r.params.items()),
        "Email to": ", ".join(r.email_recipients), "Chat": r.chat, "Digest": r.digest,
        "Open alerts": r.open_alerts,
    } for r in rules]), hide_index=True, width="stretch", key="alerts_rules_table")
else:
    st.info("No alert rules yet: add the recommended ones, or one at a time below.",
            icon=":material/notifications_off:")

st.subheader("Add or change a rule")
choices: dict[int | None, str] = {None: "A new rule"}
choices.update({r.id: f"#{r.id} {r.name}" for r in rules})
chosen = st.selectbox("Rule", list(choices), format_func=choices.__getitem__,
                      key="alerts_rule_choice")
current: RuleView | None = next((r for r in rules if r.id == chosen), None)
kind_names = list(KINDS)
kind_name = st.selectbox("Kind", kind_names, format_func=lambda k: KINDS[k].title,
                         index=kind_names.index(current.kind) if current else 0,
                         disabled=current is not None, key=f"alerts_kind_{chosen}")
kind = KINDS[kind_name]
st.caption(kind.description)
with st.form(f"alerts_form_{chosen}_{kind_name}"):
    name = st.text_input("Name", value=current.name if current else kind.title, max_chars=200)
    values: dict[str, int] = {}
    for param in kind.params:
        default = current.params.get(param.name, param.default) if current else param.default
        values[param.name] = int(st.number_input(
            param.label, min_value=param.minimum, max_value=param.maximum, value=int(default),
            step=1, key=f"alerts_param_{chosen}_{param.name}"))
    recipients = st.text_area(
        "Email to (comma separated)",
        value=", ".join(current.email_recipients) if current else "",
        help="The team's addresses. Leave empty for no email.")
    chat = st.checkbox("Post to the chat webhook", value=current.chat if current else False)
    digest = st.checkbox("Collect into the daily digest instead of alerting at once",
                         value=current.digest if current else False)
    enabled = st.checkbox("Enabled", value=current.enabled if current else True)
    submitted = st.form_submit_button("Save rule", type="primary")
if submitted:
    def _save() -> int:
        with context.session_factory.begin() as session:
            return save_rule(session, operator=operator, kind=kind.kind, name=name,
                             params=dict(values), email_recipients=recipients, chat=chat,
                             digest=digest, enabled=enabled, rule_id=current.id if current else None)
    _act(_save, "Rule #{result} saved.")
