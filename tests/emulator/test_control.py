"""Test-control routes that are not covered elsewhere."""

import time


def test_clock_can_be_set_into_the_past_for_seeding(emu, client) -> None:
    past = emu.set_clock_offset(-30 * 86_400)
    assert abs(past - (time.time() - 30 * 86_400)) < 5
    account = client.v1.accounts.create({"type": "express"})
    assert abs(account.created - past) < 5
    assert abs(emu.set_clock_offset(0) - time.time()) < 5
    reply = emu.http.post("/_emulator/clock/set", json={"offset": "soon"})
    assert reply.status_code == 400
