"""The single-payout form's steps (``dashboard.payout_form_state``) on a plain dict."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard import payout_form_state as form


def _draft(duplicate_of: form.Earlier | None = None) -> form.Draft:
    return {"freelancer_id": 7, "freelancer": "Paula Payee", "amount": "25.00",
            "currency": "usd", "description": "Invoice 7", "shown": "$25.00 USD", "ok": True,
            "approval": False, "checks": [], "limits": "", "duplicate_of": duplicate_of}


def _earlier(payout_id: int = 3) -> form.Earlier:
    return {"id": payout_id, "status": "paid", "by": "alice", "when": "2024-05-01 10:00 UTC",
            "description": "Invoice 7"}


def _outcome() -> form.Outcome:
    return {"id": 1, "status": "paid", "transfer": "tr_1", "error": None, "shown": "$25.00 USD",
            "freelancer": "Paula Payee"}


@pytest.fixture
def state() -> dict[str, Any]:
    return {}


def test_the_first_visit_starts_a_form_with_a_token(state: dict[str, Any]) -> None:
    assert form.current_step(state) == "form"
    token = form.request_token(state)
    assert len(token) == 36
    assert not form.in_flight(state) and not form.send_requested(state)
    assert form.current_step(state) == "form" and form.request_token(state) == token


def test_check_confirm_send_done(state: dict[str, Any]) -> None:
    form.current_step(state)
    token = form.request_token(state)
    form.checked(state, _draft())
    assert form.current_step(state) == "confirm"
    form.start_send(state)
    assert form.in_flight(state) and form.send_requested(state)
    form.sent(state, _outcome())
    assert form.current_step(state) == "done"
    assert form.outcome(state)["transfer"] == "tr_1"
    assert not form.in_flight(state) and not form.send_requested(state)
    assert form.request_token(state) == token      # the token stays until the next form


def test_a_stale_click_on_the_done_step_starts_nothing(state: dict[str, Any]) -> None:
    form.current_step(state)
    form.checked(state, _draft())
    form.sent(state, _outcome())
    form.start_send(state)                          # the second click of a double click
    assert form.current_step(state) == "done"
    assert not form.send_requested(state)


def test_another_payout_gets_a_new_token_and_an_empty_form(state: dict[str, Any]) -> None:
    form.current_step(state)
    first = form.request_token(state)
    state.update({"payouts_amount": "25.00", "payouts_description": "Invoice 7",
                  form.REPEAT_OK: True, "payouts_freelancer_id": 7})
    form.checked(state, _draft())
    form.sent(state, _outcome())
    form.fresh_form(state)
    assert form.current_step(state) == "form"
    assert form.request_token(state) != first
    for gone in (form.DRAFT, form.RESULT, "payouts_amount", "payouts_description",
                 form.REPEAT_OK):
        assert gone not in state
    assert state["payouts_freelancer_id"] == 7     # the freelancer chosen elsewhere stays


def test_back_to_the_form_keeps_the_token_and_cancels_a_send(state: dict[str, Any]) -> None:
    form.current_step(state)
    token = form.request_token(state)
    form.checked(state, _draft())
    state[form.SEND] = True
    form.back_to_form(state)
    assert form.current_step(state) == "form"
    assert not form.send_requested(state) and form.request_token(state) == token


def test_a_step_without_its_data_falls_back_to_the_form(state: dict[str, Any]) -> None:
    form.current_step(state)
    state[form.STAGE] = "confirm"                   # no draft
    assert form.current_step(state) == "form"
    state[form.STAGE] = "done"                      # no result
    assert form.current_step(state) == "form"


def test_a_refused_send_makes_the_confirm_step_usable_again(state: dict[str, Any]) -> None:
    form.current_step(state)
    form.checked(state, _draft())
    form.start_send(state)
    form.send_refused(state)
    assert form.current_step(state) == "confirm"
    assert not form.in_flight(state) and not form.send_requested(state)


def test_a_repeat_blocks_the_send_until_the_person_confirms(state: dict[str, Any]) -> None:
    plain, repeat = _draft(), _draft(duplicate_of=_earlier(3))
    assert not form.blocked_by_repeat(state, plain)
    assert form.confirmed_repeat_of(state, plain) is None
    assert form.blocked_by_repeat(state, repeat)
    assert form.confirmed_repeat_of(state, repeat) is None
    state[form.REPEAT_OK] = True
    assert not form.blocked_by_repeat(state, repeat)
    assert form.confirmed_repeat_of(state, repeat) == 3


def test_a_repeat_found_while_sending_names_it_and_asks_again(state: dict[str, Any]) -> None:
    form.current_step(state)
    draft = _draft()
    form.checked(state, draft)
    state[form.REPEAT_OK] = True
    form.start_send(state)
    form.repeat_found(state, draft, _earlier(9))
    assert form.current_step(state) == "confirm"
    assert form.draft(state)["duplicate_of"] == _earlier(9)
    assert form.blocked_by_repeat(state, form.draft(state))
    assert not form.in_flight(state) and not form.send_requested(state)
