"""What every benchmark shares: where its databases live and how it prints its figures.

A benchmark never asserts a time. It measures a figure and a floor (or a target) in the same
run and prints both with their ratio, so a shared, noisy machine moves both together.
Each run also appends its figures as JSON lines to ``bench/results/latest.jsonl`` so
``bench/RESULTS.md`` can be written from what was actually measured.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lib.settings import PROJECT_ROOT, Settings, normalise_database_url

if TYPE_CHECKING:  # the emulator is imported when one is started
    from emulator.testing import EmulatorHandle

BENCH_DATA = PROJECT_ROOT / "data" / "bench"
RESULTS_FILE = PROJECT_ROOT / "bench" / "results" / "latest.jsonl"
POSTGRES_BENCH_DATABASE = "connect_ops_bench"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure beside its target.

    ``ratio`` is figure/floor (or figure/target); ``higher_is_better`` says which way the
    target points, so ``met`` reads the same for "≤ 3× the floor" and "≥ 50 % of the floor".
    """

    benchmark: str
    name: str
    value: float
    unit: str
    target: str
    ratio: float | None = None
    limit: float | None = None
    higher_is_better: bool = False
    backend: str = "sqlite"
    details: dict[str, object] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.ratio is None or self.limit is None:
            return None
        return self.ratio >= self.limit if self.higher_is_better else self.ratio <= self.limit


def median_seconds(run: Callable[[], object], *, repeat: int, warmup: int = 1) -> float:
    """The median wall time of ``run`` over ``repeat`` calls after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def report(figures: list[Figure]) -> None:
    """Print the figures as a table on stdout and append them to the results file."""
    out = sys.stdout
    for f in figures:
        ratio = "" if f.ratio is None else f"{f.ratio:.2f}"
        verdict = {True: "met", False: "NOT MET", None: ""}[f.met]
        out.write(
            f"{f.benchmark:<10} {f.backend:<10} {f.name:<42} {f.value:>12.3f} {f.unit:<10} "
            f"ratio {ratio:>7}  target {f.target:<28} {verdict}\n"
        )
    out.flush()
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with RESULTS_FILE.open("a", encoding="utf-8") as handle:
        for f in figures:
            row = asdict(f) | {"met": f.met, "at": stamp, "machine": machine_summary()}
            handle.write(json.dumps(row, default=str) + "\n")


def machine_summary() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def backends() -> list[str]:
    """SQLite always; PostgreSQL too when ``TEST_DATABASE_URL`` names a server."""
    return ["sqlite", "postgresql"] if os.environ.get("TEST_DATABASE_URL") else ["sqlite"]


def database_url(backend: str, name: str) -> str:
    """A benchmark's own database: a file under data/bench, or a database on the PG server.

    Never the test database itself: a benchmark's data would otherwise leak into tests.
    """
    if backend == "sqlite":
        BENCH_DATA.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{BENCH_DATA / f'{name}.db'}"
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        raise SystemExit("PostgreSQL benchmarks need TEST_DATABASE_URL (a server to use).")
    url = make_url(normalise_database_url(server))
    return url.set(database=f"{POSTGRES_BENCH_DATABASE}_{name}").render_as_string(
        hide_password=False
    )


@contextmanager
def fresh_database(backend: str, name: str) -> Iterator[str]:
    """An empty, migrated database for one benchmark; yields its URL (kept afterwards)."""
    from lib.db import make_engine
    from lib.migrate import upgrade

    url = database_url(backend, name)
    if backend == "sqlite":
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        admin = create_engine(
            make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        database = make_url(url).database
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    yield url


# ---- service benchmarks: the processes they start (companion, sync, payouts, webhooks) -------

#: Fake keys for the local emulator, built at run time so no committed literal looks like a key.
BENCH_SECRET_KEY = "sk_" + "test_" + "bench_connectops"
BENCH_CLIENT_ID = "ca_emulator_connectops"
BENCH_WEBHOOK_SECRET = "whsec_" + "bench_platform"
BENCH_CONNECT_WEBHOOK_SECRET = "whsec_" + "bench_connect"
#: Random per run: children receive it through their environment.
BENCH_JWT_SECRET = secrets.token_urlsafe(32)
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now on the loopback interface."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def bench_environment(database_url: str, stripe_base: str | None = None,
                      **extra: str) -> dict[str, str]:
    """The environment of a benchmark's child process: bench keys, never the machine's .env."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "EMULATOR_", "PAYOUT_"))}
    env.update({
        "STRIPE_SECRET_KEY": BENCH_SECRET_KEY, "STRIPE_CONNECT_CLIENT_ID": BENCH_CLIENT_ID,
        "STRIPE_WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET,
        "STRIPE_CONNECT_WEBHOOK_SECRET": BENCH_CONNECT_WEBHOOK_SECRET,
        "JWT_SECRET": BENCH_JWT_SECRET, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING",
        "STRIPE_MAX_NETWORK_RETRIES": "0", "PYTHONPATH": str(PROJECT_ROOT),
    })
    if stripe_base:
        env["STRIPE_API_BASE"] = env["STRIPE_CONNECT_BASE"] = stripe_base
    env.update(extra)
    return env


