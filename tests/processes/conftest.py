"""Real processes for the process-level fault tests (issue 8): the companion and workers.

The companion runs as ``python -m server`` (what ``make demo`` and production run), the
background worker as ``python -m lib.worker`` (issue 18) and payout workers as
``python -m lib.payouts …``, each a subprocess with its own interpreter, engine and connection
pool: a SIGKILL, a cut database link or two replicas are then the real thing, not threads
sharing one process. Each runs in a temporary working directory (no developer ``.env``) with
the test's settings in its environment, writes its output to a log file (shown when it fails to
start), and is stopped (SIGKILL if it lingers) when the test ends. Every log is scanned for the
test secrets, as ``tests.secret_scan`` does for the test process itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.accounts import upsert_account
from lib.freelancers import create_freelancer
from lib.models import Payout
from lib.operator_accounts import DEMO_AUTH_PATH
from lib.roles import Role
from lib.settings import PROJECT_ROOT
from lib.stripe_gateway import StripeGateway
from lib.tokens import issue_token
from scripts.processes import ServerNotHealthy, wait_until_healthy
from tests.factories import (
    TEST_CLIENT_ID,
    TEST_CONNECT_WEBHOOK_SECRET,
    TEST_JWT_SECRET,
    TEST_SECRET_KEY,
    TEST_WEBHOOK_SECRET,
    make_settings,
)
from tests.secret_scan import SECRETS
from tests.support.servers import HOST, free_port

START_TIMEOUT = 60.0  # two cores shared with other work: an interpreter start can be slow
_APP_SETTING_PREFIXES = ("STRIPE_", "AUTH_", "PAYOUT_", "EMULATOR_", "WORKER_", "WEBHOOK_", "SYNC_")
_APP_SETTING_NAMES = {"DATABASE_URL", "JWT_SECRET", "BACKEND_URL", "FRONTEND_URL", "LOG_LEVEL"}
#: The emulator's delivery settings as the session's other tests expect them.
_EMULATOR_DELIVERY_DEFAULTS = {"webhook_url": None, "connect_webhook_url": None,
                               "webhook_max_attempts": 4, "webhook_retry_delay": 0.2}


def process_env(*, database_url: str, emulator_url: str, backend_url: str,
                **extra: str) -> dict[str, str]:
    """A child's environment: this machine's minus app settings, plus the test's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_APP_SETTING_PREFIXES) and k not in _APP_SETTING_NAMES}
    env.update({
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": TEST_SECRET_KEY,
        "STRIPE_CONNECT_CLIENT_ID": TEST_CLIENT_ID,
        "STRIPE_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
        "STRIPE_CONNECT_WEBHOOK_SECRET": TEST_CONNECT_WEBHOOK_SECRET,
        "STRIPE_API_BASE": emulator_url,
        "STRIPE_CONNECT_BASE": emulator_url,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "STRIPE_TIMEOUT_SECONDS": "20",
        "BACKEND_URL": backend_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "AUTH_CONFIG_PATH": str(DEMO_AUTH_PATH),  # operators admin / finance / manager
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


@dataclass
class Companion:
    """One ``python -m server`` process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/healthz", timeout=10)

    def kill(self) -> None:
        """SIGKILL: no clean-up, no finally blocks, no flushed buffers (a crash)."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Processes:
    """Starts companions and workers for one test and stops every one of them afterwards."""

    workdir: Path
    started: list[Companion] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def companion(self, *, database_url: str, emulator_url: str, backend_url: str | None = None,
                  name: str = "companion", **extra_env: str) -> Companion:
        """Start ``python -m server`` on a free port and wait until ``/healthz`` answers 200."""
        [companion] = self.companions(1, database_url=database_url, emulator_url=emulator_url,
                                      backend_url=backend_url, name=name, **extra_env)
        return companion

    def companions(self, count: int, *, database_url: str, emulator_url: str,
                   backend_url: str | None = None, name: str = "companion",
                   **extra_env: str) -> list[Companion]:
        """Start ``count`` companions at once (replicas when they share ``backend_url``)."""
        ready: list[Companion] = []
        pending = [f"{name}-{n + 1}" if count > 1 else name for n in range(count)]
        for _round in range(3):  # a port taken between choosing and binding: choose again
            spawned = [self._spawn(label, database_url=database_url, emulator_url=emulator_url,
                                   backend_url=backend_url, **extra_env) for label in pending]
            pending = []
            for companion in spawned:
                if self._wait_healthy(companion):
                    ready.append(companion)
                elif "address already in use" in companion.log_text():
                    pending.append(companion.name)
                else:
                    raise RuntimeError(f"{companion.name} did not start:\n"
                                       f"{companion.log_text()[-3000:]}")
            if not pending:
                return ready
        raise RuntimeError(f"no free port for {pending}")

    def _spawn(self, name: str, *, database_url: str, emulator_url: str,
               backend_url: str | None, **extra_env: str) -> Companion:
        port = free_port()
        url = f"http://{HOST}:{port}"
        log_path = self.workdir / f"{name}-{port}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # a fixed argv, no shell
                [sys.executable, "-m", "server", "--host", HOST, "--port", str(port)],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                env=process_env(database_url=database_url, emulator_url=emulator_url,
                                backend_url=backend_url or url, **extra_env),
            )
        companion = Companion(name, url, process, log_path)
        self.started.append(companion)
        return companion

    def _wait_healthy(self, companion: Companion) -> bool:
        """True once ``/healthz`` answers 200; False (and stopped) if it exits or times out."""
        try:
            wait_until_healthy(f"{companion.url}/healthz", process=companion.process,
                               timeout=START_TIMEOUT, poll_interval=0.1, request_timeout=10,
                               name=companion.name)
        except ServerNotHealthy:
            companion.stop()
            return False
        return True

    def payouts_cli(self, *args: str, database_url: str, emulator_url: str,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``python -m lib.payouts ARGS`` to completion (stdout: CSV, stderr: summary)."""
        result = subprocess.run(  # a fixed argv, no shell
            [sys.executable, "-m", "lib.payouts", *args], cwd=self.workdir, capture_output=True,
            text=True, timeout=timeout, check=False,
            env=process_env(database_url=database_url, emulator_url=emulator_url,
                            backend_url="http://127.0.0.1:9"),
        )
        log_path = self.workdir / f"payouts-cli-{len(self.logs)}.log"
        log_path.write_text(f"$ {' '.join(args)}\n{result.stdout}\n{result.stderr}")
        self.logs.append(log_path)
        return result

    def worker(self, code: str, *args: str, database_url: str, emulator_url: str,
               name: str = "worker") -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``python -c CODE ARGS`` (a payout worker calling lib's own entry point)."""
        log_path = self.workdir / f"{name}-{len(self.logs)}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # a fixed argv, no shell
                [sys.executable, "-c", code, *args], cwd=self.workdir, stdout=log,
                stderr=subprocess.STDOUT,
                env=process_env(database_url=database_url, emulator_url=emulator_url,
                                backend_url="http://127.0.0.1:9"),
            )
        self.workers.append(process)
        return process, log_path

    def background_worker(self, *args: str, database_url: str, emulator_url: str,
                          name: str = "bg-worker", **extra_env: str) -> subprocess.Popen[bytes]:
        """Start ``python -m lib.worker ARGS`` (the product's worker) with the test's settings."""
        log_path = self.workdir / f"{name}-{len(self.logs)}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # a fixed argv, no shell
                [sys.executable, "-m", "lib.worker", *args], cwd=self.workdir, stdout=log,
                stderr=subprocess.STDOUT,
                env=process_env(database_url=database_url, emulator_url=emulator_url,
                                backend_url="http://127.0.0.1:9", **extra_env),
            )
        self.workers.append(process)
        return process

    def stop_all(self) -> None:
        for companion in self.started:
            companion.stop()
        for process in self.workers:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)

    def log_problems(self) -> list[str]:
        """A configured test secret or a traceback in any of this test's process logs."""
        problems = []
        for path in self.logs:
            text = path.read_text(errors="replace") if path.exists() else ""
            problems += [f"{path.name} contains secret #{n}" for n, secret in enumerate(SECRETS)
                         if secret in text]
            if "Traceback" in text:
                problems.append(f"{path.name} has a traceback:\n{text[-2000:]}")
        return problems


