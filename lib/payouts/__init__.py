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