def bench_settings(database_url: str, stripe_base: str | None = None,
                   **overrides: Any) -> Settings:
    """Settings for an in-process benchmark, from the same values its children get."""
    values: dict[str, Any] = {
        "stripe_secret_key": BENCH_SECRET_KEY, "stripe_connect_client_id": BENCH_CLIENT_ID,
        "stripe_webhook_secret": BENCH_WEBHOOK_SECRET,
        "stripe_connect_webhook_secret": BENCH_CONNECT_WEBHOOK_SECRET,
        "jwt_secret": BENCH_JWT_SECRET, "database_url": database_url,
        "stripe_max_network_retries": 0, "log_level": "WARNING",
    }
    if stripe_base:
        values["stripe_api_base"] = values["stripe_connect_base"] = stripe_base
    values.update(overrides)
    # _env_file is BaseSettings.__init__'s own argument: the signature built from the
    # fields (what the checker sees) does not list it.
    # _env_file is pydantic-settings' __init__ argument, not a field, so mypy cannot see it.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def child_process(args: list[str], *, env: dict[str, str], ready_url: str,
                  timeout: float = 60.0) -> Iterator[None]:
    """Run ``args`` (a server) in its own process group until the block ends; wait until
    ``ready_url`` answers. Its own process keeps it off the benchmark's GIL and core."""
    import signal
    import subprocess

    from scripts.processes import ServerNotHealthy, wait_until_healthy

    process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL)
    try:
        try:
            wait_until_healthy(ready_url, process=process, timeout=timeout,
                               ok_statuses=range(100, 500), poll_interval=0.1,
                               request_timeout=2.0, name=args[2])
        except ServerNotHealthy as exc:
            raise SystemExit(f"bench: {exc}") from exc
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def emulator_process(**env_extra: str) -> Iterator[EmulatorHandle]:
    """A Stripe emulator in its own process on a free loopback port; yields its handle."""
    from emulator.config import EmulatorConfig
    from emulator.testing import EmulatorHandle

    port = free_port()
    env = bench_environment("sqlite://", **env_extra)
    args = [sys.executable, "-m", "emulator", "--host", LOOPBACK, "--port", str(port),
            "--log-level", "warning"]
    base = f"http://{LOOPBACK}:{port}"
    with child_process(args, env=env, ready_url=f"{base}/_emulator/health"):
        handle = EmulatorHandle(base, EmulatorConfig(host=LOOPBACK, port=port))
        try:
            yield handle
        finally:
            handle.close()


def chosen_backends(choice: str) -> list[str]:
    """``--backend sqlite|postgresql|all`` → the backends to run (``all`` = :func:`backends`)."""
    return backends() if choice == "all" else [choice]
