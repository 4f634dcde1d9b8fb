"""The background worker in a test process: ``lib.worker.Worker`` in a thread, and waiting
until the events it should process are settled (no fixed sleeps: poll the condition)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lib.jobs import Job
from lib.models import WebhookEvent, WebhookStatus
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from lib.worker import Worker
from scripts.processes import ConditionNotMet, wait_until

#: A test worker polls often and beats often: tests wait on conditions, not on the worker.
FAST = {"worker_poll_seconds": 0.02, "worker_heartbeat_seconds": 0.5}
UNSETTLED = (WebhookStatus.RECEIVED.value, WebhookStatus.PROCESSING.value)


def fast_settings(settings: Settings, **overrides: object) -> Settings:
    """``settings`` with a quick worker (and any other overrides)."""
    return settings.model_copy(update={**FAST, **overrides})


@contextmanager
def running_worker(
    session_factory: sessionmaker[Session], settings: Settings, *,
    gateway: StripeGateway | None = None, jobs: list[Job] | None = None,
) -> Iterator[Worker]:
    """A worker thread (no scheduled jobs unless given) until the block ends; stopped the
    way SIGTERM stops it, and its thread joined."""
    worker = Worker(session_factory, gateway=gateway or StripeGateway(settings),
                    settings=fast_settings(settings), jobs=jobs or [])
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop"


def unsettled_events(session_factory: sessionmaker[Session]) -> int:
    """Events received or being processed (not yet processed, ignored, failed or dead)."""
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEvent)
                                  .where(WebhookEvent.status.in_(UNSETTLED))) or 0)


def wait_until_settled(session_factory: sessionmaker[Session], *, timeout: float = 30.0) -> None:
    """Wait until the worker has taken every stored event to an outcome."""
    try:
        wait_until(lambda: not unsettled_events(session_factory), timeout=timeout, interval=0.02,
                   what="every stored webhook event settled")
    except ConditionNotMet:
        raise AssertionError(f"{unsettled_events(session_factory)} webhook event(s) still "
                             f"unprocessed after {timeout}s") from None
