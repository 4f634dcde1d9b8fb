"""Cached reads are dropped as soon as anything is done (an audit entry or a webhook)."""

from __future__ import annotations

import streamlit as st

from dashboard.cache import invalidate_after_changes
from lib.audit import record
from tests.factories_dashboard import QueryCounter


def test_new_audit_entry_clears_cached_reads(session_factory) -> None:
    calls: list[int] = []

    @st.cache_data(ttl=600)
    def cached_read(n: int) -> int:
        calls.append(n)
        return n

    invalidate_after_changes(session_factory)  # first look: remembers the marker
    cached_read(1)
    cached_read(1)
    assert calls == [1]
    invalidate_after_changes(session_factory)  # nothing happened: the cache stays
    cached_read(1)
    assert calls == [1]
    with session_factory.begin() as session:
        record(session, actor="alice", action="payout.request", result="ok")
    invalidate_after_changes(session_factory)
    cached_read(1)
    assert calls == [1, 1]


def test_the_staleness_check_is_one_statement(session_factory) -> None:
    """Issue 7: the router runs it on every script run, so both newest ids come in one query."""
    invalidate_after_changes(session_factory)
    with QueryCounter() as counter:
        invalidate_after_changes(session_factory)
    selects = [s for s in counter.statements if not s.lstrip().upper().startswith("BEGIN")]
    assert len(selects) == 1, counter.statements
