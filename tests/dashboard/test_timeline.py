"""The timeline in the Accounts page's detail (issue 21), for each role that opens the page."""

from __future__ import annotations

import pytest

from tests.dashboard.test_metrics import table
from tests.factories_dashboard import open_page, page_text
from tests.lib.test_timeline import story  # noqa: F401 (fixture)


@pytest.mark.parametrize("user", ["admin", "finance"])
def test_the_detail_shows_the_timeline_with_filters_and_export(app, story, user) -> None:  # noqa: F811
    at = open_page(app, "accounts.py", user)
    at.selectbox(key="accounts_detail_freelancer").set_value(story).run()
    assert not at.exception
    timeline = table(at, "When (UTC)")
    assert list(timeline.columns) == ["When (UTC)", "What", "Event", "Detail", "Amount", "By",
                                      "Reference"]
    events = list(timeline["Event"])
    assert events[-1] == "Link issued: OAuth (Standard account)"       # oldest last
    assert {"Connected to acct_grace", "Bank payout failed", "Payout paid",
            "Stripe asks for more information", "Disconnected"} <= set(events)
    assert "$123.45 USD" in set(timeline["Amount"])
    assert not timeline.isna().any().any() and "None" not in timeline.to_string()
    assert "entries, newest first" in page_text(at)
    assert any(b.label == "Download timeline (CSV)" for b in at.get("download_button"))

    # The story first: audit entries are one choice away, off by default.
    shown = at.multiselect(key=f"accounts_timeline_kinds_{story}")
    assert "audit" not in shown.value and "Audit entries" in shown.options
    at.multiselect(key=f"accounts_timeline_kinds_{story}").set_value(["bank"]).run()
    assert not at.exception
    assert list(table(at, "When (UTC)")["Event"]) == ["Bank payout failed"]


def test_the_manager_never_reaches_it(app) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(app, "accounts.py", "manager")
