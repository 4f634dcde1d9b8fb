"""The /v1 request pipeline, in Stripe's order.

authenticate -> decode -> route -> (rate-limit style faults) -> Stripe-Account -> validate
-> idempotency reservation -> (delay) -> execute under the store lock -> save the result
-> (delay after / commit_then_drop). Anything refused before execution saves no
idempotent result, as on Stripe.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from emulator import account_state
from emulator.config import DEFAULT_API_VERSION
from emulator.errors import (
    StripeApiError,
    account_access_denied,
    invalid_api_key,
    unrecognized_url,
)
from emulator.faults import fault_error
from emulator.idempotency import SavedResponse, fingerprint, record_key
from emulator.resources import ROUTES
from emulator.resources.common import Ctx, RenderedBody, expand
from emulator.runtime import Runtime
from emulator.store import new_id
from emulator.validation import InvalidRequest, match_template, validate_params
from emulator.wire import WireError, decode_params

logger = logging.getLogger(__name__)

DROP_FLAG = "emulator.drop_connection"


def render(body: dict[str, Any]) -> str:
    """Stripe's JSON formatting (two-space indented)."""
    return json.dumps(body, indent=2)


def stripe_response(
    status: int,
    body: str,
    request_id: str,
    headers: dict[str, str] | None = None,
    version: str = DEFAULT_API_VERSION,
) -> Response:
    """A JSON response with the headers Stripe always sends."""
    out = {
        "Request-Id": request_id,
        "Stripe-Version": version,
        "Access-Control-Allow-Origin": "*",
        "Cache-Control": "no-cache, no-store",
    }
    out.update(headers or {})
    return Response(body, status_code=status, media_type="application/json", headers=out)


def error_response(exc: StripeApiError, request_id: str, extra_headers: dict[str, str] | None = None) -> Response:
    """A Stripe error envelope response."""
    headers = dict(exc.headers)
    headers.update(extra_headers or {})
    return stripe_response(exc.http_status, render(exc.to_body(request_id)), request_id, headers)


def from_invalid(exc: InvalidRequest) -> StripeApiError:
    """Validation's error as the emulator's error type (same fields)."""
    return StripeApiError(exc.http_status, exc.message, code=exc.code, param=exc.param)


