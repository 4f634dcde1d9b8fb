"""The finance notebook runs headlessly on seeded data, every cell without error (issue 21).

Executed with nbclient in a real Jupyter kernel of this virtualenv, against the test database
through ``DATABASE_URL`` (as a person's run reads the demo database). Any cell error fails the
test; each report must have produced rows and its chart.
"""

from __future__ import annotations

from datetime import timedelta

import nbformat
import pytest
from nbclient import NotebookClient

from lib.bank_payouts import record_payout
from lib.db import utcnow
from lib.models import PayoutReversal
from lib.settings import PROJECT_ROOT
from tests.factories_dashboard import add_freelancer, add_payout, seed_many

NOTEBOOK = PROJECT_ROOT / "notebooks" / "finance.ipynb"


def _seed(session_factory) -> None:
    seed_many(session_factory, 70)
    now = utcnow()
    with session_factory.begin() as session:
        freelancer = add_freelancer(session, state="active", name="Nora Notebook")
        paid = add_payout(session, freelancer=freelancer, amount_minor=50_000, currency="eur",
                          created_at=now - timedelta(days=40))
        session.flush()
        session.add(PayoutReversal(payout_id=paid.id, amount_minor=5_000, reason="Overpaid",
                                   status="succeeded", idempotency_key="nb-rev-1",
                                   requested_by="admin", completed_at=now - timedelta(days=3)))
        for n, status in enumerate(["paid", "failed", "paid", "failed", "paid"]):
            record_payout(session, payout={
                "id": f"po_nb{n}", "object": "payout", "amount": 10_000, "currency": "eur",
                "status": status, "failure_code": "account_closed" if status == "failed" else None,
                "created": int((now - timedelta(days=30 * n + 2)).timestamp())},
                account_id=str(freelancer.stripe_account_id),
                event_created=now - timedelta(days=30 * n))


@pytest.mark.slow
def test_the_notebook_runs_every_cell_on_seeded_data(session_factory, database_url,
                                                     monkeypatch) -> None:
    _seed(session_factory)
    monkeypatch.setenv("DATABASE_URL", database_url)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    charts = [c for c in code if any("vega-lite" in str(out.get("data", {}).get("text/html", ""))
                                     for out in c.get("outputs", []))]
    assert len(charts) == 4, [c.source[:40] for c in code]
    tables = "\n".join(str(out.get("data", {}).get("text/plain", ""))
                       for c in code for out in c.get("outputs", []))
    assert "EUR" in tables and "USD" in tables                   # payouts per month
    assert "-5000" in tables                 # the reversal, netted in the month it came back
    assert "band" in tables and "failure_rate" in tables
    assert "Error" not in tables and "Traceback" not in tables
