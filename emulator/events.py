"""Recording Stripe events: every state change the emulator makes produces one.

An event copies the object as it is now (`data.object`) and, for updates, the old values
of what changed (`data.previous_attributes`, nested like Stripe's). Events about a
connected account carry a top-level `account` and go to the Connect webhook endpoint.
"""

from __future__ import annotations

import copy
from typing import Any

from emulator.store import Store, new_id

_MISSING = object()


def previous_attributes(old: Any, new: Any) -> dict[str, Any]:
    """Old values of the keys that changed between two versions of an object (recursive)."""
    out: dict[str, Any] = {}
    for key, old_value in old.items():
        new_value = new.get(key, _MISSING)
        if new_value is _MISSING or new_value == old_value:
            continue
        if isinstance(old_value, dict) and isinstance(new_value, dict):
            nested = previous_attributes(old_value, new_value)
            out[key] = nested if nested else copy.deepcopy(old_value)
        else:
            out[key] = copy.deepcopy(old_value)
    return out


def record_event(
    store: Store,
    event_type: str,
    obj: dict[str, Any],
    *,
    account: str | None = None,
    previous: dict[str, Any] | None = None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Store an event (inside a transaction) and queue it for webhook delivery."""
    config = store.config
    if account:
        endpoints = 1 if config.connect_webhook_url and config.connect_webhook_secret else 0
    else:
        endpoints = 1 if config.webhook_url and config.webhook_secret else 0
    data: dict[str, Any] = {"object": copy.deepcopy(obj)}
    if previous:
        data["previous_attributes"] = copy.deepcopy(previous)
    event: dict[str, Any] = {"id": new_id("evt"), "object": "event"}
    if account:
        event["account"] = account
    event.update(
        {
            "api_version": config.api_version,
            "created": store.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": endpoints,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": event_type,
        }
    )
    store.state["events"][event["id"]] = event
    store.queue_event(event)
    return event
