"""Every page, for every role that may open it, renders the real demo data (the seed script
run against the emulator into the test database)."""

from __future__ import annotations

import pytest

from dashboard.navigation import PAGES
from lib.roles import Operator
from scripts.seed_demo import seed
from tests.dashboard.emulator_env import open_page, stripe_env  # noqa: F401 (fixture)
from tests.factories import make_settings


@pytest.mark.slow
def test_every_page_renders_the_demo_data(app, stripe_env, database_url) -> None:  # noqa: F811
    emulator = stripe_env
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url, database_url=database_url,
                             stripe_max_network_retries=2)
    emulator.configure(backend_url=settings.backend_url)
    assert seed(settings) is True
    assert seed(settings) is False  # a second run adds nothing
    for role in ("admin", "finance", "manager"):
        operator = Operator.from_role_names(role, [role])
        for spec in PAGES:
            if not any(operator.can(a) for a in spec.needs):
                continue
            at = open_page(app, spec.file, role)
            if spec.file == "reconciliation.py":  # its report appears once it is run
                at = at.button(key="reconciliation_run").click().run()
            where = (role, spec.file)
            assert not at.exception, (*where, at.exception)
            # Alert banners are errors by design (past-due accounts...); refusals are not.
            for error in at.error:
                assert "may not" not in error.value and "not configured" not in error.value, (
                    *where, error.value)
            shown = len(at.dataframe) + len(at.metric) + len(at.get("arrow_vega_lite_chart"))
            if spec.file == "webhooks.py":  # no companion here receives the seed's webhooks
                shown += len(at.info)
            assert shown > 0, (*where, "nothing rendered")
