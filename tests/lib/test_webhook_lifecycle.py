"""A model-based test of the webhook event lifecycle (issue 18): random interleavings of
deliveries (duplicates, any order), claims by two workers, handler successes and failures,
worker crashes and graceful stops, clock jumps past leases and backoffs, restarts and replays,
with the invariants checked after every step against the real database."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import delete, select

from lib import webhooks
from lib.db import utcnow
from lib.models import AuditLog, WebhookEvent, WebhookStatus
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway
from lib.webhooks import Endpoint, RetryPolicy
from tests.factories import make_settings

SETTINGS = make_settings(stripe_api_base="http://127.0.0.1:9",
                         stripe_connect_base="http://127.0.0.1:9")
POLICY = RetryPolicy(max_attempts=3, base=timedelta(seconds=10), cap=timedelta(seconds=40),
                     lease=timedelta(seconds=60))
EVENT_IDS = [f"evt_life{n}" for n in range(4)]
WORKERS = ["a", "b"]
ADMIN = Operator.from_role_names("alice", ["admin"])
TYPE = "account.updated"


def machine_for(session_factory):
    class EventLifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.factory = session_factory
            with self.factory.begin() as session:
                session.execute(delete(WebhookEvent))
                session.execute(delete(AuditLog).where(AuditLog.action == "webhook.replay"))
            self.gateway = StripeGateway(SETTINGS)
            self.now = utcnow()
            self.delivered: set[str] = set()
            self.held: dict[str, list[webhooks.Claim]] = {w: [] for w in WORKERS}
            self.successes: dict[str, int] = defaultdict(int)
            self.finished: set[str] = set()
            self.broken: set[str] = set()
            webhooks.HANDLERS[TYPE] = self._handler

        def _handler(self, _factory, _gateway, event):
            if event["id"] in self.broken:
                raise RuntimeError(f"handler broken for {event['id']}")

        def teardown(self) -> None:
            webhooks.HANDLERS[TYPE] = ORIGINAL_HANDLER

        # ---- Stripe ------------------------------------------------------------------------

        @rule(event_id=st.sampled_from(EVENT_IDS))
        def deliver(self, event_id: str) -> None:
            """Stripe delivers (again, or out of order): stored once, whatever its state."""
            with self.factory.begin() as session:
                webhooks.store_event(session, event={"id": event_id, "type": TYPE,
                                                     "livemode": False, "account": "acct_x"},
                                     endpoint=Endpoint.CONNECT, settings=SETTINGS,
                                     now=self.now)
            self.delivered.add(event_id)

        # ---- workers -----------------------------------------------------------------------

        @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
        def claim(self, worker: str, limit: int) -> None:
            claims = webhooks.claim_due(self.factory, worker_id=worker, policy=POLICY,
                                        limit=limit, now=self.now)
            others = {c.event_id for w, held in self.held.items() if w != worker for c in held
                      if self._lease_live(c)}
            assert not others & {c.event_id for c in claims}, "claimed under a live lease"
            self.held[worker] += claims

        @precondition(lambda self: any(self.held.values()))
        @rule(worker=st.sampled_from(WORKERS), succeed=st.booleans())
        def process(self, worker: str, succeed: bool) -> None:
            if not self.held[worker]:
                return
            claim = self.held[worker].pop(0)
            (self.broken.discard if succeed else self.broken.add)(claim.event_id)
            outcome = webhooks.process_claim(self.factory, gateway=self.gateway, claim=claim,
                                             policy=POLICY, now=self.now)
            if outcome.recorded and outcome.status is WebhookStatus.PROCESSED:
                self.successes[claim.event_id] += 1

        @rule(worker=st.sampled_from(WORKERS))
        def crash(self, worker: str) -> None:
            """SIGKILL: what it held stays leased until the lease expires."""
            self.held[worker] = []

        @rule(worker=st.sampled_from(WORKERS))
        def graceful_stop(self, worker: str) -> None:
            """SIGTERM between events: what it had not started is given back."""
            webhooks.release(self.factory, claims=self.held[worker], now=self.now)
            self.held[worker] = []

        @rule()
        def restart_everything(self) -> None:
            """Every worker dies at once and new ones start with nothing in hand."""
            self.held = {w: [] for w in WORKERS}

        @rule(seconds=st.sampled_from([1, 15, 45, 61, 130, 600]))
        def clock_jumps(self, seconds: int) -> None:
            self.now += timedelta(seconds=seconds)

        @rule(event_id=st.sampled_from(EVENT_IDS))
        def person_replays(self, event_id: str) -> None:
            row = self._row(event_id)
            if row is None or row.status != WebhookStatus.DEAD.value:
                return
            self.broken.discard(event_id)
            outcome = webhooks.replay_event(self.factory, gateway=self.gateway, operator=ADMIN,
                                            event_id=event_id, policy=POLICY)
            if outcome is not None and outcome.recorded and (
                outcome.status is WebhookStatus.PROCESSED
            ):
                self.successes[event_id] += 1

        # ---- invariants --------------------------------------------------------------------

        def _lease_live(self, claim: webhooks.Claim) -> bool:
            row = self._row(claim.event_id)
            return bool(row and row.lease_token == claim.token and row.lease_expires_at
                        and row.lease_expires_at > self.now)

        def _row(self, event_id: str) -> WebhookEvent | None:
            with self.factory() as session:
                return session.scalars(select(WebhookEvent).where(
                    WebhookEvent.stripe_event_id == event_id)).one_or_none()

        def _rows(self) -> dict[str, WebhookEvent]:
            with self.factory() as session:
                return {r.stripe_event_id: r for r in session.scalars(select(WebhookEvent))}

        @invariant()
        def never_lost_and_stored_once(self) -> None:
            assert set(self._rows()) == self.delivered

        @invariant()
        def processed_exactly_once_per_recorded_success(self) -> None:
            for event_id, row in self._rows().items():
                done = row.status == WebhookStatus.PROCESSED.value
                assert self.successes[event_id] == (1 if done else 0), (event_id, row.status)

        @invariant()
        def terminal_states_are_stable(self) -> None:
            rows = self._rows()
            for event_id in self.finished:
                assert rows[event_id].status == WebhookStatus.PROCESSED.value
            self.finished |= {e for e, r in rows.items()
                              if r.status == WebhookStatus.PROCESSED.value}

        @invariant()
        def each_state_has_its_fields(self) -> None:
            for event_id, row in self._rows().items():
                status = WebhookStatus(row.status)
                if status is WebhookStatus.DEAD:
                    assert row.attempts >= POLICY.max_attempts, (event_id, row.attempts)
                    assert row.next_attempt_at is None and row.error
                if status is WebhookStatus.FAILED:
                    assert 1 <= row.attempts < POLICY.max_attempts and row.error
                    assert row.next_attempt_at is not None
                if status in (WebhookStatus.RECEIVED, WebhookStatus.FAILED):
                    assert row.next_attempt_at is not None
                if status is WebhookStatus.PROCESSING:
                    assert row.lease_token and row.lease_expires_at
                else:
                    assert row.lease_token is None and row.lease_expires_at is None
                assert row.attempts <= POLICY.max_attempts

    return EventLifecycle


ORIGINAL_HANDLER = webhooks.HANDLERS[TYPE]


def test_event_lifecycle_state_machine(session_factory) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        machine_for(session_factory),
        settings=settings(max_examples=60, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
