"""The emulator's whole state: one JSON-shaped dict behind one lock, optionally on disk.

Every mutation runs inside `Store.transaction()`: the lock is held while handlers read and
write, the state file is rewritten atomically (temp file + rename) when the transaction
changed anything, and the events it recorded are handed to the webhook dispatcher only
after the lock is released, so a slow endpoint never stalls the API.

Reads that are expensive to derive (the connected accounts in list order, each account's
indented JSON) are cached per *generation*: every change to the state (`mark_dirty`,
`queue_event`, and the end of a transaction that changed anything) starts a new generation and
so drops them all. Handlers already mark every change for persistence, so the cache needs no
invalidation of its own; a list after a change costs what it cost without the cache.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
import string
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from emulator.config import EmulatorConfig

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

STATE_VERSION = 1
_ALNUM = string.ascii_letters + string.digits
COLLECTIONS = (
    "accounts",
    "transfers",
    "reversals",
    "charges",
    "payouts",
    "balance_transactions",
    "events",
    "account_links",
    "oauth_codes",
    "oauth_consents",
    "idempotency",
)
PLATFORM = "platform"

EventSink = Callable[[list[dict[str, Any]]], None]


def random_token(length: int) -> str:
    """Random alphanumeric text, like the tail of a Stripe id."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking id: `acct_` + 16 characters, `tr_` + 24, and so on."""
    if prefix == "acct":
        length = 16
    return f"{prefix}_{random_token(length)}"


def fresh_state(config: EmulatorConfig) -> dict[str, Any]:
    """The state of a new Stripe platform account: an initial balance and nothing else."""
    state: dict[str, Any] = {name: {} for name in COLLECTIONS}
    state["version"] = STATE_VERSION
    state["clock_offset"] = 0.0
    state["platform_id"] = new_id("acct")
    # Per-scope balances: {scope: {currency: {"available": n, "pending": n}}}.
    state["balances"] = {
        PLATFORM: {cur: {"available": amt, "pending": 0} for cur, amt in config.initial_balance}
    }
    # Which accounts are connected to this platform, and how (oauth / platform-created).
    state["connections"] = {}
    # Owner of objects created under a Stripe-Account header: {object id: account id}.
    state["scope"] = {}
    state["payout_outcomes"] = []
    state["seeded"] = False
    return state


class Store:
    """Thread-safe holder of the state dict, its clock, its persistence and its new events."""

    def __init__(self, config: EmulatorConfig, *, event_sink: EventSink | None = None) -> None:
        self._lock = threading.RLock()
        self._config = config
        self._event_sink = event_sink
        self._new_events: list[dict[str, Any]] = []
        self._depth = 0
        self._dirty = False
        self._generation = 0
        self._derived: dict[str, Any] = {}
        self._derived_generation = 0
        self.state: dict[str, Any] = self._load() or fresh_state(config)

    # -- configuration -------------------------------------------------------------------
    @property
    def config(self) -> EmulatorConfig:
        """The current (runtime-changeable) configuration."""
        return self._config

    def set_config(self, config: EmulatorConfig) -> None:
        """Swap the configuration (the `/_emulator/config` route)."""
        with self._lock:
            self._config = config

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Where recorded events go once a transaction commits (the webhook dispatcher)."""
        self._event_sink = sink

    # -- clock -----------------------------------------------------------------------------
    def now(self) -> int:
        """Emulator time in unix seconds: wall clock plus the offset tests advanced."""
        return int(time.time() + float(self.state.get("clock_offset", 0.0)))

    def advance_clock(self, seconds: float) -> int:
        """Move emulator time forward (code expiry, link expiry, payout settlement)."""
        with self.transaction():
            self.state["clock_offset"] = float(self.state.get("clock_offset", 0.0)) + seconds
            self.mark_dirty()
        return self.now()

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Hold the lock; on the outermost exit persist changes and publish new events."""
        events: list[dict[str, Any]] = []
        with self._lock:
            self._depth += 1
            try:
                yield self.state
            finally:
                self._depth -= 1
                if self._depth == 0:
                    if self._dirty:
                        self._dirty = False
                        # A change made after the last mark_dirty of this transaction.
                        self._generation += 1
                        self._save()
                    events, self._new_events = self._new_events, []
        if events and self._event_sink is not None:
            self._event_sink(events)

    def mark_dirty(self) -> None:
        """Note that the state changed, so the transaction saves it (and caches are dropped)."""
        self._dirty = True
        self._generation += 1

    def queue_event(self, event: dict[str, Any]) -> None:
        """Hand an event to the dispatcher when the current transaction ends."""
        self._new_events.append(event)
        self.mark_dirty()

    # -- derived data, cached until the state changes ----------------------------------------
    def derived(self, key: str, build: Callable[[], _T]) -> _T:
        """``build()``'s value, kept until the state next changes (call inside a transaction)."""
        if self._derived_generation != self._generation:
            self._derived = {}
            self._derived_generation = self._generation
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = build()
            return value

    def reset(self) -> None:
        """Forget everything: a brand-new platform with the configured balance."""
        with self.transaction():
            self.state = fresh_state(self._config)
            self._new_events = []
            self.mark_dirty()

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the state, for `/_emulator/state`."""
        with self._lock:
            return copy.deepcopy(self.state)

    # -- persistence -------------------------------------------------------------------------
    def _load(self) -> dict[str, Any] | None:
        path = self._config.state_file
        if not path or not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                state = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("ignoring unreadable state file %s: %s", path, exc)
            return None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            logger.warning("ignoring state file %s: unknown version", path)
            return None
        for name in COLLECTIONS:
            state.setdefault(name, {})
        logger.info("loaded state from %s (%d accounts)", path, len(state["accounts"]))
        return state

    def _save(self) -> None:
        path = self._config.state_file
        if not path:
            return
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".emulator-state-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.state, fh, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError:
            logger.exception("could not save state to %s", path)
            if os.path.exists(tmp):
                os.unlink(tmp)
