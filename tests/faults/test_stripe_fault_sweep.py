"""The Stripe fault sweep: every Stripe call the product makes × every emulator fault.

Each scenario is one user-visible operation that triggers one gateway call (the operation is
driven the way its user drives it: the companion's HTTP API, a webhook delivery, a command
line, or the ``lib`` function a dashboard button calls). For every fault the test asserts:

1. the user sees the outcome :data:`MATRIX` promises, with a clear message (no traceback, no
   secret, no raw SDK exception text);
2. the data is truthful right after the fault (ledger rows, attempts, the mirror, states);
3. money never moves twice (the emulator's transfers and reversals are counted);
4. after the fault clears, the documented recovery path (retry with the same key, the
   freelancer retrying the link, the worker retrying a webhook, reconciliation, a rerun of the
   sync) reaches exactly the end state of the fault-free run (the ``none`` column runs the same
   scenario without a fault and must reach the same end state).

The gateway under test has no SDK retries and a short read timeout (``conftest``): every fault
reaches the product, and a held request costs about a second. The SDK's own retries absorbing
faults are tested in ``tests/lib/test_stripe_gateway.py`` and ``tests/lib/payouts``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from emulator.page_driver import consent
from lib import connect_onboarding, webhooks
from lib import sync as sync_cli
from lib.accounts import get_account
from lib.connect_flow import (
    connection_status,
    create_oauth_link,
    create_onboarding_link,
    handle_oauth_callback,
)
from lib.errors import ConnectOpsError
from lib.freelancers import get_freelancer
from lib.models import (
    AttemptOutcome,
    AuditLog,
    ConnectionAttempt,
    Payout,
    PayoutReversal,
    WebhookEvent,
)
from lib.payouts import __main__ as payouts_cli
from lib.payouts.execution import execute_payout, retry_unsettled
from lib.payouts.ledger import request_payout
from lib.payouts.reconciliation import RESOLVED_PAID, RETRY_SAME_KEY, SAVED_ERROR, reconcile
from lib.payouts.reversal import retry_reversal, reverse_payout
from lib.roles import Operator, Role
from lib.sync import SYSTEM_OPERATOR, sync_all_accounts
from tests.factories import TEST_SECRET_KEY
from tests.faults.conftest import DELAY_SECONDS, HELD_RETRY_DELAY_SECONDS, Sweep

ADMIN = Operator("alice", frozenset({Role.ADMIN}))
FINANCE = Operator("fiona", frozenset({Role.FINANCE}))
API = "/api/v1/freelancer"
PAYOUTS = "/api/v1/admin/payouts"
AMOUNT = 2500

FAULTS = ("none", "delay", "http_500", "rate_limit", "lock_timeout", "commit_then_drop")
#: Faults after which Stripe has executed the request (the response was lost or too late).
EXECUTED = frozenset({"delay", "commit_then_drop"})

USERS = """credentials:
  usernames:
    fiona: {name: Fiona, email: fiona@example.com, password: "$2b$04$notarealhashnotarealhash", roles: [finance]}
"""


@dataclass
class Outcome:
    """What the user saw: a short label (compared with MATRIX) and the message shown."""

    label: str
    message: str = ""


@dataclass
class Scenario:
    name: str
    call: str  # the gateway call
    operation: str  # who triggers it, and how
    path: str  # the fault's path (a Stripe template or a prefix)
    method: str
    setup: Callable[[Sweep], dict[str, Any]]
    act: Callable[[Sweep, dict[str, Any]], Outcome]
    #: Asserts the state right after the fault is truthful (given the fault's name).
    truthful: Callable[[Sweep, dict[str, Any], str], None]
    #: The documented recovery path, run after the fault is cleared (given the fault's name).
    recover: Callable[[Sweep, dict[str, Any], str], None]
    #: The end state; must equal the fault-free run's.
    end: Callable[[Sweep, dict[str, Any]], dict[str, Any]]
    expected_end: dict[str, Any] = field(default_factory=dict)
    #: How long a "delay" fault holds the request (longer where a retry races the held one).
    delay: float = DELAY_SECONDS


# ---- small helpers ------------------------------------------------------------------------------


def _json_outcome(response: Any) -> Outcome:
    body = response.json()
    if response.status_code >= 400 and "success" in body:
        assert body["success"] is False
    message = str(body.get("message") or body.get("error") or "")
    error = (body.get("data") or {}).get("error") if isinstance(body.get("data"), dict) else None
    if error:  # a payout row's recorded Stripe error, as the API returns it
        message += f" ({error['code']}: {error['message']})"
    return Outcome(str(response.status_code), message)


def _retry_while_held(again: Callable[[], Outcome], label: str, money: Callable[[], int]) -> None:
    """A retry while Stripe still holds the first attempt's key is refused as in flight."""
    early = again()
    assert early.label == label, early
    _assert_clear(early.message)
    assert "still processing an earlier attempt" in early.message, early.message
    assert money() <= 1


def _redirect_outcome(response: Any, stripe_base: str) -> Outcome:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    if location.startswith(stripe_base):
        return Outcome("redirect:stripe", location)
    parts = urlsplit(location)
    if parts.path == "/freelancer/stripe/error":
        reason = parse_qs(parts.query)["reason"][0]
        return Outcome(f"redirect:{reason}", location)
    if parts.path == "/freelancer/stripe/success":
        return Outcome("redirect:success", location)
    return Outcome(f"redirect:{parts.path}", location)


def _raises(action: Callable[[], Any], ok: Callable[[Any], Outcome]) -> Outcome:
    try:
        result = action()
    except ConnectOpsError as exc:
        return Outcome(f"raises:{exc.code}", exc.message)
    return ok(result)


