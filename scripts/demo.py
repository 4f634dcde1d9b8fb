"""``make demo``: the whole product on one machine, offline.

Migrates a SQLite database under ``data/``, starts the Stripe emulator and a local SMTP sink
(aiosmtpd's own server and Maildir handler: every email the demo sends lands in
``data/mail/``, nothing leaves the machine), seeds demo data once, then starts the companion
service, the background worker (``python -m lib.worker``: it
processes the webhooks the companion stores and runs the scheduled jobs) and the dashboard
wired to each other, prints the three URLs and the demo logins, and stops everything cleanly
on Ctrl-C.

Demo secrets (JWT, cookie key, webhook signing secrets) are generated once into
``data/demo.env`` so logins and links survive a restart; they are never used outside the demo.

The demo never reads ``DATABASE_URL``: a shell that exports the production database must not
get demo freelancers, payouts and migrations. ``DEMO_DATABASE_URL`` chooses another database on
purpose, and ``DEMO_DATA_DIR`` another folder for the SQLite file, secrets and emulator state.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from scripts.processes import ServerNotHealthy, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DEMO_DATA_DIR") or ROOT / "data").resolve()
DEMO_ENV = DATA / "demo.env"
PYTHON = sys.executable

EMULATOR_PORT = int(os.environ.get("DEMO_EMULATOR_PORT", "12111"))
SERVER_PORT = int(os.environ.get("DEMO_SERVER_PORT", "8000"))
DASHBOARD_PORT = int(os.environ.get("DEMO_DASHBOARD_PORT", "8501"))
SMTP_PORT = int(os.environ.get("DEMO_SMTP_PORT", "8025"))
MAIL = DATA / "mail"
HOST = "127.0.0.1"

logger = logging.getLogger("demo")


def _demo_secrets() -> dict[str, str]:
    """Read or create the demo's own random secrets."""
    DATA.mkdir(exist_ok=True)
    values: dict[str, str] = {}
    if DEMO_ENV.exists():
        for line in DEMO_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    wanted = {
        "JWT_SECRET": lambda: secrets.token_urlsafe(48),
        "AUTH_COOKIE_KEY": lambda: secrets.token_urlsafe(48),
        "STRIPE_WEBHOOK_SECRET": lambda: "whsec_" + secrets.token_hex(24),
        "STRIPE_CONNECT_WEBHOOK_SECRET": lambda: "whsec_" + secrets.token_hex(24),
    }
    changed = False
    for key, make in wanted.items():
        if not values.get(key):
            values[key] = make()
            changed = True
    if changed:
        DEMO_ENV.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
        DEMO_ENV.chmod(0o600)
    return values


