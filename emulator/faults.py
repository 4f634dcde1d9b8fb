"""Injected faults: make the next N matching requests fail the ways Stripe can fail.

Kinds: `delay` (hold the request `seconds`, before executing it or, with phase="after",
after executing it), `http_500` (api_error; with an Idempotency-Key it is saved under the key
and replayed to every retry, as Stripe does once execution started; `phase="after"`: the request
took effect before the 500; `saved=false`: a 500 before execution, nothing saved), `rate_limit` (429 code
rate_limit), `lock_timeout` (429 code lock_timeout with `Stripe-Should-Retry: true`),
`commit_then_drop` (execute and save the result, then close the connection with no
response). A fault matches on method (optional) and on `path`: a Stripe template such as
`/v1/transfers/{transfer}` matches that template, anything else is a path prefix.

The two 429 kinds take optional retry hints, the headers Stripe's client libraries honour:
`retry_after` (seconds, sent as `Retry-After`) and `should_retry` (sent as
`Stripe-Should-Retry`, overriding lock_timeout's default `true`).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.errors import StripeApiError
from emulator.store import random_token

KINDS = ("delay", "http_500", "rate_limit", "lock_timeout", "commit_then_drop")
RATE_LIMITS = ("rate_limit", "lock_timeout")


@dataclass
class Fault:
    """One armed fault and how many more requests it will hit."""

    kind: str
    path: str = "/"
    method: str | None = None
    count: int = 1
    seconds: float = 0.0
    phase: str = "before"
    retry_after: int | None = None
    should_retry: bool | None = None
    #: http_500 only: saved under the request's Idempotency-Key (and replayed) or not.
    saved: bool = True
    id: str = field(default_factory=lambda: "fault_" + random_token(10))

    def matches(self, method: str, path: str, template: str | None) -> bool:
        """Does this fault apply to the request?"""
        if self.method and self.method.upper() != method.upper():
            return False
        if "{" in self.path:
            return template == self.path
        return path.startswith(self.path)


def make_fault(spec: dict[str, Any]) -> Fault:
    """Build a fault from the control API's JSON, refusing what it cannot honour."""
    kind = spec.get("kind") or spec.get("type")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    count = int(spec.get("count", 1))
    if count < 1:
        raise ValueError("count must be >= 1")
    phase = str(spec.get("phase", "before"))
    if phase not in ("before", "after"):
        raise ValueError("phase must be 'before' or 'after'")
    seconds = float(spec.get("seconds", 0))
    if kind == "delay" and seconds <= 0:
        raise ValueError("delay needs seconds > 0")
    retry_after = spec.get("retry_after")
    should_retry = spec.get("should_retry")
    if (retry_after is not None or should_retry is not None) and kind not in RATE_LIMITS:
        raise ValueError("retry_after and should_retry apply to rate_limit and lock_timeout")
    if retry_after is not None and (type(retry_after) is not int or retry_after < 0):
        raise ValueError("retry_after must be whole seconds >= 0")
    if should_retry is not None and not isinstance(should_retry, bool):
        raise ValueError("should_retry must be true or false")
    saved = spec.get("saved", True)
    if "saved" in spec and kind != "http_500":
        raise ValueError("saved applies to http_500")
    if not isinstance(saved, bool):
        raise ValueError("saved must be true or false")
    return Fault(
        kind=str(kind),
        path=str(spec.get("path", "/")),
        method=spec.get("method"),
        count=count,
        seconds=seconds,
        phase=phase,
        retry_after=retry_after,
        should_retry=should_retry,
        saved=saved,
    )


class FaultRegistry:
    """The armed faults, consumed one request at a time (thread-safe)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        """Arm a fault."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm everything."""
        with self._lock:
            self._faults.clear()

    def armed(self) -> list[dict[str, Any]]:
        """Armed faults as JSON."""
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, method: str, path: str, template: str | None) -> list[Fault]:
        """The faults that hit this request (at most one per kind), each counted down once."""
        hit: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if any(h.kind == fault.kind for h in hit):
                    continue
                if fault.matches(method, path, template):
                    hit.append(fault)
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
        return hit


def fault_error(kind: str, fault: Fault | None = None) -> StripeApiError | None:
    """The error Stripe sends for a refusing fault, or None for delay/commit_then_drop."""
    refusal = _refusal(kind)
    if refusal is not None and fault is not None:
        if fault.retry_after is not None:
            refusal.headers["Retry-After"] = str(fault.retry_after)
        if fault.should_retry is not None:
            refusal.headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
    return refusal


def _refusal(kind: str) -> StripeApiError | None:
    if kind == "http_500":
        return StripeApiError(
            500,
            "An unknown error occurred",
            type="api_error",
        )
    if kind == "rate_limit":
        return StripeApiError(
            429,
            "Request rate limit exceeded. You can learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            code="rate_limit",
        )
    if kind == "lock_timeout":
        return StripeApiError(
            429,
            "This object cannot be accessed right now because another API request or Stripe "
            "process is currently accessing it. If you see this error intermittently, retry "
            "the request. If you see this error frequently and are making multiple concurrent "
            "requests to a single object, make your requests serially or at a lower rate. "
            "See https://stripe.com/docs/rate-limits for more information.",
            code="lock_timeout",
            headers={"Stripe-Should-Retry": "true"},
        )
    return None
