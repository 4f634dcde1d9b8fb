"""python -m lib.payouts: settings from the environment, the operator from the users file."""

from __future__ import annotations

import pytest

from lib.payouts import __main__ as cli
from tests.factories import TEST_SECRET_KEY
from tests.lib.payouts.helpers import payout_count

USERS = """credentials:
  usernames:
    alice: {name: Alice, email: alice@example.com, password: "$2b$04$notarealhashnotarealhash", roles: [admin]}
    mia: {name: Mia, email: mia@example.com, password: "$2b$04$notarealhashnotarealhash", roles: [manager]}
"""


@pytest.fixture
def env(world, database_url, tmp_path, monkeypatch):
    users = tmp_path / "auth.yaml"
    users.write_text(USERS)
    monkeypatch.setenv("STRIPE_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", world.emu.base_url)
    monkeypatch.setenv("STRIPE_CONNECT_BASE", world.emu.base_url)
    monkeypatch.setenv("STRIPE_MAX_NETWORK_RETRIES", "0")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AUTH_CONFIG_PATH", str(users))
    monkeypatch.setattr("lib.cli.configure_logging", lambda level: None)
    return tmp_path


def test_missing_configuration_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    assert cli.main(["reconcile", "--since", "2026-11-01", "--operator", "alice"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "STRIPE_SECRET_KEY is not set" in err


def test_unknown_operator_is_a_configuration_error(env, capsys):
    assert cli.main(["reconcile", "--since", "2026-11-01", "--operator", "zed"]) == 2
    assert "'zed' is not a user" in capsys.readouterr().err


def test_reconcile_writes_report_rows(env, world, capsys):
    world.emu.set_balance(10_000, "usd")
    freelancer = world.freelancer()
    world.gateway.create_transfer(amount_minor=100, currency="usd",
                                  destination=freelancer.stripe_account_id,
                                  idempotency_key="cli-stray")
    code = cli.main(["reconcile", "--since", "2020-01-01", "--operator", "alice"])
    out, err = capsys.readouterr()
    assert code == 1  # a mismatch was found
    assert out.splitlines()[0].startswith("kind,detail,payout_id")
    assert "missing_ledger" in out and "missing_ledger" in err


def test_bulk_dry_run_then_confirm(env, world, capsys):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer(email="cli@example.com")
    path = env / "pay.csv"
    path.write_bytes(b"freelancer_email,amount,currency,description\n"
                     b"cli@example.com,12.50,usd,June\ncli@example.com,oops,usd,July\n")
    assert cli.main(["bulk", str(path), "--dry-run", "--operator", "alice"]) == 0
    out, err = capsys.readouterr()
    assert "1 good rows, 1 with problems" in err and "bad_amount" in out
    assert payout_count(world.session_factory) == 0
    assert cli.main(["bulk", str(path), "--confirm", "--operator", "alice"]) == 0
    assert "1 paid" in capsys.readouterr().err
    assert [t["destination"] for t in world.transfers()] == [freelancer.stripe_account_id]


def test_bulk_is_refused_for_a_manager(env, capsys):
    path = env / "pay.csv"
    path.write_bytes(b"freelancer_id,amount,currency\n1,1,usd\n")
    assert cli.main(["bulk", str(path), "--dry-run", "--operator", "mia"]) == 1
    assert "may not request payout" in capsys.readouterr().err


def test_reverse_from_the_command_line(env, world, capsys):
    from lib.payouts.execution import execute_payout
    from tests.lib.payouts.helpers import ADMIN
    from tests.lib.payouts.test_execution import _request

    world.emu.set_balance(100_000, "usd")
    payout = execute_payout(world.session_factory, gateway=world.gateway,
                            payout_id=_request(world, world.freelancer().id), operator=ADMIN)
    args = ["reverse", str(payout.id), "--amount", "5.00", "--reason", "Overpaid",
            "--key", "ticket-77", "--operator", "Alice"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert "succeeded" in first and "trr_" in first
    assert cli.main(args) == 0  # the same key: the same reversal, nothing reversed again
    assert capsys.readouterr().out == first
    assert world.gateway.retrieve_transfer(payout.stripe_transfer_id)["amount_reversed"] == 500
    assert cli.main(["reverse", str(payout.id), "--reason", "x", "--operator", "mia"]) == 1
    assert "may not reverse payout" in capsys.readouterr().err


def test_retry_reversals_from_the_command_line(env, world, capsys):
    from lib.payouts.execution import execute_payout
    from lib.payouts.reversal import reverse_payout
    from tests.lib.payouts.helpers import ADMIN
    from tests.lib.payouts.test_execution import _request

    world.emu.set_balance(100_000, "usd")
    payout = execute_payout(world.session_factory, gateway=world.gateway,
                            payout_id=_request(world, world.freelancer().id), operator=ADMIN)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers/", method="POST")
    lost = reverse_payout(world.session_factory, gateway=world.gateway, operator=ADMIN,
                          payout_id=payout.id, amount="5.00", reason="fee",
                          settings=world.settings)
    assert lost.status == "unknown"
    assert cli.main(["retry-reversals", "--operator", "alice"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "reversal_id,payout_id,status", f"{lost.id},{payout.id},succeeded"]