@contextmanager
def _processes_in(workdir: Path) -> Iterator[Processes]:
    workdir.mkdir()
    started = Processes(workdir)
    try:
        yield started
    finally:
        started.stop_all()
    problems = started.log_problems()
    assert not problems, "\n".join(problems)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Subprocesses for this test; all stopped at the end, their logs checked for secrets and
    tracebacks (every failure must have been turned into a clear message)."""
    with _processes_in(tmp_path / "processes") as started:
        yield started


@pytest.fixture(scope="module")
def module_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """The same for processes a whole module shares (stateless services started once)."""
    with _processes_in(tmp_path_factory.mktemp("module") / "processes") as started:
        yield started


@pytest.fixture
def quiet_emulator(emulator: EmulatorHandle) -> Iterator[EmulatorHandle]:
    """The session emulator, delivering no webhooks unless a test wires them; restored after."""
    emulator.configure(**_EMULATOR_DELIVERY_DEFAULTS)
    try:
        yield emulator
    finally:
        emulator.clear_faults()
        emulator.configure(**_EMULATOR_DELIVERY_DEFAULTS)


def wire_webhooks(emulator: EmulatorHandle, base_url: str, **delivery: Any) -> None:
    """Point the emulator's platform and Connect deliveries at a companion."""
    emulator.configure(
        webhook_url=f"{base_url}/api/v1/stripe/webhooks", webhook_secret=TEST_WEBHOOK_SECRET,
        connect_webhook_url=f"{base_url}/api/v1/stripe/connect-webhooks",
        connect_webhook_secret=TEST_CONNECT_WEBHOOK_SECRET, **delivery,
    )


