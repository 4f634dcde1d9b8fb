"""Stripe's idempotency layer for POST requests.

Keyed by (secret key, Stripe-Account, Idempotency-Key). Once a request *starts executing*
its result is saved, errors included, and the same key with the same parameters replays it
byte for byte (`Idempotent-Replayed: true`). The same key with other parameters is a 400
idempotency_error; a key whose first request is still running is a 409. Requests refused
before execution (bad key, unknown parameter, rate limit) save nothing, as on Stripe.
Saved results live in the store (so they survive a restart) for 24 hours.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from emulator.errors import StripeApiError
from emulator.store import Store

RETENTION_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class SavedResponse:
    """A response as first sent: status, exact body bytes, and the headers Stripe replays."""

    status: int
    body: str
    request_id: str


def record_key(api_key: str, account: str | None, idempotency_key: str) -> str:
    """The storage key; hashed so the state file never holds an API key."""
    raw = "\0".join((api_key, account or "", idempotency_key))
    return hashlib.sha256(raw.encode()).hexdigest()


def fingerprint(method: str, path: str, params: dict[str, Any]) -> str:
    """What "the same request" means: method, path and the decoded parameters."""
    canonical = json.dumps([method, path, params], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyLayer:
    """Look up, reserve and save results for idempotency keys."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    def begin(self, key: str, idem_key: str, request_fingerprint: str) -> SavedResponse | None:
        """A saved response to replay, None when this request may execute (now reserved)."""
        if len(idem_key) > MAX_KEY_LENGTH:
            raise StripeApiError(
                400,
                f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters long.",
                param="Idempotency-Key",
            )
        with self._store.transaction() as state:
            self._prune(state)
            saved = state["idempotency"].get(key)
            if saved is not None:
                if saved["fingerprint"] != request_fingerprint:
                    raise StripeApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{idem_key}' if you meant to execute a different request.",
                        type="idempotency_error",
                        headers={"Stripe-Should-Retry": "false"},
                    )
                return SavedResponse(saved["status"], saved["body"], saved["request_id"])
        with self._lock:
            if key in self._in_flight:
                raise StripeApiError(
                    409,
                    "There is currently another in-progress request using this Idempotent Key "
                    "(that probably means you submitted twice, and the other request is still "
                    f"going through): '{idem_key}'. Please try again later.",
                    type="idempotency_error",
                    code="idempotency_key_in_use",
                )
            self._in_flight.add(key)
        return None

    def finish(self, key: str, request_fingerprint: str, response: SavedResponse) -> None:
        """Save the result of an executed request and release the reservation."""
        with self._store.transaction() as state:
            state["idempotency"][key] = {
                "fingerprint": request_fingerprint,
                "status": response.status,
                "body": response.body,
                "request_id": response.request_id,
                "created": self._store.now(),
            }
            self._store.mark_dirty()
        self.release(key)

    def release(self, key: str) -> None:
        """Drop the reservation without saving (the request never executed)."""
        with self._lock:
            self._in_flight.discard(key)

    def _prune(self, state: dict[str, Any]) -> None:
        cutoff = self._store.now() - RETENTION_SECONDS
        stale = [k for k, v in state["idempotency"].items() if v["created"] < cutoff]
        for k in stale:
            del state["idempotency"][k]
        if stale:
            self._store.mark_dirty()
