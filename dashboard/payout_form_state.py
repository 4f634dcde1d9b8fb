"""The single-payout form's steps, kept in the session: form → confirm → (send) → done.

Pure Python over a mapping (Streamlit's session state on the page, a dict in the tests): no
streamlit import, so every transition is unit tested on its own. The keys are the ones the page
has always used (tests and open sessions rely on them).

Why a double click cannot pay twice
    A ``client_request_token`` (uuid4) is made when the form is first shown and kept in the
    session until the payout exists. Every send passes it to ``request_payout``, whose UNIQUE
    column returns the existing row for a repeated token, and ``execute_payout`` claims the row
    with a conditional update before Stripe is called. The button is disabled while a send is
    in flight (:func:`start_send`, the button's ``on_click``, runs before the rerun), but that
    only spares people a confusing second click: the token and the claim are what guarantee
    one row, one transfer.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from typing import Any, Literal, TypedDict

Step = Literal["form", "confirm", "done"]
#: Streamlit's session state (keyed by ``str | int``) or, in tests, a plain dict.
State = MutableMapping[Any, Any]

#: The ``client_request_token`` of the payout this form makes (one per payout).
REQUEST_ID = "payouts_token"
STAGE = "payouts_stage"
#: A send is running: the buttons are disabled.
IN_FLIGHT = "payouts_in_flight"
#: The confirm button was clicked: this run sends.
SEND = "payouts_send"
DRAFT = "payouts_draft"
RESULT = "payouts_result"
#: The "pay again, this is not a repeat" checkbox.
REPEAT_OK = "payouts_repeat_ok"
#: What one payout typed in; cleared with it so the next form starts empty.
_PER_PAYOUT = (DRAFT, RESULT, "payouts_amount", "payouts_description", REPEAT_OK)


class Earlier(TypedDict):
    """The payout a new one looks like a repeat of, as the confirm step names it."""

    id: int
    status: str
    by: str
    when: str
    description: str


class Draft(TypedDict):
    """A checked payout waiting on the confirm step."""

    freelancer_id: int
    freelancer: str
    amount: str
    currency: str
    description: str
    shown: str
    ok: bool
    approval: bool
    checks: list[dict[str, Any]]
    limits: str
    duplicate_of: Earlier | None


class Outcome(TypedDict):
    """What became of the payout, for the done step."""

    id: int
    status: str
    transfer: str | None
    error: str | None
    shown: str
    freelancer: str


def fresh_form(state: State) -> None:
    """A new token for a new payout; the old one stays with the row it made."""
    state[REQUEST_ID] = str(uuid.uuid4())
    state[STAGE] = "form"
    state[IN_FLIGHT] = False
    state[SEND] = False
    for name in _PER_PAYOUT:
        state.pop(name, None)


def current_step(state: State) -> Step:
    """The step to draw (starting a form on the first visit).

    On the done step a pending send is dropped: a stale second click must not start anything.
    """
    if REQUEST_ID not in state:
        fresh_form(state)
    stage = state.get(STAGE, "form")
    if stage == "done" and state.get(RESULT):
        state[SEND] = False
        return "done"
    if stage == "confirm" and state.get(DRAFT):
        return "confirm"
    return "form"


def request_token(state: State) -> str:
    return str(state[REQUEST_ID])


def draft(state: State) -> Draft:
    found: Draft = state[DRAFT]
    return found


def outcome(state: State) -> Outcome:
    found: Outcome = state[RESULT]
    return found


def checked(state: State, new_draft: Draft) -> None:
    """The checks ran: show the confirm step for ``new_draft``."""
    state[DRAFT] = new_draft
    state[STAGE] = "confirm"


def back_to_form(state: State) -> None:
    state[STAGE] = "form"
    state[SEND] = False


def start_send(state: State) -> None:
    """The confirm button's ``on_click``: runs before the rerun, so the rerun disables it."""
    state[IN_FLIGHT] = True
    state[SEND] = True


def in_flight(state: State) -> bool:
    return bool(state.get(IN_FLIGHT))


def send_requested(state: State) -> bool:
    return bool(state.get(SEND))


def blocked_by_repeat(state: State, shown: Draft) -> bool:
    """The draft repeats an earlier payout and the person has not said it is a new one."""
    return bool(shown.get("duplicate_of")) and not state.get(REPEAT_OK)


def confirmed_repeat_of(state: State, shown: Draft) -> int | None:
    """The earlier payout's id when the person confirmed paying again (lib then allows it)."""
    earlier = shown.get("duplicate_of")
    if not state.get(REPEAT_OK) or earlier is None:
        return None
    return earlier["id"]


def send_refused(state: State) -> None:
    """The send stopped before a payout existed: the confirm step is usable again."""
    state[IN_FLIGHT] = False
    state[SEND] = False


def repeat_found(state: State, shown: Draft, earlier: Earlier | None) -> None:
    """Another payout like this one appeared since the check: name it and ask again."""
    send_refused(state)
    shown["duplicate_of"] = earlier
    state[REPEAT_OK] = False


def sent(state: State, result: Outcome) -> None:
    """The payout row exists (whatever its status): the form is done with this token."""
    state[RESULT] = result
    state[STAGE] = "done"
    send_refused(state)
