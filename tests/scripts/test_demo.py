"""``make demo`` end to end: ``python -m scripts.demo`` as a user runs it, in a temporary folder.

It must bring up the emulator, the companion, the background worker and the dashboard on SQLite,
seed once, print what a user needs (and it must work), process Stripe's webhooks end to end
through the worker and run its scheduled jobs, survive a restart without duplicating anything,
stop every child on Ctrl-C or SIGTERM (the worker gracefully), and never touch the database a
shell's ``DATABASE_URL`` names.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from lib.models import (
    ConnectedAccount,
    Freelancer,
    Payout,
    ScheduledJob,
    WebhookEvent,
    WorkerHeartbeat,
)
from lib.settings import PROJECT_ROOT as ROOT
from scripts.processes import ConditionNotMet, wait_until
from scripts.read_mail import messages
from tests.support.servers import HOST, free_port

BANNER = "Connect Ops demo is running"
#: What a shell exporting the production database would carry: the demo must not use it.
PRODUCTION_URL = "postgresql+psycopg://prod-user@127.0.0.1:1/production"

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.environ.get("CONNECT_OPS_TEST_BACKEND", "sqlite") != "sqlite",
                       reason="the demo runs on SQLite; the SQLite pass runs it"),
]


@dataclass
class DemoRun:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_banner(self, timeout: float = 300) -> None:
        def printed() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited ({self.process.returncode}):\n{self.output()[-4000:]}")
            # The banner is one write that ends with an empty line.
            return "\n\n" in self.output().partition(BANNER)[2]

        try:
            wait_until(printed, timeout=timeout, interval=0.2, what="the demo's banner")
        except ConditionNotMet:
            pytest.fail(f"no banner after {timeout:.0f} s:\n{self.output()[-4000:]}")

    def token(self, role: str) -> str:
        match = re.search(rf"{role} API token [^:]*: (\S+)", self.output())
        assert match, f"no {role} token in the banner:\n{self.output()[-2000:]}"
        return match.group(1)


@contextmanager
def running_demo(env: dict[str, str]) -> Iterator[DemoRun]:
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.demo"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    run = DemoRun(process)
    output = process.stdout
    assert output is not None
    reader = threading.Thread(target=lambda: run.lines.extend(iter(output.readline, "")),
                              daemon=True)
    reader.start()
    try:
        yield run
    finally:
        if process.poll() is None:  # a failed test: stop it the way Ctrl-C would
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(timeout=10)
        if process.stdout is not None:  # always, with stdout=PIPE; the type cannot say so
            process.stdout.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _counts(data: Path) -> tuple[int, int]:
    engine = create_engine(f"sqlite:///{data / 'connect_ops.db'}")
    try:
        with engine.connect() as conn:
            return (int(conn.scalar(select(func.count()).select_from(Freelancer)) or 0),
                    int(conn.scalar(select(func.count()).select_from(Payout)) or 0))
    finally:
        engine.dispose()


def _query(data: Path, statement):
    engine = create_engine(f"sqlite:///{data / 'connect_ops.db'}")
    try:
        with engine.connect() as conn:
            return conn.execute(statement).all()
    finally:
        engine.dispose()


def _worker_in_the_loop(data: Path, emulator: str) -> None:
    """The worker processed the seed's webhooks, ran every scheduled job, and processes a new
    event from Stripe (the emulator) into the mirror."""
    def jobs_done() -> bool:
        rows = _query(data, select(ScheduledJob.name, ScheduledJob.last_status))
        return {name for name, status in rows if status == "ok"} == {
            "sync_accounts", "purge_oauth_states", "abandon_connection_attempts",
            "reconciliation", "alert_checks", "alert_digest", "summaries_compact",
            "summaries_check"}

    def events_settled() -> bool:
        statuses = [s for (s,) in _query(data, select(WebhookEvent.status))]
        return bool(statuses) and not {"received", "processing"} & set(statuses)

    wait_until(jobs_done, what="every scheduled job run once", timeout=180, interval=0.5)
    wait_until(events_settled, what="the seed's webhooks processed", timeout=180,
               interval=0.5)
    assert "dead" not in {s for (s,) in _query(data, select(WebhookEvent.status))}
    [(account_id,)] = _query(data, select(Freelancer.stripe_account_id).where(
        Freelancer.stripe_account_id.is_not(None)).order_by(Freelancer.id).limit(1))
    answer = httpx.post(f"{emulator}/_emulator/accounts/{account_id}", json={"requirements": {
        "currently_due": ["individual.id_number"], "eventually_due": ["individual.id_number"]}})
    assert answer.status_code == 200, answer.text

    def mirrored() -> bool:
        [(requirements,)] = _query(data, select(ConnectedAccount.requirements).where(
            ConnectedAccount.stripe_id == account_id))
        return (requirements or {}).get("currently_due") == ["individual.id_number"]

    wait_until(mirrored, what="the new account.updated processed into the mirror", timeout=60,
               interval=0.5)


def _mail_delivered_to_the_sink(data: Path, companion: str) -> None:
    """The seed's outreach emails and alert emails reach the local sink with working links."""
    def delivered() -> bool:
        found = messages(data / "mail")
        return (sum("freelancers.example" in str(m["To"]) for m in found) >= 3
                and any("connect-ops.example" in str(m["To"]) for m in found))

    wait_until(delivered, what="the seed's outreach and alert emails in the SMTP sink",
               timeout=120, interval=0.5)
    outreach = next(m for m in messages(data / "mail") if "freelancers.example" in str(m["To"]))
    body = outreach.get_body(preferencelist=("plain",))
    assert body is not None
    [link] = re.findall(r"http://\S+/freelancer/login\?token=\S+", body.get_content())
    assert link.startswith(companion)
    page = httpx.get(link)
    assert page.status_code == 200 and "Continue to payment settings" in page.text