def admin_headers(idempotency_key: str | None = None) -> dict[str, str]:
    """An admin API token (the demo users file's ``admin``) and an Idempotency-Key."""
    token = issue_token(secret=TEST_JWT_SECRET, subject="admin", role=Role.ADMIN)
    headers = {"Authorization": f"Bearer {token}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def freelancer_headers(freelancer_id: int) -> dict[str, str]:
    token = issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id), role=Role.FREELANCER)
    return {"Authorization": f"Bearer {token}"}


def gateway_for(emulator: EmulatorHandle) -> StripeGateway:
    """The test process's own gateway to the emulator (setup and checks)."""
    return StripeGateway(make_settings(stripe_api_base=emulator.base_url,
                                       stripe_connect_base=emulator.base_url))


def payable_freelancer(emulator: EmulatorHandle, session_factory: sessionmaker[Session],
                       *, email: str = "paula@example.com") -> int:
    """A freelancer with an onboarded Express account at the emulator, mirrored locally."""
    gateway = gateway_for(emulator)
    account = gateway.create_express_account(email=email, country="US", metadata={},
                                             idempotency_key=f"processes-acct-{email}")
    emulator.set_account(account.id, onboarding="complete")
    fetched = gateway.retrieve_account(account.id).data
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Paula Payee", email=email)
        upsert_account(session, account=fetched)
        freelancer.stripe_account_id = account.id
        return freelancer.id


def payout_body(freelancer_id: int, amount: str = "25.00") -> dict[str, Any]:
    return {"freelancerId": freelancer_id, "amount": amount, "currency": "usd",
            "payoutType": "MANUAL", "description": "Invoice 1001"}


def transfers(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    """Every transfer Stripe (the emulator) made, oldest first."""
    return list(reversed(list(gateway_for(emulator).iter_transfers())))


def payout_rows(session_factory: sessionmaker[Session]) -> list[Payout]:
    with session_factory() as session:
        return list(session.scalars(select(Payout).order_by(Payout.id)))


def only_transfer(emulator: EmulatorHandle) -> dict[str, Any]:
    """Stripe's one transfer; anything else is money moved twice (or not at all)."""
    made = transfers(emulator)
    assert len(made) == 1, (f"Stripe made {len(made)} transfers for one payout: "
                            f"{[(t['id'], t['amount']) for t in made]}")
    return made[0]


def only_row(session_factory: sessionmaker[Session]) -> Payout:
    """The ledger's one payout row."""
    rows = payout_rows(session_factory)
    assert len(rows) == 1, f"the ledger has {len(rows)} payout rows for one request"
    return rows[0]


def assert_clean_error(response: httpx.Response) -> None:
    """A human message, never a traceback, an exception name, SQL, a URL or a secret."""
    text = response.text
    for leak in ("Traceback", "OperationalError", "psycopg", "sqlalchemy", "SELECT", "UPDATE",
                 "INSERT", "postgresql", "sqlite", "5432", *SECRETS):
        assert leak not in text, f"the error response leaks {leak!r}: {text[:300]}"
