"""The emulator as a process: CLI errors, configuration, persistence across restarts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import stripe

from emulator.config import ConfigError, EmulatorConfig, parse_balance
from emulator.testing import running_emulator, stripe_client

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args], capture_output=True, text=True, timeout=20, env=full_env, cwd=ROOT
    )


def test_bad_port_flag_exits_2_with_one_line() -> None:
    done = _run("--port", "notanumber")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr and "notanumber" in done.stderr


def test_bad_config_exits_2_with_one_line() -> None:
    done = _run("--port", "0", env={"EMULATOR_INITIAL_BALANCE": "usd:lots"})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "EMULATOR_INITIAL_BALANCE" in done.stderr


def test_config_from_env() -> None:
    cfg = EmulatorConfig.from_env(
        {
            "BACKEND_URL": "http://127.0.0.1:9000",
            "EMULATOR_REDIRECT_URIS": "http://a.test/cb, http://b.test/cb",
            "STRIPE_WEBHOOK_SECRET": "whsec_x",
            "EMULATOR_WEBHOOK_URL": "http://127.0.0.1:9000/hooks",
        }
    )
    assert cfg.redirect_uris == (
        "http://127.0.0.1:9000/api/v1/freelancer/stripe-connect-callback",
        "http://a.test/cb",
        "http://b.test/cb",
    )
    assert "whsec_x" not in repr(cfg)
    assert parse_balance("usd:1,jpy:2") == (("usd", 1), ("jpy", 2))
    with pytest.raises(ConfigError):
        EmulatorConfig.from_env({"EMULATOR_WEBHOOK_URL": "ftp://x"})


def test_state_survives_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    config = EmulatorConfig(state_file=str(state_file))
    with running_emulator(config) as emu:
        client = stripe_client(emu.base_url)
        acct = client.v1.accounts.create(params={"type": "express", "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}}})
        emu.set_account(acct.id, onboarding="complete")
        transfer = client.v1.transfers.create(
            params={"amount": 900, "currency": "usd", "destination": acct.id}, options={"idempotency_key": "persist-1"}
        )
    assert state_file.exists() and not list(tmp_path.glob(".emulator-state-*"))
    with running_emulator(config) as emu:
        client = stripe_client(emu.base_url)
        assert client.v1.accounts.retrieve(acct.id).details_submitted is True
        assert client.v1.transfers.retrieve(transfer.id).amount == 900
        replay = client.v1.transfers.create(
            params={"amount": 900, "currency": "usd", "destination": acct.id}, options={"idempotency_key": "persist-1"}
        )
        assert replay.id == transfer.id
        balance = client.v1.balance.retrieve(options={"stripe_account": acct.id})
        assert balance.available[0].amount == 900


def test_stripe_client_helper_points_both_bases() -> None:
    client = stripe_client("http://127.0.0.1:1")
    url = client.oauth.authorize_url(params={"scope": "read_write"})
    assert url.startswith("http://127.0.0.1:1/oauth/authorize?")
    assert isinstance(client, stripe.StripeClient)