def _worker_stopped_gracefully(data: Path) -> None:
    beats = _query(data, select(WorkerHeartbeat.stopped_at))
    assert beats and all(stopped is not None for (stopped,) in beats), beats


def _stop(run: DemoRun, signum: int, ports: dict[str, int]) -> None:
    run.process.send_signal(signum)
    assert run.process.wait(timeout=60) == 0, run.output()[-3000:]
    wait_until(lambda: not any(_listening(port) for port in ports.values()), timeout=10,
               interval=0.2, what=f"no child of the demo ({', '.join(ports)}) listening")


def test_make_demo_runs_everything_offline_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {"emulator": free_port(), "companion": free_port(), "dashboard": free_port(),
             "smtp": free_port()}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "EMULATOR_", "CONNECT_OPS_", "TEST_"))}
    env.update({
        "DEMO_DATA_DIR": str(tmp_path), "DATABASE_URL": PRODUCTION_URL,
        "DEMO_EMULATOR_PORT": str(ports["emulator"]), "DEMO_SERVER_PORT": str(ports["companion"]),
        "DEMO_DASHBOARD_PORT": str(ports["dashboard"]), "DEMO_SMTP_PORT": str(ports["smtp"]),
    })
    companion = f"http://{HOST}:{ports['companion']}"

    with running_demo(env) as first:
        first.wait_for_banner()
        banner = first.output()
        for name, port in ports.items():
            if name != "smtp":
                assert f"http://{HOST}:{port}" in banner, name
        assert f"{tmp_path / 'mail'}/new/" in banner
        assert "logins: admin / finance / manager" in banner
        assert "postgresql" not in banner and "prod-user" not in banner

        assert httpx.get(f"http://{HOST}:{ports['emulator']}/_emulator/health").json() == {"ok": True}
        assert httpx.get(f"{companion}/healthz").status_code == 200
        assert httpx.get(f"http://{HOST}:{ports['dashboard']}/_stcore/health").text == "ok"
        status = httpx.get(f"{companion}/api/v1/freelancer/stripe-connect-status",
                           headers={"Authorization": f"Bearer {first.token('freelancer')}"})
        assert status.status_code == 200 and status.json()["success"] is True

        seeded = _counts(tmp_path)
        assert seeded[0] >= 40 and seeded[1] > 0, seeded
        assert "background worker  python -m lib.worker" in banner
        _worker_in_the_loop(tmp_path, f"http://{HOST}:{ports['emulator']}")
        _mail_delivered_to_the_sink(tmp_path, companion)
        _stop(first, signal.SIGINT, ports)  # Ctrl-C
    _worker_stopped_gracefully(tmp_path)

    assert (tmp_path / "demo.env").stat().st_mode & 0o077 == 0  # the demo's secrets: owner only
    secrets_before = (tmp_path / "demo.env").read_text()

    with running_demo(env) as second:
        second.wait_for_banner()
        assert "already present" in second.output()
        assert _counts(tmp_path) == seeded  # nothing seeded twice
        status = httpx.get(f"{companion}/api/v1/freelancer/stripe-connect-status",
                           headers={"Authorization": f"Bearer {second.token('freelancer')}"})
        assert status.status_code == 200
        _stop(second, signal.SIGTERM, ports)
    _worker_stopped_gracefully(tmp_path)

    assert (tmp_path / "demo.env").read_text() == secrets_before  # logins and links survive


def test_busy_port_is_one_clear_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "DEMO_DATA_DIR": str(tmp_path), "DEMO_SERVER_PORT": str(port),
               "DEMO_EMULATOR_PORT": str(free_port()), "DEMO_DASHBOARD_PORT": str(free_port()),
               "DEMO_SMTP_PORT": str(free_port())}
        result = subprocess.run([sys.executable, "-m", "scripts.demo"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"port(s) [{port}] already in use" in result.stderr
    assert not (tmp_path / "connect_ops.db").exists()