def _attempts(sweep: Sweep, freelancer_id: int) -> list[ConnectionAttempt]:
    with sweep.session_factory() as session:
        return list(session.scalars(select(ConnectionAttempt).where(
            ConnectionAttempt.freelancer_id == freelancer_id).order_by(ConnectionAttempt.id)))


def _outcomes(sweep: Sweep, freelancer_id: int) -> list[str]:
    return [a.outcome for a in _attempts(sweep, freelancer_id)]


def _assert_failed_attempts_are_server_errors(sweep: Sweep, freelancer_id: int) -> None:
    for attempt in _attempts(sweep, freelancer_id):
        if attempt.outcome == AttemptOutcome.FAILED.value:
            assert attempt.failure_reason == "server_error"


def _account_id_of(sweep: Sweep, freelancer_id: int) -> str | None:
    with sweep.session_factory() as session:
        return get_freelancer(session, freelancer_id=freelancer_id).stripe_account_id


def _mirror(sweep: Sweep, account_id: str) -> dict[str, Any] | None:
    with sweep.session_factory() as session:
        mirror = get_account(session, stripe_id=account_id)
        return dict(mirror.raw) if mirror is not None else None


def _status_of(sweep: Sweep, freelancer_id: int) -> str:
    with sweep.session_factory() as session:
        return connection_status(session, freelancer_id=freelancer_id).status.value


def _payouts(sweep: Sweep) -> list[Payout]:
    with sweep.session_factory() as session:
        return list(session.scalars(select(Payout).order_by(Payout.id)))


def _transfers(sweep: Sweep) -> int:
    return sweep.counts()["transfers"]


def _platform_usd(sweep: Sweep) -> int:
    return int(sweep.emu.state()["balances"]["platform"]["usd"]["available"])


def _payout_body(freelancer_id: int) -> str:
    return json.dumps({"freelancerId": freelancer_id, "amount": "25.00", "currency": "usd",
                       "description": "Invoice 77"})


def _signed_attempt(sweep: Sweep, attempt_id: int, *, returning: bool = False) -> str:
    """The ``attempt`` value of the link's refresh URL (or return URL): each its own."""
    urls = connect_onboarding.signed_onboarding_urls(sweep.settings, attempt_id, generation=0)
    return parse_qs(urlsplit(urls[1 if returning else 0]).query)["attempt"][0]


def _link(sweep: Sweep, freelancer_id: int) -> int:
    """Issue an onboarding link (with the patient gateway); returns its attempt id."""
    return create_onboarding_link(sweep.session_factory, gateway=sweep.patient,
                                  settings=sweep.settings, operator=ADMIN,
                                  freelancer_id=freelancer_id).attempt_id


def _ledger_row(sweep: Sweep, freelancer_id: int, *, executed_with: Any | None = None) -> int:
    with sweep.session_factory.begin() as session:
        payout_id = request_payout(
            session, operator=ADMIN, freelancer_id=freelancer_id, amount="25.00",
            currency="usd", description="Invoice 77", client_request_token=uuid.uuid4().hex,
            settings=sweep.settings).id
    if executed_with is not None:
        execute_payout(sweep.session_factory, gateway=executed_with, payout_id=payout_id,
                       operator=ADMIN)
    return payout_id


def _unknown_row_whose_transfer_exists(sweep: Sweep) -> tuple[int, str]:
    """A payout Stripe executed but whose answer was lost: the row says unknown."""
    freelancer_id, _ = sweep.express_freelancer()
    sweep.emu.inject_fault("commit_then_drop", "/v1/transfers", method="POST", count=1)
    payout_id = _ledger_row(sweep, freelancer_id, executed_with=sweep.gateway)
    (row,) = _payouts(sweep)
    assert row.status == "unknown"
    (transfer_id,) = sweep.full()["transfers"].keys()
    return payout_id, transfer_id


def _paid_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    rows = _payouts(sweep)
    return {"rows": len(rows), "status": [r.status for r in rows],
            "transfers": _transfers(sweep),
            "platform_spent": ctx["balance_before"] - _platform_usd(sweep)}


PAID_END = {"rows": 1, "status": ["paid"], "transfers": 1, "platform_spent": AMOUNT}


# ---- 1. create_express_account: a new freelancer asks for an onboarding link ------------------


def _express_setup(sweep: Sweep) -> dict[str, Any]:
    freelancer_id = sweep.freelancer()
    return {"freelancer": freelancer_id, "headers": sweep.freelancer_headers(freelancer_id),
            "accounts_before": sweep.counts()["accounts"]}


