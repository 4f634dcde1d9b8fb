"""The emulator's live parts, wired together once per server: store, idempotency layer,
fault registry, webhook dispatcher and the payout settlement ticker.
"""

from __future__ import annotations

import logging
import threading

from emulator import account_state
from emulator.config import EmulatorConfig
from emulator.faults import FaultRegistry
from emulator.idempotency import IdempotencyLayer
from emulator.resources.balance import release_due
from emulator.resources.payouts import settle_due_payouts
from emulator.store import Store
from emulator.webhooks import WebhookDispatcher

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.2


class Runtime:
    """Everything a request handler or control route needs, plus background threads."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.store = Store(config)
        self.dispatcher = WebhookDispatcher(self.store)
        self.store.set_event_sink(self.dispatcher.enqueue)
        self.idempotency = IdempotencyLayer(self.store)
        self.faults = FaultRegistry()
        #: Stripe-facing requests being served now (control routes excluded). A test that held
        #: a request with a delay fault waits for this to reach 0, not for a guessed deadline:
        #: the hold starts when the request arrives, which a loaded machine makes late.
        self.in_flight = 0
        self._in_flight_lock = threading.Lock()  # in-process test clients serve from threads
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        with self.store.transaction():
            account_state.seed_standard_accounts(self.store)

    def count_request(self, delta: int) -> None:
        """Add 1 when a Stripe-facing request starts and -1 when it ends."""
        with self._in_flight_lock:
            self.in_flight += delta

    def start(self) -> None:
        """Start webhook delivery, payout settlement and the release of pending funds."""
        self.dispatcher.start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="emulator-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        """Stop the background threads."""
        self._stop.set()
        if self._ticker:
            self._ticker.join(timeout=5)
        self.dispatcher.stop()

    def reset(self) -> None:
        """A fresh platform: state, faults, idempotency keys and delivery log all cleared."""
        self.faults.clear()
        self.dispatcher.clear()
        self.store.reset()
        with self.store.transaction():
            account_state.seed_standard_accounts(self.store)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            settle_due_payouts(self.store)
            with self.store.transaction():
                release_due(self.store)
