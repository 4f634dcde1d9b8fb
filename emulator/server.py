"""The emulator's ASGI application: Stripe's API, OAuth, hosted pages and the control API.

`create_app(config)` builds a Starlette app around one `Runtime`. It is wrapped by
`EmulatorASGI`, which adds two things Starlette alone cannot: turning any unexpected
exception into Stripe's 500 api_error JSON (logged with its traceback), and closing the
connection without a response when a request carries the commit_then_drop fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from emulator import control, oauth, onboarding
from emulator.api import DROP_FLAG, error_response, handle_api
from emulator.config import EmulatorConfig
from emulator.errors import StripeApiError, unrecognized_url
from emulator.runtime import Runtime
from emulator.store import new_id

logger = logging.getLogger(__name__)

ALL_METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH"]


async def not_found(request: Request) -> Response:
    """Any other URL: Stripe's 404 'Unrecognized request URL'."""
    return error_response(unrecognized_url(request.method, request.url.path), new_id("req", 14))


async def _stripe_500(request: Request, exc: Exception) -> Response:
    """Starlette's last-resort handler, answering like Stripe (the wrapper logs the error)."""
    request_id = new_id("req", 14)
    body = StripeApiError(500, "An unknown error occurred", type="api_error").to_body(request_id)
    return Response(
        json.dumps(body, indent=2),
        status_code=500,
        media_type="application/json",
        headers={"Request-Id": request_id},
    )


def create_app(config: EmulatorConfig, runtime: Runtime | None = None) -> EmulatorASGI:
    """Build the emulator app (the runtime starts and stops with the ASGI lifespan)."""
    rt = runtime or Runtime(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt.start()
        try:
            yield
        finally:
            rt.stop()

    routes = [
        Route("/v1/{path:path}", handle_api, methods=ALL_METHODS),
        *oauth.ROUTES,
        *onboarding.ROUTES,
        *control.ROUTES,
        Route("/{path:path}", not_found, methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={500: _stripe_500})
    app.state.runtime = rt
    return EmulatorASGI(app, rt)


class EmulatorASGI:
    """Outermost ASGI layer: Stripe-shaped 500s, and dropped connections on request."""

    def __init__(self, app: Starlette, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if scope.get(DROP_FLAG):
                if message["type"] == "http.response.start":
                    logger.info("commit_then_drop: closing %s without a response", scope.get("path"))
                    await _drop_connection(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        counted = 0 if scope.get("path", "").startswith("/_emulator/") else 1
        self.runtime.count_request(counted)
        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            logger.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
            if started:
                return
            request_id = new_id("req", 14)
            body = StripeApiError(500, "An unknown error occurred", type="api_error").to_body(request_id)
            response = Response(
                json.dumps(body, indent=2),
                status_code=500,
                media_type="application/json",
                headers={"Request-Id": request_id},
            )
            await response(scope, receive, send)
        finally:
            self.runtime.count_request(-counted)


async def _drop_connection(send: Send) -> None:
    """Close the client's TCP connection before any response byte is written.

    uvicorn's `send` is a bound method of its request-response cycle, which holds the
    transport; aborting it makes the client see a connection reset, which the SDK reports
    as APIConnectionError (and retries). The cycle is marked disconnected so uvicorn does
    not try to write a 500 afterwards.
    """
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("commit_then_drop needs uvicorn's transport")
    transport.abort()
    cycle.disconnected = True
    await asyncio.sleep(0)
