"""GET /v1/accounts: the backfill's endpoint, served from a cache that must never go stale."""

from __future__ import annotations

import json

import httpx
import stripe

from emulator.testing import EmulatorHandle
from tests.emulator.conftest import express_account

AUTH = ("sk_test_list", "")


def _get(emu: EmulatorHandle, **params: str | int) -> httpx.Response:
    response = httpx.get(f"{emu.base_url}/v1/accounts", params=params, auth=AUTH)
    assert response.status_code == 200, response.text
    return response


def _ids(emu: EmulatorHandle, **params: str | int) -> list[str]:
    return [a["id"] for a in _get(emu, **params).json()["data"]]


def test_list_bytes_are_stripes_indented_json_like_every_other_response(
    client: stripe.StripeClient, emu: EmulatorHandle
) -> None:
    created = [express_account(client, emu, onboarded=n % 2 == 0).id for n in range(3)]
    fast = _get(emu, limit=2)
    # The generic path (a created filter) renders the same page through json.dumps(indent=2).
    generic = _get(emu, limit=2, **{"created[gte]": 0})
    assert fast.text == generic.text
    assert fast.text == json.dumps(json.loads(fast.text), indent=2)
    body = fast.json()
    assert list(body) == ["object", "data", "has_more", "url"]
    assert [a["id"] for a in body["data"]] == created[:0:-1]
    assert body["has_more"] is True and body["url"] == "/v1/accounts"
    assert body["data"][0] == client.v1.accounts.retrieve(created[2]).to_dict()
    empty = _get(emu, limit=2, starting_after=created[0])
    assert empty.json()["data"] == [] and empty.json()["has_more"] is False
    assert empty.text == json.dumps(json.loads(empty.text), indent=2)


def test_cursor_pages_cover_every_connected_account_once(
    client: stripe.StripeClient, emu: EmulatorHandle
) -> None:
    created = [client.v1.accounts.create(params={"type": "express"}).id for _ in range(7)]
    seen: list[str] = []
    cursor: dict[str, str] = {}
    while True:
        body = _get(emu, limit=3, **cursor).json()
        seen += [a["id"] for a in body["data"]]
        if not body["has_more"]:
            break
        cursor = {"starting_after": body["data"][-1]["id"]}
    # Newest first; the seeded Standard accounts are not connected, so not listed.
    assert seen == created[::-1]
    assert _ids(emu, limit=3, ending_before=created[2]) == created[:2:-1][-3:]
    assert _ids(emu, limit=10, ending_before=created[5]) == [created[6]]
    response = httpx.get(f"{emu.base_url}/v1/accounts", params={"starting_after": "acct_nope"},
                         auth=AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "starting_after"


def test_every_change_shows_in_the_next_list(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    first = express_account(client, emu, onboarded=False)
    second = express_account(client, emu, onboarded=False)
    before = {a["id"]: a for a in _get(emu, limit=10).json()["data"]}
    assert before[first.id]["charges_enabled"] is False

    client.v1.accounts.update(first.id, params={"email": "new@example.com"})
    emu.set_account(second.id, onboarding="complete")
    after = {a["id"]: a for a in _get(emu, limit=10).json()["data"]}
    assert after[first.id]["email"] == "new@example.com"
    assert after[second.id]["charges_enabled"] is True
    assert after[second.id]["requirements"]["currently_due"] == []

    third = client.v1.accounts.create(params={"type": "express"})
    client.v1.accounts.delete(first.id)
    assert _ids(emu, limit=10) == [third.id, second.id]
    emu.reset()
    assert _ids(emu, limit=10) == []