def api_key_of(request: Request) -> str:
    """The secret key from Bearer or Basic auth ('' when absent or unreadable)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.split(":", 1)[0]
    return ""


def authenticate(request: Request) -> str:
    """The caller's test-mode secret key, or Stripe's 401."""
    key = api_key_of(request)
    if not key.startswith(("sk_test_", "rk_test_")) or len(key) <= len("sk_test_"):
        raise invalid_api_key(key)
    return key


def base_url(runtime: Runtime, request: Request) -> str:
    """Base for URLs the emulator hands out (EMULATOR_PUBLIC_URL or the request's own)."""
    if runtime.store.config.public_url:
        return runtime.store.config.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


@dataclass
class _Prepared:
    method: str
    ctx: Ctx
    template: str
    path_params: dict[str, str]
    params: dict[str, Any]
    raw_params: dict[str, Any]


def _check_account_header(runtime: Runtime, account: str | None, api_key: str) -> str | None:
    if not account or account == runtime.store.state["platform_id"]:
        return None
    with runtime.store.transaction():
        connected = account_state.is_connected(runtime.store, account)
    if not connected:
        raise account_access_denied(api_key, account)
    return account


async def handle_api(request: Request) -> Response:
    """Serve one /v1 request like Stripe."""
    runtime: Runtime = request.app.state.runtime
    request_id = new_id("req", 14)
    method = request.method.upper()
    path = request.url.path
    idem_header = request.headers.get("idempotency-key") if method == "POST" else None
    echo = {"Idempotency-Key": idem_header} if idem_header else {}
    try:
        api_key = authenticate(request)
        check_version(request.headers.get("stripe-version"))
        raw_text = (await request.body()).decode("utf-8", "replace") if method == "POST" else request.url.query
        try:
            raw_params = decode_params(raw_text)
        except WireError as exc:
            raise StripeApiError(400, exc.message, param=exc.param) from None
        matched = match_template(method, path)
        if matched is None or (method, matched[0]) not in ROUTES:
            raise unrecognized_url(method, path)
        template, path_params = matched
        faults = runtime.faults.take(method, path, template)
        for fault in faults:
            if fault.kind == "http_500" and fault.saved and idem_header:
                continue  # an error during execution: saved under the key below
            refusal = fault_error(fault.kind, fault)
            if refusal is not None:
                return error_response(refusal, request_id, echo)
        account = _check_account_header(runtime, request.headers.get("stripe-account"), api_key)
        try:
            params = validate_params(method, template, raw_params)
        except InvalidRequest as exc:
            raise from_invalid(exc) from None
    except StripeApiError as exc:
        return error_response(exc, request_id, echo)

    ctx = Ctx(
        store=runtime.store,
        request_id=request_id,
        api_key=api_key,
        account=account,
        idempotency_key=idem_header,
        base_url=base_url(runtime, request),
    )
    prepared = _Prepared(method, ctx, template, path_params, params, raw_params)
    kinds = {f.kind: f for f in faults}
    delay = kinds.get("delay")
    if idem_header is None:
        if delay and delay.phase == "before":
            await asyncio.sleep(delay.seconds)
        saved = await anyio.to_thread.run_sync(_execute, runtime, prepared)
    else:
        key = record_key(api_key, account, idem_header)
        request_fingerprint = fingerprint(method, path, raw_params)
        try:
            replay = runtime.idempotency.begin(key, idem_header, request_fingerprint)
        except StripeApiError as exc:
            return error_response(exc, request_id, echo)
        if replay is not None:
            replayed = {**echo, "Idempotent-Replayed": "true", "Original-Request": replay.request_id}
            if replay.status >= 400:
                replayed["Stripe-Should-Retry"] = "false"  # the same error, every time
            return stripe_response(replay.status, replay.body, request_id, replayed)
        try:
            if delay and delay.phase == "before":
                await asyncio.sleep(delay.seconds)
            server_error = kinds.get("http_500")
            if server_error is None:
                saved = await anyio.to_thread.run_sync(_execute, runtime, prepared)
            else:
                # Stripe saves a 500 once execution started and replays it to every retry
                # with this key; with phase "after" the request had taken effect first.
                if server_error.phase == "after":
                    await anyio.to_thread.run_sync(_execute, runtime, prepared)
                saved = _saved_server_error(request_id)
        except BaseException:
            runtime.idempotency.release(key)
            raise
        runtime.idempotency.finish(key, request_fingerprint, saved)
        echo["Original-Request"] = request_id
    if delay and delay.phase == "after":
        await asyncio.sleep(delay.seconds)
    if "commit_then_drop" in kinds:
        request.scope[DROP_FLAG] = True
    headers = dict(echo)
    if saved.status >= 400 and idem_header:
        headers["Stripe-Should-Retry"] = "false"
    return stripe_response(saved.status, saved.body, request_id, headers)


_VERSION_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def check_version(requested: str | None) -> None:
    """Refuse a ``Stripe-Version`` other than the one modelled (no header: the account's default).

    Answering a newer version with 2024-04-10's shapes and rules would let an upgrade pass
    every test here and break against Stripe; the pin must move with the emulator.
    """
    if requested is None or requested == DEFAULT_API_VERSION:
        return
    message = f"Invalid Stripe API version: {requested}"
    if _VERSION_FORMAT.match(requested):
        message += (f". This emulator models only Stripe API version {DEFAULT_API_VERSION}: "
                    "send that Stripe-Version, or teach the emulator the new version first.")
    raise StripeApiError(400, message, param="Stripe-Version")


def _saved_server_error(request_id: str) -> SavedResponse:
    error = StripeApiError(500, "An unknown error occurred", type="api_error")
    return SavedResponse(500, render(error.to_body(request_id)), request_id)


def _execute(runtime: Runtime, prepared: _Prepared) -> SavedResponse:
    """Run the handler under the store lock; a Stripe error becomes a saved error response."""
    ctx = prepared.ctx
    handler = ROUTES[(prepared.method, prepared.template)]
    try:
        with runtime.store.transaction():
            body = handler(ctx, prepared.params, prepared.path_params)
            if isinstance(body, RenderedBody):
                text = body.text
            else:
                # A copy: expand[] must not write into the stored objects.
                body = expand(ctx, json.loads(json.dumps(body)), prepared.params)
                text = render(body)
        return SavedResponse(200, text, ctx.request_id)
    except StripeApiError as exc:
        return SavedResponse(exc.http_status, render(exc.to_body(ctx.request_id)), ctx.request_id)

