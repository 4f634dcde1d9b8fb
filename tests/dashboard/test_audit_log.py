"""The Audit log page: filters, paging and export for admin and finance; nothing edits."""

from __future__ import annotations

import pytest

from lib.audit import record
from lib.roles import Operator
from tests.dashboard.emulator_env import errors, open_page, run_page_script, texts


@pytest.fixture
def entries(session_factory) -> None:
    with session_factory.begin() as session:
        for n in range(60):
            record(session, actor=Operator.from_role_names("alice", ["admin"]),
                   action="payout.request", result="pending", target=f"payout:{n}")
        record(session, actor="=cmd|' /C calc'!A0", action="auth.login_failed",
               result="failed", target="client:127.0.0.1")


@pytest.mark.parametrize("role", ["admin", "finance"])
def test_empty_database(app, dashboard_env, role: str) -> None:
    at = open_page(app, "audit_log.py", role)
    assert not at.exception, at.exception
    assert "No audit entries match these filters." in texts(at)


def test_entries_filters_paging_and_export(app, dashboard_env, entries) -> None:
    at = open_page(app, "audit_log.py", "finance")
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 50
    assert "Page 1 of 2 · 61 rows" in texts(at)
    at.number_input(key="audit_log_page").set_value(2).run()
    assert len(at.dataframe[0].value) == 11
    at.selectbox(key="audit_log_action").set_value("auth.login_failed").run()
    table = at.dataframe[0].value
    assert list(table["Actor"]) == ["=cmd|' /C calc'!A0"]
    at = at.button(key="audit_log_export_prepare").click().run()
    assert not at.exception
    assert len(at.get("download_button")) == 1
    # Nothing on the page can write: only filters, the pager and the export.
    assert {w.key for w in at.button} <= {"audit_log_export_prepare", "logout_button"}


def test_nothing_matches(app, dashboard_env, entries) -> None:
    at = open_page(app, "audit_log.py", "admin")
    at.text_input(key="audit_log_actor").input("nobody-like-this").run()
    assert "No audit entries match these filters." in texts(at)


def test_manager_is_refused(app, dashboard_env) -> None:
    at = app(as_user="manager").run()
    with pytest.raises(ValueError):
        at.switch_page("../pages/audit_log.py")
    at = run_page_script("audit_log.py", "manager")
    assert not at.exception
    assert errors(at) == ["manager (manager) may not view audit log."]


def test_the_log_is_counted_once_per_run(app, dashboard_env, entries) -> None:
    """Issue 7: the pager and the page share one count of the filtered log (millions of rows)."""
    from tests.factories_dashboard import queries_to_render

    statements = queries_to_render(app, "audit_log.py", "finance")
    counts = [s for s in statements if "count(" in s.lower() and "audit_log" in s]
    assert len(counts) == 1, statements
