"""Run the emulator inside a test process and talk to it with the real SDK.

    with running_emulator() as emu:
        client = stripe_client(emu.base_url)
        acct = client.v1.accounts.create(params={"type": "express"})
        emu.set_account(acct.id, onboarding="complete")

The server runs uvicorn in a background thread on a free 127.0.0.1 port; the handle's
helpers call the /_emulator control API over HTTP, exactly as a product test in another
process would.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import stripe
import uvicorn

from emulator.config import DEFAULT_API_VERSION, EmulatorConfig
from emulator.server import create_app

logger = logging.getLogger(__name__)

DEFAULT_API_KEY = "sk_test_emulator"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmulatorHandle:
    """A running emulator: its address and thin wrappers over the control API."""

    def __init__(self, base_url: str, config: EmulatorConfig) -> None:
        self.base_url = base_url
        self.config = config
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(path, json=body or {})
        if response.status_code >= 400:
            raise RuntimeError(f"{path}: {response.status_code} {response.text}")
        return response.json()

    def reset(self) -> None:
        """Fresh platform state, no faults, empty delivery log."""
        self._post("/_emulator/reset")

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Change runtime config (webhook_url, webhook_secret, extra_redirect_uris, ...)."""
        return self._post("/_emulator/config", fields)

    def inject_fault(self, kind: str, path: str = "/", **options: Any) -> dict[str, Any]:
        """Arm a fault: delay/http_500/rate_limit/lock_timeout/commit_then_drop/duplicate/out_of_order."""
        return self._post("/_emulator/faults", {"kind": kind, "path": path, **options})

    def clear_faults(self) -> None:
        """Disarm all faults."""
        self.http.delete("/_emulator/faults").raise_for_status()

    def flush_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook was delivered (or gave up)."""
        response = self.http.post("/_emulator/webhooks/flush", json={"timeout": timeout})
        return bool(response.json().get("ok"))

    def deliveries(self) -> list[dict[str, Any]]:
        """The webhook delivery log."""
        return list(self.http.get("/_emulator/webhooks/deliveries").json()["data"])

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no Stripe-facing request is being served (e.g. one held by a delay fault)."""
        deadline = time.monotonic() + timeout
        while self.state()["in_flight"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the emulator still serves a request after {timeout} s")
            time.sleep(0.05)

    def state(self, full: bool = False) -> dict[str, Any]:
        """Counts and balances (and the whole state with full=True)."""
        return dict(self.http.get("/_emulator/state", params={"full": str(full).lower()}).json())

    def set_account(self, account_id: str, **fields: Any) -> dict[str, Any]:
        """Force account state: onboarding='complete', requirements={...}, capabilities={...}, ..."""
        return self._post(f"/_emulator/accounts/{account_id}", fields)

    def set_balance(self, amount: int, currency: str = "usd", mode: str = "set", **extra: Any) -> dict[str, Any]:
        """Set or add to the platform's (or an account's) balance."""
        return self._post("/_emulator/balance", {"amount": amount, "currency": currency, "mode": mode, **extra})

    def advance_clock(self, seconds: float) -> int:
        """Move emulator time forward; returns the new emulator now."""
        return int(self._post("/_emulator/clock/advance", {"seconds": seconds})["now"])

    def set_clock_offset(self, offset: float) -> int:
        """Emulator time = wall clock + ``offset`` seconds (may be negative)."""
        return int(self._post("/_emulator/clock/set", {"offset": offset})["now"])

    def fail_payout(self, payout_id: str, failure_code: str = "account_closed") -> dict[str, Any]:
        """Fail a payout now (payout.failed)."""
        return self._post(f"/_emulator/payouts/{payout_id}/fail", {"failure_code": failure_code})

    def resend_event(self, event_id: str) -> None:
        """Deliver an event again."""
        self._post(f"/_emulator/events/{event_id}/resend")

    def close(self) -> None:
        """Close the control client."""
        self.http.close()


def _wait_until_up(base_url: str, thread: threading.Thread, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("emulator thread exited during start-up")
        try:
            if httpx.get(f"{base_url}/_emulator/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"emulator did not answer at {base_url} within {timeout}s")


@contextmanager
def running_emulator(config: EmulatorConfig | None = None) -> Iterator[EmulatorHandle]:
    """Start an emulator on a free loopback port in a thread (the config's port is ignored)."""
    cfg = config or EmulatorConfig(host="127.0.0.1", port=0)
    # Bind first and hand uvicorn the socket: asking for a free port and binding it later
    # races with every other process on the machine picking ports the same way.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Always a fresh port: a config's default (12111) may be a running demo's.
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    cfg = cfg.replace(host="127.0.0.1", port=port)
    app = create_app(cfg)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="emulator-uvicorn", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    handle = EmulatorHandle(base_url, cfg)
    try:
        _wait_until_up(base_url, thread)
        yield handle
    finally:
        handle.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def stripe_client(
    base_url: str,
    api_key: str = DEFAULT_API_KEY,
    client_id: str = "ca_emulator_connectops",
    **kwargs: Any,
) -> stripe.StripeClient:
    """A stripe.StripeClient whose api and connect base addresses point at the emulator.

    It sends the API version the emulator models (the SDK's own default is newer, and the
    emulator refuses a version it does not model), unless ``stripe_version`` says otherwise.
    """
    kwargs.setdefault("max_network_retries", 0)
    kwargs.setdefault("stripe_version", DEFAULT_API_VERSION)
    return stripe.StripeClient(
        api_key,
        client_id=client_id,
        base_addresses={"api": base_url, "connect": base_url},
        **kwargs,
    )