def demo_environment() -> dict[str, str]:
    """The environment every demo process shares (emulator, companion, dashboard)."""
    emulator = f"http://{HOST}:{EMULATOR_PORT}"
    backend = f"http://{HOST}:{SERVER_PORT}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "EMULATOR_")) and k != "DATABASE_URL"}
    env.update(_demo_secrets())
    env.update(
        {
            "DATABASE_URL": os.environ.get("DEMO_DATABASE_URL")
                            or f"sqlite:///{DATA / 'connect_ops.db'}",
            "STRIPE_SECRET_KEY": "sk_test_emulator_connectops_demo",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_emulator_connectops_demo",
            "STRIPE_CONNECT_CLIENT_ID": "ca_emulator_connectops",
            # The platform's country, for the product and the emulator alike (issue 16).
            "STRIPE_PLATFORM_COUNTRY": os.environ.get("DEMO_PLATFORM_COUNTRY") or "US",
            "STRIPE_API_BASE": emulator,
            "STRIPE_CONNECT_BASE": emulator,
            "BACKEND_URL": backend,
            "FRONTEND_URL": "",
            "AUTH_CONFIG_PATH": str(ROOT / ".streamlit" / "auth.example.yaml"),
            "EMULATOR_WEBHOOK_URL": f"{backend}/api/v1/stripe/webhooks",
            "EMULATOR_CONNECT_WEBHOOK_URL": f"{backend}/api/v1/stripe/connect-webhooks",
            "EMULATOR_STATE_FILE": str(DATA / "emulator-state.json"),
            "EMULATOR_INITIAL_BALANCE": "usd:5000000,eur:3000000,gbp:2000000,cad:2000000,"
                                        "aud:2000000,jpy:50000000",
            # Every email goes to the local sink (issue 20); with the emulator the product
            # refuses any SMTP server or chat webhook that is not on this machine anyway.
            "SMTP_HOST": HOST,
            "SMTP_PORT": str(SMTP_PORT),
            "SMTP_SECURITY": "none",
            "SMTP_SENDER": "Connect Ops demo <payments@connect-ops.example>",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _wait_for_worker(process: subprocess.Popen[bytes], env: dict[str, str],
                     timeout: float = 60) -> None:
    """Wait for the worker's first heartbeat in the database (it has no port to poll)."""
    from sqlalchemy import select

    from lib.db import make_engine
    from lib.models import WorkerHeartbeat

    engine = make_engine(env["DATABASE_URL"])
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"demo: the worker exited (code {process.returncode}); "
                                 "see its output above.")
            with engine.connect() as connection:
                if connection.scalar(select(WorkerHeartbeat.worker_id).where(
                        WorkerHeartbeat.pid == process.pid, WorkerHeartbeat.stopped_at.is_(None))):
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: the worker wrote no heartbeat within {timeout:.0f}s.")
            time.sleep(0.3)
    finally:
        engine.dispose()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str,
                   timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SystemExit(f"demo: {name} exited (code {process.returncode}); see its output "
                             "above.")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((HOST, port)) == 0:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {name} did not listen on {HOST}:{port} within {timeout:.0f}s.")
        time.sleep(0.2)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait_for(url: str, process: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    try:
        wait_until_healthy(url, process=process, timeout=timeout, name=name,
                           ok_statuses=range(200, 500), poll_interval=0.3, request_timeout=2)
    except ServerNotHealthy as exc:
        if exc.returncode is not None:
            raise SystemExit(f"demo: {name} exited (code {exc.returncode}); see its output above.") from None
        raise SystemExit(f"demo: {name} did not answer on {url} within {timeout:.0f}s.") from None


class Processes:
    """Children started in their own process groups, stopped together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)
        self.children.append((name, process))
        return process

    def stop(self) -> None:
        # A second Ctrl-C (or SIGTERM) must not interrupt the clean-up and orphan a child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _name, process in reversed(self.children):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _name, process in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    busy = [p for p in (EMULATOR_PORT, SERVER_PORT, DASHBOARD_PORT, SMTP_PORT)
            if not _port_free(p)]
    if busy:
        sys.stderr.write(f"demo: port(s) {busy} already in use on {HOST}; stop what uses them "
                         "or set DEMO_EMULATOR_PORT / DEMO_SERVER_PORT / DEMO_DASHBOARD_PORT / "
                         "DEMO_SMTP_PORT.\n")
        return 2
    env = demo_environment()
    subprocess.run([PYTHON, "-m", "lib.migrate"], cwd=ROOT, env=env, check=True)

    processes = Processes()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        emulator = processes.start(
            "emulator", [PYTHON, "-m", "emulator", "--host", HOST, "--port", str(EMULATOR_PORT)],
            env)
        _wait_for(f"http://{HOST}:{EMULATOR_PORT}/_emulator/health", emulator, "the emulator")
        sink = processes.start(
            "SMTP sink", [PYTHON, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{SMTP_PORT}",
                          "-c", "aiosmtpd.handlers.Mailbox", str(MAIL)], env)
        _wait_for_port(SMTP_PORT, sink, "the SMTP sink")
        server = processes.start(
            "companion", [PYTHON, "-m", "server", "--host", HOST, "--port", str(SERVER_PORT)], env)
        _wait_for(f"http://{HOST}:{SERVER_PORT}/healthz", server, "the companion service")
        subprocess.run([PYTHON, "-m", "scripts.seed_demo"], cwd=ROOT, env=env, check=True)
        # After the seed: the first scheduled runs (sync, daily reconciliation) see its data
        # whole, and the webhooks it caused are waiting for the worker.
        worker = processes.start("worker", [PYTHON, "-m", "lib.worker"], env)
        _wait_for_worker(worker, env)
        dashboard = processes.start(
            "dashboard",
            [PYTHON, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
             "--server.address", HOST, "--server.port", str(DASHBOARD_PORT),
             "--server.headless", "true", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            env)
        _wait_for(f"http://{HOST}:{DASHBOARD_PORT}/_stcore/health", dashboard, "the dashboard")
        link = subprocess.run(
            [PYTHON, "-m", "server.links", "1", "--minutes", "120"], cwd=ROOT, env=env,
            capture_output=True, text=True, check=False,
        ).stdout.strip()
        banner = [
            "",
            "Connect Ops demo is running (Ctrl-C stops everything):",
            f"  dashboard          http://{HOST}:{DASHBOARD_PORT}",
            f"  companion service  http://{HOST}:{SERVER_PORT}   (API docs: /docs)",
            f"  Stripe emulator    http://{HOST}:{EMULATOR_PORT}",
            "  background worker  python -m lib.worker (webhooks and scheduled jobs)",
            "  logins: admin / finance / manager, password: connect-ops-demo",
            f"  mail sent         every email lands in the local SMTP sink ({HOST}:{SMTP_PORT}), "
            "nothing leaves this machine:",
            f"                    {MAIL}/new/ (one file per email); "
            "python -m scripts.read_mail lists them, --last N prints one",
        ]
        if link:
            banner.append(f"  a freelancer's payment-settings page: {link}")
        for role, subject in (("freelancer", "1"), ("admin", "admin")):
            token = subprocess.run(
                [PYTHON, "-m", "server.tokens", role, subject, "--minutes", "120"], cwd=ROOT,
                env=env, capture_output=True, text=True, check=False).stdout.strip()
            if token:
                banner.append(f"  {role} API token (2 h, for the README's curl examples): {token}")
        banner.append("")
        sys.stdout.write("\n".join(banner) + "\n")
        sys.stdout.flush()
        while all(p.poll() is None for _n, p in processes.children):
            time.sleep(0.5)
        dead = [n for n, p in processes.children if p.poll() is not None]
        sys.stderr.write(f"demo: {', '.join(dead)} stopped; stopping the rest.\n")
        return 1
    except KeyboardInterrupt:
        sys.stdout.write("\ndemo: stopping…\n")
        return 0
    finally:
        processes.stop()


if __name__ == "__main__":
    sys.exit(main())
