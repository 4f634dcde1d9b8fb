"""The payout engine: a ledger written before Stripe is called, so money is never paid twice.

Modules, one job each:
- :mod:`lib.payouts.ledger` — request a payout (the row and its idempotency key), threshold policy;
- :mod:`lib.payouts.preflight` — named checks before confirming and before the first attempt;
- :mod:`lib.payouts.approval` — two-person approval and rejection;
- :mod:`lib.payouts.execution` — the transfer, its outcomes, retries of unknown outcomes;
- :mod:`lib.payouts.reversal` — reversing a paid transfer (admin only);
- :mod:`lib.payouts.reconciliation` — comparing Stripe's transfers with the ledger;
- :mod:`lib.payouts.bulk` — CSV preview and resumable confirm;
- :mod:`lib.payouts.queries` — ledger listing, totals and export rows for the dashboard;
- ``python -m lib.payouts`` — the command line (reconcile, bulk).
"""

from lib.payouts.approval import approve_payout, reject_payout
from lib.payouts.bulk import BulkPreview, BulkResult, confirm_bulk, preview_bulk
from lib.payouts.execution import PreflightFailedError, execute_payout, retry_unsettled
from lib.payouts.ledger import get_payout, needs_approval, request_payout
from lib.payouts.preflight import PreflightCheck, PreflightResult, preflight, preflight_payout
from lib.payouts.queries import PayoutFilter, export_rows, list_payouts, totals_by_currency
from lib.payouts.reconciliation import ReconciliationItem, ReconciliationReport, reconcile
from lib.payouts.reversal import retry_reversal, reverse_payout

__all__ = [
    "BulkPreview", "BulkResult", "PayoutFilter", "PreflightCheck", "PreflightFailedError",
    "PreflightResult", "ReconciliationItem", "ReconciliationReport", "approve_payout",
    "confirm_bulk", "execute_payout", "export_rows", "get_payout", "list_payouts",
    "needs_approval", "preflight", "preflight_payout", "preview_bulk", "reconcile",
    "reject_payout", "request_payout", "retry_reversal", "retry_unsettled", "reverse_payout",
    "totals_by_currency",
]
