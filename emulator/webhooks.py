"""Webhook delivery: a background thread POSTs signed events to the configured endpoints.

Platform events go to `webhook_url` signed with `webhook_secret`; events carrying an
`account` go to `connect_webhook_url` signed with `connect_webhook_secret`. The signature
is Stripe's: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` over the exact
bytes sent. Non-2xx answers and connection errors are retried with backoff a bounded number
of times. Delivery faults: `duplicate` sends the next N events twice, `out_of_order` holds
the next N events and sends them reversed.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from emulator.config import EmulatorConfig
from emulator.store import Store

logger = logging.getLogger(__name__)

MAX_LOG = 2000


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header value for `payload`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def endpoint_for(event: dict[str, Any], config: EmulatorConfig) -> tuple[str | None, str | None]:
    """(url, secret) of the endpoint this event goes to, either may be None."""
    if event.get("account"):
        return config.connect_webhook_url, config.connect_webhook_secret
    return config.webhook_url, config.webhook_secret


@dataclass
class _Job:
    event_id: str
    attempt: int = 0
    not_before: float = 0.0


class WebhookDispatcher:
    """Queue and worker thread that deliver events without ever holding the store lock."""

    def __init__(self, store: Store, *, client_factory: Callable[[], httpx.Client] | None = None) -> None:
        self._store = store
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._client_factory = client_factory or (lambda: httpx.Client(timeout=5.0))
        self.deliveries: list[dict[str, Any]] = []
        self._duplicate = 0
        self._out_of_order = 0
        self._held: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="emulator-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker after its current attempt."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)

    # -- faults ----------------------------------------------------------------------------
    def set_faults(self, *, duplicate: int | None = None, out_of_order: int | None = None) -> None:
        """Arm delivery faults for the next N events."""
        with self._cond:
            if duplicate is not None:
                self._duplicate = max(0, duplicate)
            if out_of_order is not None:
                self._out_of_order = max(0, out_of_order)

    def faults(self) -> dict[str, int]:
        """Armed delivery faults."""
        with self._cond:
            return {"duplicate": self._duplicate, "out_of_order": self._out_of_order, "held": len(self._held)}

    def clear(self) -> None:
        """Forget queued jobs, held events, faults and the delivery log (reset)."""
        with self._cond:
            self._queue.clear()
            self._held.clear()
            self._duplicate = self._out_of_order = 0
            self.deliveries.clear()
            self._cond.notify_all()

    # -- queueing --------------------------------------------------------------------------
    def enqueue(self, events: list[dict[str, Any]], *, apply_faults: bool = True) -> None:
        """Queue events for delivery (the store calls this after a transaction commits)."""
        config = self._store.config
        with self._cond:
            for event in events:
                url, secret = endpoint_for(event, config)
                if not url or not secret:
                    continue
                if apply_faults and self._out_of_order > 0:
                    self._out_of_order -= 1
                    self._held.append(event["id"])
                    if self._out_of_order == 0:
                        self._release_held()
                    continue
                self._queue.append(_Job(event["id"]))
                if apply_faults and self._duplicate > 0:
                    self._duplicate -= 1
                    self._queue.append(_Job(event["id"]))
            self._cond.notify_all()

    def _release_held(self) -> None:
        for event_id in reversed(self._held):
            self._queue.append(_Job(event_id))
        self._held.clear()

    def flush(self, timeout: float = 10.0) -> bool:
        """Release held events and wait until nothing is queued or in flight."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._held:
                self._release_held()
                self._cond.notify_all()
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    # -- worker ----------------------------------------------------------------------------
    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._stop:
                now = time.monotonic()
                for job in list(self._queue):
                    if job.not_before <= now:
                        self._queue.remove(job)
                        self._busy += 1
                        return job
                self._cond.wait(0.05)
        return None

    def _run(self) -> None:
        with self._client_factory() as client:
            while True:
                job = self._next_job()
                if job is None:
                    return
                try:
                    self._attempt(client, job)
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._cond.notify_all()

    def _attempt(self, client: httpx.Client, job: _Job) -> None:
        config = self._store.config
        with self._store.transaction() as state:
            event = state["events"].get(job.event_id)
            payload = json.dumps(event, indent=2).encode() if event else b""
        if event is None:
            return
        url, secret = endpoint_for(event, config)
        if not url or not secret:
            return
        job.attempt += 1
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(payload, secret, timestamp),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        status: int | None = None
        error: str | None = None
        try:
            response = client.post(url, content=payload, headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        self._log(event, url, job.attempt, status, error, ok)
        if ok:
            with self._store.transaction() as state:
                stored = state["events"].get(event["id"])
                if stored and stored["pending_webhooks"] > 0:
                    stored["pending_webhooks"] -= 1
                    self._store.mark_dirty()
            return
        if job.attempt < config.webhook_max_attempts:
            job.not_before = time.monotonic() + config.webhook_retry_delay * (2 ** (job.attempt - 1))
            with self._cond:
                self._queue.append(job)
        else:
            logger.warning("giving up on %s to %s after %d attempts", event["id"], url, job.attempt)

    def _log(self, event: dict[str, Any], url: str, attempt: int, status: int | None, error: str | None, ok: bool) -> None:
        entry = {
            "event_id": event["id"],
            "type": event["type"],
            "account": event.get("account"),
            "url": url,
            "attempt": attempt,
            "status": status,
            "error": error,
            "ok": ok,
            "at": time.time(),
        }
        logger.info("webhook %s %s -> %s (attempt %d)", event["type"], event["id"], status or error, attempt)
        with self._cond:
            self.deliveries.append(entry)
            del self.deliveries[:-MAX_LOG]
