"""Real HTTP servers for tests: uvicorn in a daemon thread on a free loopback port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.settings import Settings
from scripts.processes import ConditionNotMet, wait_until
from server.app import create_app
from tests.factories import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving an app in a daemon thread; ``stop()`` asks it to exit and waits."""

    def __init__(self, app: Callable[..., Any], port: int) -> None:
        config = uvicorn.Config(app, host=HOST, port=port, log_level="warning",
                                lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.url = f"http://{HOST}:{port}"
        # Hold the port from now on (another process could take it before uvicorn binds).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"uvicorn-{port}", daemon=True)

    def start(self, timeout: float = 15.0) -> ServerThread:
        self.thread.start()

        def started() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError(f"the server on {self.url} stopped before it started")
            return bool(self.server.started)

        try:
            wait_until(started, timeout=timeout, interval=0.02, what=f"uvicorn serving {self.url}")
        except ConditionNotMet:
            raise RuntimeError(f"the server did not start on {self.url}") from None
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@contextmanager
def running_companion(
    emulator: EmulatorHandle, settings: Settings, port: int, session_factory: sessionmaker[Session],
    *, worker: bool = True,
) -> Iterator[str]:
    """The companion service on ``port``, with the emulator's webhooks and redirects pointed at
    it, and (unless ``worker=False``) a background worker processing what it stores."""
    from tests.support.worker import running_worker
    backend = settings.backend_url
    emulator.configure(
        backend_url=backend,
        webhook_url=f"{backend}/api/v1/stripe/webhooks", webhook_secret=TEST_WEBHOOK_SECRET,
        connect_webhook_url=f"{backend}/api/v1/stripe/connect-webhooks",
        connect_webhook_secret=TEST_CONNECT_WEBHOOK_SECRET,
    )
    server = ServerThread(create_app(settings, session_factory=session_factory), port).start()
    try:
        if worker:
            with running_worker(session_factory, settings):
                yield server.url
        else:
            yield server.url
    finally:
        server.stop()
        # Leave the shared emulator delivering nowhere once this service is gone.
        emulator.configure(webhook_url=None, connect_webhook_url=None)
