"""Funding: is there enough money at Stripe for what we have committed to pay?

Per currency (never added across currencies): the platform's available and pending balance at
Stripe, what is committed (payouts awaiting approval, approved but not sent, bulk files being
previewed), the shortfall, and when pending funds become available (``lib.funding``). Read
only; the balance is re-read at most once a minute (or with "Refresh now").
"""

from __future__ import annotations

import streamlit as st

from dashboard import cache
from dashboard.context import get_context
from dashboard.page_helpers import require_page, show_error
from dashboard.tables import TIME_ZONE, money, show_table
from lib.errors import ConnectOpsError
from lib.funding import BULK_PREVIEW_TTL
from lib.roles import Action

operator = require_page(Action.VIEW_FUNDING)
context = get_context()

st.title("Funding")
st.caption("Is there enough money at Stripe for what we have committed to pay? A transfer needs "
           "the platform's available balance in its currency, and Stripe does not retry one "
           "that failed for lack of funds.")

try:
    position = cache.funding_position(context.session_factory, context.gateway, operator)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

as_of, refresh = st.columns([4, 1])
as_of.caption(f"As of {position.as_of:%Y-%m-%d %H:%M:%S} {TIME_ZONE} · the balance is re-read "
              "at most once a minute")
if refresh.button("Refresh now", key="funding_refresh", icon=":material/refresh:"):
    cache.funding_position.clear()
    cache.funds_needed.clear()
    st.rerun()

if position.balance_error:
    st.error(f"Stripe's balance could not be read: {position.balance_error}. The committed "
             "amounts below are from the ledger.", icon=":material/cloud_off:")
for currency in position.short:
    st.error(f"**{currency.currency.upper()}** · {currency.verdict}", icon=":material/warning:")
if position.currencies and not position.short and not position.balance_error:
    st.success("Every currency's committed payouts are covered by the available balance.",
               icon=":material/check_circle:")
if position.unknown_payouts:
    st.warning("Payouts with an unknown outcome (not counted above; Stripe may or may not have "
               "taken them from the balance): " + ", ".join(
                   money(amount, currency) for currency, amount
                   in sorted(position.unknown_payouts.items()))
               + ". Run Reconciliation to settle them.", icon=":material/help:")
if not position.currencies:
    st.info("No balance at Stripe and nothing committed yet.", icon=":material/info:")
    st.stop()

# ---- at a glance: one tile per currency with something committed ------------------------------
shown = [c for c in position.currencies if c.committed_minor] or position.currencies
tiles = st.columns(min(4, len(shown)))
for index, currency in enumerate(sorted(shown, key=lambda c: -(c.shortfall_minor or 0))[:8]):
    short = currency.shortfall_minor
    with tiles[index % len(tiles)]:
        st.metric(f"{currency.currency.upper()} available", currency.money(currency.available_minor),
                  delta=(None if short is None else f"{currency.money(short)} short" if short
                         else f"covers the {currency.money(currency.committed_minor)} committed"),
                  delta_color="red" if short else "green", delta_arrow="off",
                  help=currency.verdict, border=True)

# ---- per currency ------------------------------------------------------------------------------
st.subheader("Per currency")
rows = []
for c in position.currencies:
    m = c.committed
    rows.append({
        "currency": c.currency.upper(),
        "available": c.money(c.available_minor), "pending": c.money(c.pending_minor),
        "awaiting_approval": f"{money(m.awaiting_approval_minor, c.currency)} "
                             f"({m.awaiting_approval_count})" if m.awaiting_approval_count else "",
        "approved": f"{money(m.approved_minor, c.currency)} ({m.approved_count})"
        if m.approved_count else "",
        "bulk": f"{money(m.bulk_minor, c.currency)} ({m.bulk_rows} rows)" if m.bulk_rows else "",
        "committed": money(c.committed_minor, c.currency),
        "shortfall": c.money(c.shortfall_minor) if c.shortfall_minor else
        ("" if c.shortfall_minor == 0 else "unknown"),
        "next_release": f"{c.next_release.on:%Y-%m-%d}" if c.next_release else "",
    })
columns = [c for c in rows[0] if c not in ("approved", "bulk") or any(r[c] for r in rows)]
show_table(rows, columns, key="funding_table", labels={
    "available": "Available now", "pending": "Pending at Stripe",
    "awaiting_approval": "Awaiting approval", "approved": "Approved, not sent",
    "bulk": "Bulk files previewed", "committed": "Committed",
    "shortfall": "Shortfall", "next_release": f"Next release ({TIME_ZONE})"}, note_zone=False)
st.caption("Committed = awaiting approval + approved but not sent + bulk files previewed on the "
           f"Payouts page in the last {int(BULK_PREVIEW_TTL.total_seconds() // 3600)} hours and "
           "not yet confirmed. Payouts already sent left the balance when Stripe accepted them.")

# ---- when pending funds become available ------------------------------------------------------
releases = [(c, r) for c in position.currencies for r in c.releases]
st.subheader("When pending funds become available")
if releases:
    running: dict[str, int] = {}
    schedule = []
    for c, release in sorted(releases, key=lambda cr: (cr[0].currency, cr[1].on)):
        running[c.currency] = running.get(c.currency, c.available_minor or 0) + \
            release.amount_minor
        schedule.append({"currency": c.currency.upper(), "on": release.on,
                         "amount": money(release.amount_minor, c.currency),
                         "available_by_then": money(running[c.currency], c.currency),
                         "covers": "Yes" if running[c.currency] >= c.committed_minor else "No"})
    show_table(schedule, ["currency", "on", "amount", "available_by_then", "covers"],
               key="funding_releases", labels={
                   "on": f"Available on ({TIME_ZONE})", "amount": "Amount released",
                   "available_by_then": "Available by then", "covers": "Covers what is committed"},
               note_zone=False)
    if not position.releases_complete:
        st.caption("Some pending funds are older than the transactions read, so their dates "
                   "are missing here; the pending total above is Stripe's.")
elif position.releases_error:
    st.warning(f"The pending funds' dates could not be read: {position.releases_error}")
else:
    st.caption("Nothing is pending at Stripe.")

with st.expander("How to add funds"):
    st.markdown(
        "- **Live mode:** add funds to the platform balance from the Stripe Dashboard "
        "(Balances → Add to balance / top-up from a verified bank account; it can take a few "
        "business days), or wait for the pending funds above.\n"
        "- **Test mode (real `sk_test_` keys):** create a test charge with the card "
        "`4000 0000 0000 0077` (token `tok_bypassPending`): it lands in the *available* "
        "balance at once. Other test cards land in the pending balance first. The README's "
        "Funding section has the commands.\n"
        "- **Local emulator:** `POST /_emulator/balance` (see `emulator/README.md`).")
