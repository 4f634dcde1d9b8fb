"""The test-control API under /_emulator: not part of Stripe's surface.

JSON in, JSON out, no authentication (the emulator only listens on loopback). Every route
is documented in emulator/README.md.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import account_state
from emulator.agreements import agreement_of
from emulator.config import RUNTIME_FIELDS, ConfigError
from emulator.faults import make_fault
from emulator.resources.balance import balance_object, pending_funds
from emulator.resources.common import Ctx
from emulator.resources.payouts import fail_payout, pay_payout
from emulator.runtime import Runtime
from emulator.store import PLATFORM

WEBHOOK_FAULTS = ("duplicate", "out_of_order")
REQUIREMENT_KEYS = (
    "currently_due",
    "eventually_due",
    "past_due",
    "pending_verification",
    "errors",
    "current_deadline",
    "disabled_reason",
    "alternatives",
)


class ControlError(ValueError):
    """A bad control request (answered 400 with {"error": message})."""


def _rt(request: Request) -> Runtime:
    return request.app.state.runtime


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ControlError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    return body


def _fail(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _guard(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except (ControlError, ConfigError, ValueError, TypeError) as exc:
            return _fail(str(exc))
        except KeyError as exc:
            return _fail(f"not found: {exc.args[0]}", 404)

    wrapped.__doc__ = handler.__doc__
    return wrapped


def _public_config(runtime: Runtime) -> dict[str, Any]:
    cfg = dataclasses.asdict(runtime.store.config)
    for secret in ("webhook_secret", "connect_webhook_secret"):
        cfg[secret] = "********" if cfg[secret] else None
    cfg["redirect_uris"] = list(runtime.store.config.redirect_uris)
    return cfg


async def reset(request: Request) -> Response:
    """POST /_emulator/reset: a brand-new platform."""
    _rt(request).reset()
    return JSONResponse({"ok": True})


async def health(request: Request) -> Response:
    """GET /_emulator/health."""
    return JSONResponse({"ok": True})


async def state(request: Request) -> Response:
    """GET /_emulator/state: counts and requests in flight, or the whole state with ?full=true."""
    rt = _rt(request)
    snap = rt.store.snapshot()
    counts = {
        name: len(snap[name])
        for name in ("accounts", "transfers", "reversals", "charges", "payouts", "events", "idempotency")
    }
    counts["connected_accounts"] = sum(1 for c in snap["connections"].values() if c["active"])
    body: dict[str, Any] = {
        "counts": counts,
        "now": rt.store.now(),
        "platform_id": snap["platform_id"],
        "balances": snap["balances"],
        "in_flight": rt.in_flight,
    }
    if request.query_params.get("full") in ("1", "true", "yes"):
        snap.pop("idempotency", None)
        body["state"] = snap
    return JSONResponse(body)


async def get_config(request: Request) -> Response:
    """GET /_emulator/config (secrets masked)."""
    return JSONResponse(_public_config(_rt(request)))


async def set_config(request: Request) -> Response:
    """POST /_emulator/config: change webhook URLs/secrets, redirect URIs, ... at runtime."""
    rt = _rt(request)
    body = await _json(request)
    bad = set(body) - RUNTIME_FIELDS
    if bad:
        raise ControlError(f"cannot change at runtime: {', '.join(sorted(bad))}")
    rt.store.set_config(rt.store.config.replace(**body))
    return JSONResponse(_public_config(rt))


async def advance_clock(request: Request) -> Response:
    """POST /_emulator/clock/advance {"seconds": n}: move emulator time forward."""
    body = await _json(request)
    seconds = float(body.get("seconds", 0))
    if seconds < 0:
        raise ControlError("seconds must be >= 0")
    now = _rt(request).store.advance_clock(seconds)
    return JSONResponse({"now": now})


async def set_clock(request: Request) -> Response:
    """POST /_emulator/clock/set {"offset": n}: put emulator time at wall clock + n seconds.

    Unlike ``advance``, ``n`` may be negative: demo seeding uses it to create objects in the
    past (a payout history), then sets the offset back to 0.
    """
    body = await _json(request)
    try:
        offset = float(body.get("offset", 0))
    except (TypeError, ValueError):
        raise ControlError("offset must be a number of seconds") from None
    store = _rt(request).store
    with store.transaction():
        store.state["clock_offset"] = offset
        store.mark_dirty()
    return JSONResponse({"now": store.now(), "offset": offset})


async def get_clock(request: Request) -> Response:
    """GET /_emulator/clock."""
    store = _rt(request).store
    return JSONResponse({"now": store.now(), "offset": store.state.get("clock_offset", 0.0)})


async def set_balance(request: Request) -> Response:
    """POST /_emulator/balance {"currency","amount","mode","account"?,"pending"?,"available_on"?}."""
    rt = _rt(request)
    body = await _json(request)
    currency = str(body.get("currency", "usd")).lower()
    amount = int(body["amount"])
    mode = body.get("mode", "set")
    if mode not in ("set", "add"):
        raise ControlError("mode must be 'set' or 'add'")
    scope = body.get("account") or PLATFORM
    field = "pending" if body.get("pending") else "available"
    with rt.store.transaction() as s:
        if scope != PLATFORM and scope not in s["accounts"]:
            raise KeyError(scope)
        cell = s["balances"].setdefault(scope, {}).setdefault(currency, {"available": 0, "pending": 0})
        before = cell[field]
        cell[field] = amount if mode == "set" else cell[field] + amount
        if cell[field] < 0:
            raise ControlError("a balance cannot go below zero here")
        if field == "pending" and cell[field] > before:
            # The date Stripe would release them: available_on (unix), default in 2 days.
            available_on = int(body.get("available_on") or rt.store.now() + 2 * 86_400)
            pending_funds(rt.store, scope, currency=currency, amount=cell[field] - before,
                          available_on=available_on)
        rt.store.mark_dirty()
        ctx = Ctx(store=rt.store, request_id="", api_key="")
        result = balance_object(ctx, scope)
    return JSONResponse(result)


def _apply_account_overrides(acct: dict[str, Any], body: dict[str, Any]) -> None:
    onboarding = body.get("onboarding")
    if onboarding == "complete":
        account_state.complete_onboarding(acct)
    elif onboarding == "incomplete":
        account_state.leave_onboarding_incomplete(acct)
    elif onboarding is not None:
        raise ControlError("onboarding must be 'complete' or 'incomplete'")
    for group in ("requirements", "future_requirements"):
        given = body.get(group)
        if given is None:
            continue
        if not isinstance(given, dict) or set(given) - set(REQUIREMENT_KEYS):
            raise ControlError(f"{group} takes only {', '.join(REQUIREMENT_KEYS)}")
        acct[group].update(given)
    for key in ("disabled_reason", "current_deadline"):
        if key in body:
            acct["requirements"][key] = body[key]
    for key in ("charges_enabled", "payouts_enabled", "details_submitted"):
        if key in body:
            acct[key] = bool(body[key])
    caps = body.get("capabilities")
    if caps is not None:
        if not isinstance(caps, dict) or any(
            v not in ("active", "inactive", "pending", "unrequested", None) for v in caps.values()
        ):
            raise ControlError("capabilities: {name: active|inactive|pending|unrequested}")
        for name, status in caps.items():
            if status in ("unrequested", None):
                acct["capabilities"].pop(name, None)
            else:
                acct["capabilities"][name] = status
    if "metadata" in body:
        acct["metadata"] = dict(body["metadata"] or {})


def _check_agreement_overrides(acct: dict[str, Any], body: dict[str, Any]) -> None:
    """A forced state must still be one Stripe can reach: recipient accounts never charge."""
    if agreement_of(acct) != "recipient":
        return
    if body.get("charges_enabled"):
        raise ControlError("a recipient account cannot have charges_enabled (it cannot process "
                           "payments)")
    if (body.get("capabilities") or {}).get("card_payments") not in (None, "unrequested"):
        raise ControlError("a recipient account cannot have the card_payments capability")


async def set_account(request: Request) -> Response:
    """POST /_emulator/accounts/{id}: force requirements, flags, capabilities (account.updated)."""
    rt = _rt(request)
    account_id = request.path_params["account"]
    body = await _json(request)
    with rt.store.transaction() as s:
        if account_id not in s["accounts"]:
            raise KeyError(account_id)
        _check_agreement_overrides(s["accounts"][account_id], body)
        acct = account_state.change_account(rt.store, account_id, lambda a: _apply_account_overrides(a, body))
        for cap in body.get("capabilities") or {}:
            s["connections"][account_id].setdefault("requested_at", {}).setdefault(cap, rt.store.now())
        result = json.loads(json.dumps(acct))
    return JSONResponse(result)


async def add_fault(request: Request) -> Response:
    """POST /_emulator/faults: arm a request fault or a webhook delivery fault."""
    rt = _rt(request)
    body = await _json(request)
    kind = body.get("kind") or body.get("type")
    if kind in WEBHOOK_FAULTS:
        count = int(body.get("count", 1))
        rt.dispatcher.set_faults(**{kind: count})
        return JSONResponse({"kind": kind, "count": count})
    fault = make_fault(body)
    rt.faults.add(fault)
    return JSONResponse(dataclasses.asdict(fault))


async def list_faults(request: Request) -> Response:
    """GET /_emulator/faults."""
    rt = _rt(request)
    return JSONResponse({"requests": rt.faults.armed(), "webhooks": rt.dispatcher.faults()})


async def clear_faults(request: Request) -> Response:
    """DELETE /_emulator/faults."""
    rt = _rt(request)
    rt.faults.clear()
    rt.dispatcher.set_faults(duplicate=0, out_of_order=0)
    return JSONResponse({"ok": True})


async def flush_webhooks(request: Request) -> Response:
    """POST /_emulator/webhooks/flush {"timeout"?}: wait for the delivery queue to drain."""
    body = await _json(request)
    timeout = float(body.get("timeout", 10))
    ok = await run_in_threadpool(_rt(request).dispatcher.flush, timeout)
    return JSONResponse({"ok": ok}, status_code=200 if ok else 504)


async def deliveries(request: Request) -> Response:
    """GET /_emulator/webhooks/deliveries: every delivery attempt, oldest first."""
    return JSONResponse({"data": list(_rt(request).dispatcher.deliveries)})


async def resend_event(request: Request) -> Response:
    """POST /_emulator/events/{id}/resend: deliver an event again."""
    rt = _rt(request)
    event_id = request.path_params["event"]
    with rt.store.transaction() as s:
        event = s["events"][event_id]
    rt.dispatcher.enqueue([event], apply_faults=False)
    return JSONResponse({"ok": True, "id": event_id})


async def fail_payout_route(request: Request) -> Response:
    """POST /_emulator/payouts/{id}/fail {"failure_code"?}: fail a payout now."""
    rt = _rt(request)
    body = await _json(request)
    with rt.store.transaction() as s:
        payout = s["payouts"][request.path_params["payout"]]
        if payout["status"] in ("failed", "canceled"):
            raise ControlError(f"payout is already {payout['status']}")
        result = fail_payout(rt.store, payout["id"], str(body.get("failure_code", "account_closed")))
        result = json.loads(json.dumps(result))
    return JSONResponse(result)


async def pay_payout_route(request: Request) -> Response:
    """POST /_emulator/payouts/{id}/pay: settle a pending payout as paid now."""
    rt = _rt(request)
    with rt.store.transaction() as s:
        payout = s["payouts"][request.path_params["payout"]]
        if payout["status"] not in ("pending", "in_transit"):
            raise ControlError(f"payout is {payout['status']}")
        result = json.loads(json.dumps(pay_payout(rt.store, payout["id"])))
    return JSONResponse(result)


async def fail_next_payouts(request: Request) -> Response:
    """POST /_emulator/payouts/fail_next {"count"?, "failure_code"?}: next payouts will fail."""
    rt = _rt(request)
    body = await _json(request)
    count = int(body.get("count", 1))
    code = str(body.get("failure_code", "account_closed"))
    with rt.store.transaction() as s:
        s.setdefault("payout_outcomes", []).extend([code] * count)
        rt.store.mark_dirty()
        queued = list(s["payout_outcomes"])
    return JSONResponse({"queued": queued})


ROUTES = [
    Route("/_emulator/health", _guard(health), methods=["GET"]),
    Route("/_emulator/reset", _guard(reset), methods=["POST"]),
    Route("/_emulator/state", _guard(state), methods=["GET"]),
    Route("/_emulator/config", _guard(get_config), methods=["GET"]),
    Route("/_emulator/config", _guard(set_config), methods=["POST"]),
    Route("/_emulator/clock", _guard(get_clock), methods=["GET"]),
    Route("/_emulator/clock/advance", _guard(advance_clock), methods=["POST"]),
    Route("/_emulator/clock/set", _guard(set_clock), methods=["POST"]),
    Route("/_emulator/balance", _guard(set_balance), methods=["POST"]),
    Route("/_emulator/accounts/{account}", _guard(set_account), methods=["POST"]),
    Route("/_emulator/faults", _guard(add_fault), methods=["POST"]),
    Route("/_emulator/faults", _guard(list_faults), methods=["GET"]),
    Route("/_emulator/faults", _guard(clear_faults), methods=["DELETE"]),
    Route("/_emulator/webhooks/flush", _guard(flush_webhooks), methods=["POST"]),
    Route("/_emulator/webhooks/deliveries", _guard(deliveries), methods=["GET"]),
    Route("/_emulator/events/{event}/resend", _guard(resend_event), methods=["POST"]),
    Route("/_emulator/payouts/fail_next", _guard(fail_next_payouts), methods=["POST"]),
    Route("/_emulator/payouts/{payout}/fail", _guard(fail_payout_route), methods=["POST"]),
    Route("/_emulator/payouts/{payout}/pay", _guard(pay_payout_route), methods=["POST"]),
]
