"""Fixtures: one emulator per test session (reset before each test), SDK clients, and a
tiny webhook receiver running on its own port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar, cast

import pytest
import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from stripe.params import AccountCreateParams

from emulator.testing import EmulatorHandle, free_port, running_emulator, stripe_client

_T = TypeVar("_T")


def present(value: _T | None) -> _T:
    """``value``, asserted present: the SDK types nearly every field of a response optional."""
    assert value is not None
    return value


def error_code(error: stripe.StripeError) -> Any:
    """The ``error.code`` of the JSON body Stripe (here, the emulator) answered with."""
    body = error.json_body
    assert isinstance(body, dict)
    return body["error"]["code"]


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[EmulatorHandle]:
    """The session's emulator."""
    with running_emulator() as handle:
        yield handle


@pytest.fixture
def emu(emulator_session: EmulatorHandle) -> EmulatorHandle:
    """The emulator, reset to a fresh platform for this test."""
    emulator_session.reset()
    emulator_session.configure(
        webhook_url=None,
        webhook_secret=None,
        connect_webhook_url=None,
        connect_webhook_secret=None,
        extra_redirect_uris=[],
        payout_settle_seconds=0,
    )
    return emulator_session


@pytest.fixture
def client(emu: EmulatorHandle) -> stripe.StripeClient:
    """An unmodified SDK client pointed at the emulator, no automatic retries."""
    return stripe_client(emu.base_url)


def express_account(client: stripe.StripeClient, emu: EmulatorHandle, *, onboarded: bool = True, **params: Any) -> Any:
    """A same-country Express account (full agreement: card_payments and transfers requested),
    onboarded through the control API."""
    capabilities = {"card_payments": {"requested": True}, "transfers": {"requested": True}}
    # Any parameters a test names (valid or not): the emulator judges them, not the types.
    body = cast(AccountCreateParams, {"type": "express", "capabilities": capabilities,
                                      **params})
    acct = client.v1.accounts.create(params=body)
    if onboarded:
        emu.set_account(acct.id, onboarding="complete")
    return acct


class Receiver:
    """Records every POST it gets: raw body bytes and headers; status it answers is settable."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answered in order, then 200
        self.lock = threading.Lock()
        self.url = ""

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        with self.lock:
            self.requests.append({"path": request.url.path, "body": body, "headers": dict(request.headers)})
            status = self.statuses.pop(0) if self.statuses else 200
        return PlainTextResponse("ok", status_code=status)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.statuses.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        return list(self.requests)


@pytest.fixture(scope="session")
def receiver_session() -> Iterator[Receiver]:
    """A webhook receiver on another free loopback port."""
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.hook, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 5
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield receiver
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def receiver(receiver_session: Receiver) -> Receiver:
    """The receiver, emptied for this test."""
    receiver_session.clear()
    return receiver_session
