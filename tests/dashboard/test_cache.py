"""Cached reads are dropped as soon as anything is done (an audit entry or a webhook)."""

from __future__ import annotations

import streamlit as st

from dashboard.cache import invalidate_after_changes
from lib.audit import record


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