def _ask_onboarding_link(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    return _json_outcome(sweep.http.get(f"{API}/stripe-connect-url",
                                        params={"method": "onboarding"}, headers=ctx["headers"]))


def _express_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    # Nothing is attached or recorded as issued: the freelancer got no link.
    assert _account_id_of(sweep, ctx["freelancer"]) is None
    assert AttemptOutcome.PENDING.value not in _outcomes(sweep, ctx["freelancer"])
    if fault == "delay":
        _retry_while_held(lambda: _ask_onboarding_link(sweep, ctx), "503",
                          lambda: sweep.counts()["accounts"] - ctx["accounts_before"])
        assert _account_id_of(sweep, ctx["freelancer"]) is None


def _retry_link(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    retried = _ask_onboarding_link(sweep, ctx)
    assert retried.label == "200", retried


def _onboarding_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    _assert_failed_attempts_are_server_errors(sweep, ctx["freelancer"])
    return {"attached": _account_id_of(sweep, ctx["freelancer"]) is not None,
            "accounts_created": sweep.counts()["accounts"] - ctx["accounts_before"],
            "pending_attempts": _outcomes(sweep, ctx["freelancer"]).count("pending")}


# ---- 2. create_account_link: a freelancer with an account asks for a link ---------------------


def _link_setup(sweep: Sweep) -> dict[str, Any]:
    freelancer_id, account_id = sweep.express_freelancer(onboarded=False)
    return {"freelancer": freelancer_id, "account": account_id,
            "headers": sweep.freelancer_headers(freelancer_id),
            "accounts_before": sweep.counts()["accounts"]}


def _link_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _account_id_of(sweep, ctx["freelancer"]) == ctx["account"]
    # The attempt never reached the freelancer: it is a failure, not an open link that a later
    # onboarding would count as a success.
    assert _outcomes(sweep, ctx["freelancer"]) == ["failed"]
    _assert_failed_attempts_are_server_errors(sweep, ctx["freelancer"])


# ---- 3. create_account_link: Stripe sends the freelancer to refresh_url ------------------------


def _refresh_setup(sweep: Sweep) -> dict[str, Any]:
    ctx = _link_setup(sweep)
    ctx["signed"] = _signed_attempt(sweep, _link(sweep, ctx["freelancer"]))
    return ctx


def _open_refresh(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    response = sweep.http.get(f"{API}/stripe-connect-refresh", params={"attempt": ctx["signed"]})
    return _redirect_outcome(response, sweep.emu.base_url)


def _refresh_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _outcomes(sweep, ctx["freelancer"]) == ["pending", "failed"]
    _assert_failed_attempts_are_server_errors(sweep, ctx["freelancer"])


def _reload_refresh(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _open_refresh(sweep, ctx).label == "redirect:stripe"


def _refresh_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"pending_attempts": _outcomes(sweep, ctx["freelancer"]).count("pending"),
            "account": _account_id_of(sweep, ctx["freelancer"]) == ctx["account"]}


# ---- 4. retrieve_account: status with refresh=true ------------------------------------------------


def _changed_account_setup(sweep: Sweep) -> dict[str, Any]:
    freelancer_id, account_id = sweep.express_freelancer()
    sweep.emu.set_account(account_id, payouts_enabled=False)  # the mirror does not know yet
    return {"freelancer": freelancer_id, "account": account_id,
            "headers": sweep.freelancer_headers(freelancer_id)}


def _status_refresh(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    return _json_outcome(sweep.http.get(f"{API}/stripe-connect-status",
                                        params={"refresh": "true"}, headers=ctx["headers"]))


def _mirror_untouched(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    mirror = _mirror(sweep, ctx["account"])
    assert mirror is not None and mirror["payouts_enabled"] is True


def _retry_status(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _status_refresh(sweep, ctx).label == "200"


def _mirror_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    mirror = _mirror(sweep, ctx["account"]) or {}
    return {"payouts_enabled": mirror.get("payouts_enabled"),
            "attached": _account_id_of(sweep, ctx["freelancer"]) == ctx["account"]}


# ---- 5. retrieve_account: the freelancer returns from hosted onboarding --------------------------


def _return_setup(sweep: Sweep) -> dict[str, Any]:
    freelancer_id, account_id = sweep.express_freelancer(onboarded=False)
    attempt_id = _link(sweep, freelancer_id)
    sweep.emu.set_account(account_id, onboarding="complete")
    return {"freelancer": freelancer_id, "account": account_id, "attempt": attempt_id,
            "signed": _signed_attempt(sweep, attempt_id, returning=True)}


def _open_return(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    response = sweep.http.get(f"{API}/stripe-connect-return", params={"attempt": ctx["signed"]})
    return _redirect_outcome(response, sweep.emu.base_url)


def _return_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    (attempt,) = _attempts(sweep, ctx["freelancer"])
    assert attempt.returned_at is not None and attempt.outcome == "pending"


def _reload_return(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _open_return(sweep, ctx).label == "redirect:success"


def _return_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"attempts": _outcomes(sweep, ctx["freelancer"]),
            "status": _status_of(sweep, ctx["freelancer"])}


# ---- 6. retrieve_account: the account read right after a successful OAuth exchange ---------------


def _consented(sweep: Sweep) -> dict[str, Any]:
    freelancer_id = sweep.freelancer()
    with sweep.session_factory.begin() as session:
        url = create_oauth_link(session, gateway=sweep.patient, settings=sweep.settings,
                                operator=ADMIN, freelancer_id=freelancer_id).url
    redirect = consent(url)
    account_id = sweep.full()["oauth_codes"][redirect["code"]]["account"]
    return {"freelancer": freelancer_id, "redirect": redirect, "account": account_id,
            "headers": sweep.freelancer_headers(freelancer_id)}


def _callback(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    response = sweep.http.get(f"{API}/stripe-connect-callback", params=ctx["redirect"])
    return _redirect_outcome(response, sweep.emu.base_url)


def _connected_unmirrored(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    # Connected (Stripe said so), but not yet read: shown as pending, never as payable.
    assert _account_id_of(sweep, ctx["freelancer"]) == ctx["account"]
    assert _status_of(sweep, ctx["freelancer"]) == "PENDING"
    assert _outcomes(sweep, ctx["freelancer"]) == ["succeeded"]


def _oauth_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"attached": _account_id_of(sweep, ctx["freelancer"]) == ctx["account"],
            "at_stripe": sweep.connected_at_stripe(ctx["account"]),
            "status": _status_of(sweep, ctx["freelancer"]),
            "succeeded_attempts": _outcomes(sweep, ctx["freelancer"]).count("succeeded")}


# ---- 7. retrieve_account: an account.updated webhook ---------------------------------------------


def _account_event_setup(sweep: Sweep) -> dict[str, Any]:
    ctx = _changed_account_setup(sweep)
    ctx["event"] = {"id": f"evt_sweep{uuid.uuid4().hex[:16]}", "object": "event",
                    "type": "account.updated", "account": ctx["account"], "livemode": False,
                    "created": int(time.time()), "api_version": "2024-04-10",
                    "data": {"object": {"id": ctx["account"], "object": "account"}}}
    return ctx


#: The worker's retry policy in the sweep (the defaults: what production runs).
POLICY = webhooks.RetryPolicy()


def _worker_pass(sweep: Sweep, *, now: datetime | None = None) -> None:
    """What ``python -m lib.worker`` does with the due events, once (at ``now``)."""
    for claim in webhooks.claim_due(sweep.session_factory, worker_id="sweep-worker",
                                    policy=POLICY, now=now):
        webhooks.process_claim(sweep.session_factory, gateway=sweep.gateway, claim=claim,
                               policy=POLICY, now=now)


def _delivered_then_processed(sweep: Sweep, ctx: dict[str, Any], *, connect: bool) -> Outcome:
    """Stripe delivers (the intake answers at once), then the worker processes the event: the
    outcome is the answer Stripe got and the state the worker left, with its recorded error."""
    response = sweep.deliver(ctx["event"], connect=connect)
    _worker_pass(sweep)
    row = _event_status(sweep, ctx["event"]["id"])
    return Outcome(f"{response.status_code}:{row.status}", row.error or "")


def _deliver_account_event(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    return _delivered_then_processed(sweep, ctx, connect=True)


def _event_status(sweep: Sweep, event_id: str) -> WebhookEvent:
    with sweep.session_factory() as session:
        return session.scalars(select(WebhookEvent).where(
            WebhookEvent.stripe_event_id == event_id)).one()


def _account_event_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    _mirror_untouched(sweep, ctx, fault)
    row = _event_status(sweep, ctx["event"]["id"])
    assert row.status == "failed" and row.error and row.error.startswith("stripe_")


def _redeliver(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    """Stripe's redelivery is acknowledged and stores nothing; the worker's own retry, once its
    backoff has passed, processes the event."""
    response = sweep.deliver(ctx["event"], connect=ctx["event"]["type"].startswith("account"))
    assert response.status_code == 200 and response.json()["duplicate"] is True, response.text
    row = _event_status(sweep, ctx["event"]["id"])
    assert row.status == "failed" and row.next_attempt_at is not None
    _worker_pass(sweep, now=row.next_attempt_at)


def _account_event_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    return {**_mirror_end(sweep, ctx), "event": _event_status(sweep, ctx["event"]["id"]).status}


# ---- 8. retrieve_account: python -m lib.sync --account (a scheduler) -----------------------------


def _sync_one(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    capsys = ctx["capsys"]
    capsys.readouterr()
    code = sync_cli.main(["--account", ctx["account"]])
    err = capsys.readouterr().err
    if code:
        assert err.count("\n") == 1, err  # one line, never a traceback
    return Outcome(f"exit{code}", err)


def _rerun_sync_one(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _sync_one(sweep, ctx).label == "exit0"


# ---- 9. list accounts: the full sync --------------------------------------------------------------


def _sync_all_setup(sweep: Sweep) -> dict[str, Any]:
    for n in range(3):
        sweep.patient.create_express_account(email=f"s{n}@example.com", country="US",
                                             metadata={}, idempotency_key=f"sync-{n}")
    return {"sleeps": []}


def _sync_all(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    def ok(report: Any) -> Outcome:
        assert report.synced == 3
        return Outcome("ok:after_backoff" if report.rate_limited else "ok",
                       f"synced {report.synced} accounts, {report.rate_limited} page(s) retried")
    return _raises(lambda: sync_all_accounts(sweep.session_factory, gateway=sweep.gateway,
                                             operator=SYSTEM_OPERATOR,
                                             sleep=ctx["sleeps"].append), ok)


def _mirrored(sweep: Sweep) -> int:
    from lib.models import ConnectedAccount

    with sweep.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(ConnectedAccount)) or 0)


def _sync_all_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    if fault in ("rate_limit", "lock_timeout"):
        assert ctx["sleeps"] == [1.0]  # backed off once, then the same page again
    else:
        assert _mirrored(sweep) == 0


def _rerun_sync_all(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    if fault not in ("rate_limit", "lock_timeout"):
        assert _sync_all(sweep, ctx).label == "ok"


# ---- 10. create_login_link (no product caller; the gateway is swept alone) -------------------------


def _login_setup(sweep: Sweep) -> dict[str, Any]:
    _, account_id = sweep.express_freelancer()
    return {"account": account_id, "links": []}


def _login_link(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    def ok(link: Any) -> Outcome:
        ctx["links"].append(link.data["url"])
        return Outcome("ok")
    return _raises(lambda: sweep.gateway.create_login_link(ctx["account"]), ok)


def _nothing_local(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert ctx["links"] == []


def _retry_login(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _login_link(sweep, ctx).label == "ok"


# ---- 11. retrieve_balance: the preflight of an admin payout --------------------------------------


def _payout_setup(sweep: Sweep) -> dict[str, Any]:
    freelancer_id, account_id = sweep.express_freelancer()
    return {"freelancer": freelancer_id, "account": account_id, "key": uuid.uuid4().hex,
            "balance_before": _platform_usd(sweep)}


def _post_payout(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    return _json_outcome(sweep.http.post(PAYOUTS, content=_payout_body(ctx["freelancer"]),
                                         headers=sweep.admin_headers(ctx["key"])))


def _preflight_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    (row,) = _payouts(sweep)
    assert row.status == "pending" and row.error_code == "preflight_failed"
    assert "balance" in (row.error_message or "")
    assert _transfers(sweep) == 0


def _repost_payout(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _post_payout(sweep, ctx).label == "200"


# ---- 12. create_transfer: an admin payout through the API ----------------------------------------


def _transfer_setup(sweep: Sweep) -> dict[str, Any]:
    return {**_payout_setup(sweep), "retry_while_held": _post_payout}


def _unknown_never_failed(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    (row,) = _payouts(sweep)
    assert row.status == "unknown" and row.error_code and row.stripe_transfer_id is None
    if fault == "delay" and "retry_while_held" in ctx:
        _retry_while_held(lambda: ctx["retry_while_held"](sweep, ctx), "202",
                          lambda: _transfers(sweep))
        (row,) = _payouts(sweep)
        assert row.status == "unknown"
    sweep.settle_held()
    assert _transfers(sweep) == (1 if fault in EXECUTED else 0)


# ---- 13. create_transfer: the dashboard's "Send", recovered by reconciliation ------------------


def _send_from_dashboard(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    payout_id = _ledger_row(sweep, ctx["freelancer"])
    row = execute_payout(sweep.session_factory, gateway=sweep.gateway, payout_id=payout_id,
                         operator=ADMIN)
    return Outcome(row.status, row.error_message or "")


def _reconcile_then_retry(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    sweep.settle_held()
    report = reconcile(sweep.session_factory, gateway=sweep.gateway, operator=FINANCE,
                       since=datetime.now(UTC) - timedelta(hours=1))
    kinds = [item.kind for item in report.items]
    # Stripe did it: reconciliation finds the transfer. It did not: retry with the same key.
    assert kinds == ([RESOLVED_PAID] if fault in EXECUTED else [RETRY_SAME_KEY]), kinds
    retry_unsettled(sweep.session_factory, gateway=sweep.gateway, operator=ADMIN)


# ---- 14. list transfers: python -m lib.payouts reconcile ------------------------------------------


def _reconcile_cli_setup(sweep: Sweep) -> dict[str, Any]:
    balance_before = _platform_usd(sweep)
    _unknown_row_whose_transfer_exists(sweep)
    return {"balance_before": balance_before}


def _reconcile_cli(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    capsys = ctx["capsys"]
    capsys.readouterr()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    code = payouts_cli.main(["reconcile", "--since", today, "--operator", "fiona"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return Outcome(f"exit{code}", err)


def _still_unknown(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    (row,) = _payouts(sweep)
    assert row.status == "unknown" and _transfers(sweep) == 1


def _rerun_reconcile_cli(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _reconcile_cli(sweep, ctx).label == "exit0"


# ---- 15. retrieve_transfer: reconciliation of a paid row whose transfer is outside the period ----


def _old_transfer_setup(sweep: Sweep) -> dict[str, Any]:
    freelancer_id, _ = sweep.express_freelancer()
    balance_before = _platform_usd(sweep)
    sweep.emu.set_clock_offset(-7200)  # Stripe made the transfer two hours ago
    _ledger_row(sweep, freelancer_id, executed_with=sweep.patient)
    sweep.emu.set_clock_offset(0)
    return {"balance_before": balance_before, "reports": []}


def _reconcile_period(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    def run() -> Any:
        return reconcile(sweep.session_factory, gateway=sweep.gateway, operator=FINANCE,
                         since=datetime.now(UTC) - timedelta(hours=1))

    def ok(report: Any) -> Outcome:
        ctx["reports"].append(report.summary())
        return Outcome("ok")
    return _raises(run, ok)


def _still_paid(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert [r.status for r in _payouts(sweep)] == ["paid"] and ctx["reports"] == []


def _rerun_reconcile(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _reconcile_period(sweep, ctx).label == "ok"


def _reconciled_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    return {**_paid_end(sweep, ctx), "report": ctx["reports"][-1]}


# ---- 16. retrieve_transfer: a transfer.created webhook settles an unknown row --------------------


def _transfer_event_setup(sweep: Sweep) -> dict[str, Any]:
    balance_before = _platform_usd(sweep)
    _, transfer_id = _unknown_row_whose_transfer_exists(sweep)
    event = {"id": f"evt_sweep{uuid.uuid4().hex[:16]}", "object": "event",
             "type": "transfer.created", "livemode": False, "created": int(time.time()),
             "api_version": "2024-04-10",
             "data": {"object": {"id": transfer_id, "object": "transfer"}}}
    return {"balance_before": balance_before, "event": event}


def _deliver_transfer_event(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    return _delivered_then_processed(sweep, ctx, connect=False)


def _transfer_event_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    _still_unknown(sweep, ctx, fault)
    assert _event_status(sweep, ctx["event"]["id"]).status == "failed"


# ---- 17. create_transfer_reversal: an admin reverses a paid payout -------------------------------


def _reversal_setup(sweep: Sweep) -> dict[str, Any]:
    freelancer_id, _ = sweep.express_freelancer()
    balance_before = _platform_usd(sweep)
    payout_id = _ledger_row(sweep, freelancer_id, executed_with=sweep.patient)
    return {"payout": payout_id, "balance_before": balance_before}


def _reverse(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    reversal = reverse_payout(sweep.session_factory, gateway=sweep.gateway, operator=ADMIN,
                              payout_id=ctx["payout"], amount=None, reason="Duplicate invoice",
                              settings=sweep.settings)
    ctx["reversal"] = reversal.id
    return Outcome(reversal.status, reversal.error_message or "")


def _reservation_kept(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    (row,) = _payouts(sweep)
    # Still paid, and the amount is reserved so nobody can reverse it twice meanwhile.
    assert row.status == "paid" and row.amount_reversed_minor == AMOUNT
    if fault == "delay":
        def again() -> Outcome:
            early = retry_reversal(sweep.session_factory, gateway=sweep.gateway, operator=ADMIN,
                                   reversal_id=ctx["reversal"])
            return Outcome(early.status, early.error_message or "")
        _retry_while_held(again, "unknown", lambda: sweep.counts()["reversals"])
    sweep.settle_held()
    assert sweep.counts()["reversals"] == (1 if fault in EXECUTED else 0)


def _retry_reversal(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    done = retry_reversal(sweep.session_factory, gateway=sweep.gateway, operator=ADMIN,
                          reversal_id=ctx["reversal"])
    assert done.status == "succeeded"


def _reversal_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    with sweep.session_factory() as session:
        reversals = [r.status for r in session.scalars(select(PayoutReversal))]
    (row,) = _payouts(sweep)
    return {"payout": row.status, "reversed_minor": row.amount_reversed_minor,
            "reversals": reversals, "stripe_reversals": sweep.counts()["reversals"],
            "platform_spent": ctx["balance_before"] - _platform_usd(sweep)}


# ---- 18. OAuth token exchange: the callback ---------------------------------------------------------


def _exchange_truthful(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _account_id_of(sweep, ctx["freelancer"]) is None
    assert _outcomes(sweep, ctx["freelancer"]) == ["failed"]
    _assert_failed_attempts_are_server_errors(sweep, ctx["freelancer"])
    sweep.settle_held()
    # Never retried with the same code: a second exchange would have revoked the connection.
    assert sweep.connected_at_stripe(ctx["account"]) is (fault in EXECUTED)
    assert sweep.full()["oauth_codes"][ctx["redirect"]["code"]]["used"] is (fault in EXECUTED)
    # The browser reloading the callback cannot exchange it again: the state is spent.
    assert _callback(sweep, ctx).label == "redirect:invalid_state"
    assert sweep.connected_at_stripe(ctx["account"]) is (fault in EXECUTED)


def _freelancer_retries_link(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    response = sweep.http.get(f"{API}/stripe-connect-url", headers=ctx["headers"])
    assert response.status_code == 200
    # The freelancer picks the same Standard account on Stripe's consent page.
    ctx["redirect"] = consent(response.json()["data"]["connectUrl"], account=ctx["account"])
    assert _callback(sweep, ctx).label == "redirect:success"


# ---- 19. OAuth deauthorize: the freelancer disconnects -----------------------------------------


def _oauth_connected_setup(sweep: Sweep) -> dict[str, Any]:
    ctx = _consented(sweep)
    result = handle_oauth_callback(sweep.session_factory, gateway=sweep.patient,
                                   params=ctx["redirect"])
    assert result.success and result.account_id == ctx["account"]
    return ctx


def _disconnect(sweep: Sweep, ctx: dict[str, Any]) -> Outcome:
    return _json_outcome(sweep.http.delete(f"{API}/stripe-connect", headers=ctx["headers"]))


def _still_connected_locally(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _account_id_of(sweep, ctx["freelancer"]) == ctx["account"]
    sweep.settle_held()
    assert sweep.connected_at_stripe(ctx["account"]) is (fault not in EXECUTED)


def _disconnect_again(sweep: Sweep, ctx: dict[str, Any], fault: str) -> None:
    assert _disconnect(sweep, ctx).label == "200"


def _disconnected_end(sweep: Sweep, ctx: dict[str, Any]) -> dict[str, Any]:
    return {"attached": _account_id_of(sweep, ctx["freelancer"]),
            "at_stripe": sweep.connected_at_stripe(ctx["account"]),
            "deauthorized_in_mirror": bool((_mirror(sweep, ctx["account"]) or {}) and
                                           _deauthorized_at(sweep, ctx["account"]))}


def _deauthorized_at(sweep: Sweep, account_id: str) -> bool:
    with sweep.session_factory() as session:
        mirror = get_account(session, stripe_id=account_id)
        return mirror is not None and mirror.deauthorized_at is not None


# ---- the table ------------------------------------------------------------------------------------


SCENARIOS = [
    Scenario("express_account_create", "create_express_account",
             "freelancer API: GET stripe-connect-url?method=onboarding (no account yet)",
             "/v1/accounts", "POST", _express_setup, _ask_onboarding_link, _express_truthful,
             _retry_link, _onboarding_end,
             {"attached": True, "accounts_created": 1, "pending_attempts": 1},
             delay=HELD_RETRY_DELAY_SECONDS),
    Scenario("account_link", "create_account_link",
             "freelancer API: GET stripe-connect-url?method=onboarding (account exists)",
             "/v1/account_links", "POST", _link_setup, _ask_onboarding_link, _link_truthful,
             _retry_link, _onboarding_end,
             {"attached": True, "accounts_created": 0, "pending_attempts": 1}),
    Scenario("account_link_refresh", "create_account_link",
             "browser: GET stripe-connect-refresh (Stripe's refresh_url)",
             "/v1/account_links", "POST", _refresh_setup, _open_refresh, _refresh_truthful,
             _reload_refresh, _refresh_end, {"pending_attempts": 2, "account": True}),
    Scenario("status_refresh", "retrieve_account",
             "freelancer API: GET stripe-connect-status?refresh=true",
             "/v1/accounts/{account}", "GET", _changed_account_setup, _status_refresh,
             _mirror_untouched, _retry_status, _mirror_end,
             {"payouts_enabled": False, "attached": True}),
    Scenario("onboarding_return", "retrieve_account",
             "browser: GET stripe-connect-return (Stripe's return_url)",
             "/v1/accounts/{account}", "GET", _return_setup, _open_return, _return_truthful,
             _reload_return, _return_end, {"attempts": ["succeeded"], "status": "ACTIVE"}),
    Scenario("oauth_callback_account_read", "retrieve_account",
             "browser: GET stripe-connect-callback, the read after the exchange",
             "/v1/accounts/{account}", "GET", _consented, _callback, _connected_unmirrored,
             lambda sweep, ctx, fault: _retry_status(sweep, ctx, fault), _oauth_end,
             {"attached": True, "at_stripe": True, "status": "ACTIVE",
              "succeeded_attempts": 1}),
    Scenario("account_webhook", "retrieve_account",
             "Stripe: account.updated to /api/v1/stripe/connect-webhooks",
             "/v1/accounts/{account}", "GET", _account_event_setup, _deliver_account_event,
             _account_event_truthful, _redeliver, _account_event_end,
             {"payouts_enabled": False, "attached": True, "event": "processed"}),
    Scenario("sync_one_cli", "retrieve_account",
             "scheduler: python -m lib.sync --account acct_…",
             "/v1/accounts/{account}", "GET", _changed_account_setup, _sync_one,
             _mirror_untouched, _rerun_sync_one, _mirror_end,
             {"payouts_enabled": False, "attached": True}),
    Scenario("sync_all", "list_accounts",
             "dashboard Accounts → Sync / python -m lib.sync (every account)",
             "/v1/accounts", "GET", _sync_all_setup, _sync_all, _sync_all_truthful,
             _rerun_sync_all, lambda sweep, ctx: {"mirrored": _mirrored(sweep)},
             {"mirrored": 3}),
    Scenario("login_link", "create_login_link",
             "no product caller (gateway only)",
             "/v1/accounts/{account}/login_links", "POST", _login_setup, _login_link,
             _nothing_local, _retry_login, lambda sweep, ctx: {"links": len(ctx["links"])},
             {"links": 1}),
    Scenario("payout_preflight_balance", "retrieve_balance",
             "admin API: POST /api/v1/admin/payouts (preflight before the first attempt)",
             "/v1/balance", "GET", _payout_setup, _post_payout, _preflight_truthful,
             _repost_payout, _paid_end, PAID_END),
    Scenario("payout_api", "create_transfer",
             "admin API: POST /api/v1/admin/payouts, retried with the same Idempotency-Key",
             "/v1/transfers", "POST", _transfer_setup, _post_payout, _unknown_never_failed,
             _repost_payout, _paid_end, PAID_END, delay=HELD_RETRY_DELAY_SECONDS),
    Scenario("payout_reconciled", "create_transfer",
             "dashboard Payouts → Send, settled by reconciliation + retry_unsettled",
             "/v1/transfers", "POST", _payout_setup, _send_from_dashboard,
             _unknown_never_failed, _reconcile_then_retry, _paid_end, PAID_END),
    Scenario("reconcile_list_cli", "list_transfers",
             "python -m lib.payouts reconcile (an unknown row Stripe did pay)",
             "/v1/transfers", "GET", _reconcile_cli_setup, _reconcile_cli, _still_unknown,
             _rerun_reconcile_cli, _paid_end, PAID_END),
    Scenario("reconcile_retrieve", "retrieve_transfer",
             "dashboard Reconciliation (a paid row whose transfer predates the period)",
             "/v1/transfers/{transfer}", "GET", _old_transfer_setup, _reconcile_period,
             _still_paid, _rerun_reconcile, _reconciled_end,
             {**PAID_END, "report": {"transfers_seen": 0, "ledger_rows_checked": 1,
                                     "matched": 1}}),
    Scenario("transfer_webhook", "retrieve_transfer",
             "Stripe: transfer.created to /api/v1/stripe/webhooks (settles an unknown row)",
             "/v1/transfers/{transfer}", "GET", _transfer_event_setup, _deliver_transfer_event,
             _transfer_event_truthful, _redeliver, _paid_end, PAID_END),
    Scenario("reversal", "create_transfer_reversal",
             "dashboard Payouts → Reverse, then retry_reversal with the same key",
             "/v1/transfers/", "POST", _reversal_setup, _reverse, _reservation_kept,
             _retry_reversal, _reversal_end,
             {"payout": "reversed", "reversed_minor": AMOUNT, "reversals": ["succeeded"],
              "stripe_reversals": 1, "platform_spent": 0},
             delay=HELD_RETRY_DELAY_SECONDS),
    Scenario("oauth_exchange", "oauth_token",
             "browser: GET stripe-connect-callback (code exchange; never retried)",
             "/oauth/token", "POST", _consented, _callback, _exchange_truthful,
             _freelancer_retries_link, _oauth_end,
             {"attached": True, "at_stripe": True, "status": "ACTIVE",
              "succeeded_attempts": 1}),
    Scenario("oauth_deauthorize", "oauth_deauthorize",
             "freelancer API: DELETE stripe-connect",
             "/oauth/deauthorize", "POST", _oauth_connected_setup, _disconnect,
             _still_connected_locally, _disconnect_again, _disconnected_end,
             {"attached": None, "at_stripe": False, "deauthorized_in_mirror": True}),
]

def _row(ok: str, failed: str, **special: str) -> dict[str, str]:
    row = {"none": ok, **{f: failed for f in FAULTS[1:]}}
    row.update(special)
    return row


def _codes(ok: str) -> dict[str, str]:
    return {"none": ok, "delay": "raises:stripe_connection_error",
            "commit_then_drop": "raises:stripe_connection_error",
            "http_500": "raises:stripe_unavailable", "rate_limit": "raises:stripe_rate_limited",
            "lock_timeout": "raises:stripe_rate_limited"}


#: What the user sees, per operation and fault: the matrix of the sweep.
MATRIX: dict[str, dict[str, str]] = {
    "express_account_create": _row("200", "503"),
    "account_link": _row("200", "503"),
    "account_link_refresh": _row("redirect:stripe", "redirect:server_error"),
    "status_refresh": _row("200", "503"),
    "onboarding_return": _row("redirect:success", "redirect:server_error"),
    "oauth_callback_account_read": _row("redirect:success", "redirect:success"),
    "account_webhook": _row("200:processed", "200:failed"),
    "sync_one_cli": _row("exit0", "exit1"),
    "sync_all": {**_codes("ok"), "rate_limit": "ok:after_backoff",
                 "lock_timeout": "ok:after_backoff"},
    "login_link": _codes("ok"),
    "payout_preflight_balance": _row("200", "409"),
    "payout_api": _row("200", "202"),
    "payout_reconciled": _row("paid", "unknown"),
    "reconcile_list_cli": _row("exit0", "exit1"),
    "reconcile_retrieve": _codes("ok"),
    "transfer_webhook": _row("200:processed", "200:failed"),
    "reversal": _row("succeeded", "unknown"),
    "oauth_exchange": _row("redirect:success", "redirect:server_error"),
    "oauth_deauthorize": _row("200", "503"),
}

_FORBIDDEN = ("Traceback", "sk_test", "whsec_", TEST_SECRET_KEY, "stripe._error",
              "APIConnectionError", "RateLimitError", "HTTPConnectionPool", "requests.")


def _assert_clear(message: str) -> None:
    """A message fit for a person: present, no traceback, no secret, no raw SDK text."""
    assert message.strip(), "an empty message"
    for needle in _FORBIDDEN:
        assert needle not in message, f"{needle!r} in {message!r}"


def test_matrix_covers_every_scenario_and_fault() -> None:
    assert set(MATRIX) == {s.name for s in SCENARIOS}
    assert all(set(row) == set(FAULTS) for row in MATRIX.values())
    calls = {s.call for s in SCENARIOS}
    assert calls == {"create_express_account", "retrieve_account", "list_accounts",
                     "create_account_link", "create_login_link", "retrieve_balance",
                     "create_transfer", "retrieve_transfer", "list_transfers",
                     "create_transfer_reversal", "oauth_token", "oauth_deauthorize"}


@pytest.fixture
def cli_ready(sweep: Sweep, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
              ) -> None:
    sweep.cli_environment(monkeypatch, database_url)
    users = tmp_path / "auth.yaml"
    users.write_text(USERS)
    monkeypatch.setenv("AUTH_CONFIG_PATH", str(users))
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setattr("lib.cli.configure_logging", lambda level: None)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_stripe_fault_sweep(sweep: Sweep, cli_ready: None, capsys: pytest.CaptureFixture[str],
                            scenario: Scenario, fault: str) -> None:
    ctx = scenario.setup(sweep)
    ctx["capsys"] = capsys
    if fault != "none":
        sweep.arm(fault, scenario.path, scenario.method, delay=scenario.delay)

    outcome = scenario.act(sweep, ctx)

    assert outcome.label == MATRIX[scenario.name][fault], (scenario.operation, outcome)
    if fault != "none":
        _assert_clear(outcome.message)
        scenario.truthful(sweep, ctx, fault)
    sweep.settle_held()
    sweep.emu.clear_faults()
    if fault != "none":
        scenario.recover(sweep, ctx, fault)
    sweep.settle_held()
    assert scenario.end(sweep, ctx) == scenario.expected_end, scenario.operation


def test_a_saved_500_through_the_payout_api(sweep: Sweep) -> None:
    """Issue 16, finding 5: a 500 Stripe saved under the payout's key (its default for a 500
    during execution) is replayed to every retry. The API says so (202, unknown), a repost does
    not call Stripe again, and reconciliation hands the row to a person; nothing is paid twice.
    """
    ctx = _payout_setup(sweep)
    sweep.emu.inject_fault("http_500", "/v1/transfers", method="POST")  # saved under the key
    first = sweep.http.post(PAYOUTS, content=_payout_body(ctx["freelancer"]),
                            headers=sweep.admin_headers(ctx["key"]))
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["data"]["status"] == "unknown"
    assert body["data"]["error"]["code"] == "stripe_saved_server_error"
    assert "replay it to every retry" in body["message"]
    _assert_clear(body["message"])
    again = sweep.http.post(PAYOUTS, content=_payout_body(ctx["freelancer"]),
                            headers=sweep.admin_headers(ctx["key"]))
    assert again.status_code == 202
    assert again.json()["data"]["payoutId"] == body["data"]["payoutId"]
    with sweep.session_factory() as session:  # sent once: the repost did not try again
        submits = session.scalars(select(AuditLog.result).where(
            AuditLog.action == "payout.submit")).all()
    assert submits == ["submitted"]
    report = reconcile(sweep.session_factory, gateway=sweep.gateway, operator=FINANCE,
                       since=datetime.now(UTC) - timedelta(hours=1))
    assert [item.kind for item in report.items] == [SAVED_ERROR]
    assert _transfers(sweep) == 0
