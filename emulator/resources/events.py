"""Events: list and retrieve, scoped like Stripe's.

Without Stripe-Account the platform sees its own events (transfers, balance, charges);
with Stripe-Account it sees that connected account's events (the ones Connect webhooks
deliver with a top-level `account`).
"""

from __future__ import annotations

from typing import Any

from emulator.errors import resource_missing
from emulator.resources.common import Ctx, paginate


def _type_matches(pattern: str, event_type: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def _in_scope(ctx: Ctx, event: dict[str, Any]) -> bool:
    return event.get("account") == ctx.account


def list_events(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/events (filters: type with `*` wildcard, types[], created)."""
    patterns: list[str] = []
    if params.get("type"):
        patterns.append(str(params["type"]))
    types = params.get("types") or []
    patterns.extend(str(t) for t in types)
    items = [
        e
        for e in ctx.state["events"].values()
        if _in_scope(ctx, e) and (not patterns or any(_type_matches(p, e["type"]) for p in patterns))
    ]
    return paginate(items, params, "/v1/events")


def retrieve_event(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/events/{id}."""
    event = ctx.state["events"].get(path["id"])
    if event is None or not _in_scope(ctx, event):
        raise resource_missing("event", path["id"], "id")
    return event


ROUTES = {
    ("GET", "/v1/events"): list_events,
    ("GET", "/v1/events/{id}"): retrieve_event,
}
