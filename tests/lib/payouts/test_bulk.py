"""Bulk CSV: every problem named in the preview; confirming twice pays each good row once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from lib.errors import ConflictError, PermissionDeniedError, ValidationError
from lib.models import Payout, PayoutStatus
from lib.payouts import bulk
from lib.payouts.bulk import confirm_bulk, preview_bulk
from tests.lib.payouts.helpers import ADMIN, FINANCE, payout_count


def _preview(world, data: bytes, operator=ADMIN):
    with world.session_factory() as session:
        return preview_bulk(session, gateway=world.gateway, operator=operator, csv_bytes=data,
                            settings=world.settings)


def _confirm(world, data: bytes):
    return confirm_bulk(world.session_factory, gateway=world.gateway, operator=ADMIN,
                        csv_bytes=data, settings=world.settings)


@pytest.fixture
def people(world):
    payable = [world.freelancer(email=f"bulk{n}@example.com", name=f"Bulk {n}") for n in range(8)]
    blocked = world.freelancer(email="blocked@example.com", name="Blocked")
    with world.session_factory.begin() as session:
        from lib.models import ConnectedAccount

        session.execute(
            ConnectedAccount.__table__.update()
            .where(ConnectedAccount.stripe_id == blocked.stripe_account_id)
            .values(payouts_enabled=False)
        )
    return payable, blocked


def _big_csv(payable, blocked) -> tuple[bytes, dict[int, str], int]:
    """1,000 rows; every 20th is bad in a named way. Returns bytes, {line: code}, good count."""
    lines = ["freelancer_email,freelancer_id,amount,currency,description"]
    expected_bad: dict[int, str] = {}
    bad_kinds = [
        ("{email},,abc,usd,bad {n}", "bad_amount"),
        ("{email},,1.001,usd,three decimals {n}", "bad_amount"),
        ("nobody{n}@example.com,,5.00,usd,ghost {n}", "unknown_freelancer"),
        ("{email},,5.00,,no currency {n}", "missing_field"),
        (",,5.00,usd,no one {n}", "missing_field"),
        ("blocked@example.com,,5.00,usd,blocked {n}", "not_payable"),
        ("{email},,-3,usd,negative {n}", "bad_amount"),
        ("{email},,5.00,usd,row {prev}", "duplicate_row"),
        (",999999,5.00,usd,bad id {n}", "unknown_freelancer"),
        ("{email},,5.00,xyz,odd currency {n}", "bad_amount"),
    ]
    good = 0
    for n in range(1, 1001):
        line_no = n + 1
        email = payable[n % len(payable)].email
        if n % 20 == 0:
            template, code = bad_kinds[(n // 20) % len(bad_kinds)]
            # the duplicate repeats the previous (good) row exactly
            prev_email = payable[(n - 1) % len(payable)].email
            text = template.format(email=prev_email if code == "duplicate_row" else email,
                                   n=n, prev=n - 1)
            lines.append(lines[-1] if code == "duplicate_row" else text)
            expected_bad[line_no] = code
        else:
            lines.append(f"{email},,{1 + n % 7}.{n % 100:02d},usd,row {n}")
            good += 1
    return ("\n".join(lines) + "\n").encode(), expected_bad, good


@pytest.mark.slow
def test_thousand_rows_previewed_then_confirmed_twice_pay_each_good_row_once(world, people):
    world.emu.set_balance(10_000_000, "usd")
    data, expected_bad, good = _big_csv(*people)

    preview = _preview(world, data)
    assert payout_count(world.session_factory) == 0
    assert len(preview.rows) == 1000
    bad = {r.row_number: [p.code for p in r.problems] for r in preview.bad_rows}
    assert set(bad) == set(expected_bad)
    for line, code in expected_bad.items():
        assert code in bad[line], (line, bad[line])
    assert all(r.problems[0].message for r in preview.bad_rows)
    (total,) = preview.totals
    assert total.currency == "usd" and total.rows == good and total.covered
    assert sum(r.money.amount_minor for r in preview.good_rows) == total.amount_minor

    started = time.monotonic()
    first = _confirm(world, data)
    assert first.count("paid") == good and len(first.skipped) == len(expected_bad)
    second = _confirm(world, data)
    assert second.count("paid") == good
    elapsed = time.monotonic() - started
    assert payout_count(world.session_factory) == good
    transfers = world.transfers()
    assert len(transfers) == good
    assert len({t["metadata"]["payout_id"] for t in transfers}) == good
    assert world.available() == 10_000_000 - total.amount_minor
    assert elapsed < 300


def test_crash_midway_resumes_without_paying_twice(world, people):
    payable, _ = people
    world.emu.set_balance(1_000_000, "usd")
    data = ("freelancer_email,amount,currency,description\n" + "".join(
        f"{payable[i % 3].email},{i + 1}.00,usd,line {i}\n" for i in range(6))).encode()
    # The "crash": the first two rows get no answer (Stripe did execute them).
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers", method="POST", count=2)
    first = _confirm(world, data)
    assert sorted(r.status for r in first.results) == ["paid"] * 4 + ["unknown"] * 2
    again = _confirm(world, data)
    assert [r.status for r in again.results] == ["paid"] * 6
    assert len(world.transfers()) == 6
    with world.session_factory() as session:
        kinds = set(session.scalars(select(Payout.payout_type)))
        rows = session.scalar(select(func.count()).select_from(Payout))
    assert kinds == {"BULK"} and rows == 6


def test_confirm_refuses_when_the_balance_does_not_cover_the_file(world, people):
    payable, _ = people
    world.emu.set_balance(500, "usd")
    data = f"freelancer_email,amount,currency\n{payable[0].email},10.00,usd\n".encode()
    preview = _preview(world, data)
    assert not preview.covered and preview.totals[0].available_minor == 500
    with pytest.raises(ConflictError, match="Not enough available balance"):
        _confirm(world, data)
    assert payout_count(world.session_factory) == 0 and world.transfers() == []


def test_rows_over_the_threshold_wait_for_approval(world, people):
    payable, _ = people
    world.emu.set_balance(10_000_000, "usd")
    data = f"freelancer_id,amount,currency,description\n{payable[0].id},2000.00,usd,big\n".encode()
    result = _confirm(world, data)
    assert [r.status for r in result.results] == [PayoutStatus.PENDING_APPROVAL]
    assert world.transfers() == []


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        ("freelancer_email,amount,currency\nx@\xe9.com,1,usd\n".encode("latin-1"), "not UTF-8"),
        (b"email,amount,currency\na@b.com,1,usd\n", "freelancer_email or freelancer_id"),
        (b"freelancer_id,amount\n1,1\n", "currency"),
        (b"freelancer_id,amount,currency\n", "no rows"),
        (b"freelancer_id,amount,currency\n1,\"unterminated,usd\n", "malformed"),
        (b"freelancer_id,amount,currency\n1,2,usd\x00\n", "NUL"),
    ],
)
def test_unreadable_files_are_refused_clearly(world, data, fragment):
    with pytest.raises(ValidationError, match=fragment):
        _preview(world, data)


def test_size_and_row_limits(world, monkeypatch):
    monkeypatch.setattr(bulk, "MAX_CSV_BYTES", 100)
    with pytest.raises(ValidationError, match="limit is 100"):
        _preview(world, b"freelancer_id,amount,currency\n" + b"1,1,usd\n" * 20)
    monkeypatch.setattr(bulk, "MAX_CSV_BYTES", 10_000)
    monkeypatch.setattr(bulk, "MAX_ROWS", 3)
    with pytest.raises(ValidationError, match="more than 3 rows"):
        _preview(world, b"freelancer_id,amount,currency\n" + b"1,1,usd\n" * 4)


def test_bom_and_id_email_disagreement(world, people):
    payable, _ = people
    data = ("\ufefffreelancer_id,freelancer_email,amount,currency\n"
            f"{payable[0].id},{payable[1].email},1.00,usd\n"
            f"{payable[0].id},{payable[0].email.upper()},1.00,usd\n").encode()
    preview = _preview(world, data)
    assert [r.ok for r in preview.rows] == [False, True]
    assert "different people" in preview.rows[0].problems[0].message


def test_only_requesters_may_upload(world):
    with pytest.raises(PermissionDeniedError):
        _preview(world, b"freelancer_id,amount,currency\n1,1,usd\n", operator=FINANCE)


# ---- rows identified by content (issue 17, defect 4) ------------------------------------------

def _sheet(payable) -> list[tuple[str, str, str, str]]:
    return [(payable[i % 3].email, f"{i + 1}.00", "usd", f"line {i}") for i in range(6)]


def _resaved(rows, *, crlf=False, bom=False, trailing=False, reorder=False, sort=False) -> bytes:
    header = ["freelancer_email", "amount", "currency", "description"]
    order = [3, 1, 0, 2] if reorder else [0, 1, 2, 3]
    body = sorted(rows, reverse=True) if sort else rows
    newline = "\r\n" if crlf else "\n"
    lines = [",".join(header[i] for i in order)] + [",".join(r[i] for i in order) for r in body]
    text = newline.join(lines) + (newline + newline if trailing else newline)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


@pytest.mark.parametrize("variant", [
    {"crlf": True}, {"bom": True}, {"trailing": True}, {"reorder": True}, {"sort": True},
    {"crlf": True, "bom": True, "reorder": True, "sort": True, "trailing": True},
], ids=["crlf", "bom", "trailing-newline", "reordered-columns", "sorted-rows", "all"])
def test_a_resaved_sheet_after_a_partial_run_pays_no_row_twice(world, people, variant):
    payable, _ = people
    world.emu.set_balance(1_000_000, "usd")
    rows = _sheet(payable)
    original = _resaved(rows)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers", method="POST", count=2)
    first = _confirm(world, original)
    assert sorted(r.status for r in first.results) == ["paid"] * 4 + ["unknown"] * 2
    resaved = _resaved(rows, **variant)
    assert resaved != original
    preview = _preview(world, resaved)
    assert len(preview.already_in_ledger) == 6 and not preview.ledger_matches
    again = _confirm(world, resaved)
    assert sorted(r.status for r in again.results) == ["paid"] * 6
    assert len(world.transfers()) == 6 and payout_count(world.session_factory) == 6


def test_a_reference_column_tells_identical_rows_apart(world, people):
    payable, _ = people
    world.emu.set_balance(1_000_000, "usd")
    email = payable[0].email
    same = f"freelancer_email,amount,currency,description\n{email},5.00,usd,Retainer\n" * 1
    first = _confirm(world, same.encode())
    assert [r.status for r in first.results] == ["paid"]
    # The same sheet next month: without a reference it is the same row, never paid twice...
    again = _confirm(world, same.encode())
    assert [r.status for r in again.results] == ["paid"] and len(world.transfers()) == 1
    # ...with a reference column it is a new instruction.
    referenced = (f"freelancer_email,amount,currency,description,reference\n"
                  f"{email},5.00,usd,Retainer,INV-2026-12\n{email},5.00,usd,Retainer,INV-2027-01\n")
    preview = _preview(world, referenced.encode())
    assert [r.ok for r in preview.rows] == [True, True]
    result = _confirm(world, referenced.encode())
    assert [r.status for r in result.results] == ["paid", "paid"] and len(world.transfers()) == 3
    with world.session_factory() as session:
        refs = sorted(r for r in session.scalars(select(Payout.reference)) if r)
    assert refs == ["INV-2026-12", "INV-2027-01"]


def test_rows_like_payouts_made_otherwise_need_an_acknowledgement(world, people):
    from lib.payouts.ledger import request_payout
    from tests.factories import make_settings

    payable, _ = people
    world.emu.set_balance(1_000_000, "usd")
    settings = make_settings(stripe_api_base=world.emu.base_url,
                             stripe_connect_base=world.emu.base_url,
                             payout_duplicate_window_days=7)
    with world.session_factory.begin() as session:
        manual = request_payout(session, operator=ADMIN, freelancer_id=payable[0].id,
                                amount="12.00", currency="usd", description="Invoice 7",
                                client_request_token="form-1", settings=settings)
    data = (f"freelancer_email,amount,currency,description\n{payable[0].email},12.00,usd,"
            f"invoice  7\n{payable[1].email},3.00,usd,Other\n").encode()
    with world.session_factory() as session:
        preview = preview_bulk(session, gateway=world.gateway, operator=ADMIN, csv_bytes=data,
                               settings=settings)
    (match,) = preview.ledger_matches
    assert match.matches_payout_id == manual.id and f"#{manual.id}" in match.to_row()["looks_like"]
    with pytest.raises(ConflictError, match=f"payout #{manual.id}"):
        confirm_bulk(world.session_factory, gateway=world.gateway, operator=ADMIN,
                     csv_bytes=data, settings=settings)
    assert payout_count(world.session_factory) == 1
    result = confirm_bulk(world.session_factory, gateway=world.gateway, operator=ADMIN,
                          csv_bytes=data, settings=settings, acknowledge_matches=True)
    assert [r.status for r in result.results] == ["paid", "paid"]
