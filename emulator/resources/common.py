"""What every resource handler shares: the request context, object building, lookups,
list pagination and `expand[]`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emulator.errors import invalid_request, resource_missing
from emulator.events import record_event
from emulator.store import PLATFORM, Store


@dataclass
class Ctx:
    """One API request as handlers see it: who calls, for which account, under which ids."""

    store: Store
    request_id: str
    api_key: str
    account: str | None = None  # the Stripe-Account header (a connected account), if any
    idempotency_key: str | None = None
    base_url: str = ""

    @property
    def state(self) -> dict[str, Any]:
        """The store's state dict (only touch inside a transaction)."""
        return self.store.state

    @property
    def scope(self) -> str:
        """Whose objects this request sees: the platform or the Stripe-Account."""
        return self.account or PLATFORM

    def now(self) -> int:
        """Emulator time."""
        return self.store.now()

    def event(
        self,
        event_type: str,
        obj: dict[str, Any],
        *,
        account: str | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record an event caused by this request."""
        return record_event(
            self.store,
            event_type,
            obj,
            account=account,
            previous=previous,
            request_id=self.request_id,
            idempotency_key=self.idempotency_key,
        )


@dataclass(frozen=True, slots=True)
class RenderedBody:
    """A response body already written as Stripe's JSON text (no copy, expand or render)."""

    text: str


Handler = Callable[[Ctx, dict[str, Any], dict[str, str]], "dict[str, Any] | RenderedBody"]


def skeleton(resource: str) -> dict[str, Any]:
    """A fresh copy of Stripe's fixture for `resource`, so objects carry every spec field."""
    from emulator.validation import resource_skeleton

    return copy.deepcopy(resource_skeleton(resource))


def owned_by(ctx: Ctx, object_id: str) -> bool:
    """Is this object visible in the request's scope (platform or Stripe-Account)?"""
    return ctx.state["scope"].get(object_id, PLATFORM) == ctx.scope


def claim(ctx: Ctx, object_id: str) -> None:
    """Mark an object as created in the request's scope."""
    if ctx.account:
        ctx.state["scope"][object_id] = ctx.account


def lookup(
    ctx: Ctx, collection: str, object_id: str, kind: str, param: str = "id"
) -> dict[str, Any]:
    """The object with that id in the request's scope, or Stripe's 404 resource_missing."""
    obj = ctx.state[collection].get(object_id)
    if obj is None or not owned_by(ctx, object_id):
        raise resource_missing(kind, object_id, param)
    return obj


def metadata_update(current: dict[str, str], given: Any) -> dict[str, str]:
    """Apply Stripe's metadata rules: '' unsets a key, an empty value unsets all."""
    if given in ("", None):
        return {}
    if not isinstance(given, dict):
        raise invalid_request("Invalid object", "metadata")
    out = dict(current)
    for key, value in given.items():
        if len(out) >= 50 and key not in out:
            raise invalid_request("You can specify up to 50 keys in metadata.", "metadata")
        if len(str(key)) > 40:
            raise invalid_request("Metadata keys can have up to 40 characters.", f"metadata[{key}]")
        if value in ("", None):
            out.pop(key, None)
        else:
            if len(str(value)) > 500:
                raise invalid_request(
                    "Metadata values can have up to 500 characters.", f"metadata[{key}]"
                )
            out[key] = str(value)
    return out


def _created_filter(params: dict[str, Any]) -> Callable[[int], bool]:
    created = params.get("created")
    if created is None or created == "":
        return lambda _c: True
    if not isinstance(created, dict):
        value = int(created)
        return lambda c: c == value
    bounds = {k: int(v) for k, v in created.items()}
    checks = {
        "gt": lambda c, v: c > v,
        "gte": lambda c, v: c >= v,
        "lt": lambda c, v: c < v,
        "lte": lambda c, v: c <= v,
    }
    return lambda c: all(checks[k](c, v) for k, v in bounds.items() if k in checks)


def page_window(
    ids: Sequence[str], position: Mapping[str, int], params: dict[str, Any]
) -> tuple[Sequence[str], bool]:
    """The ids of one list page and ``has_more``: ``ids`` newest first, ``position`` its index.

    A cursor is a seek in ``position``, not a scan, so paging through N objects costs O(N).
    """
    limit = int(params.get("limit") or 10)  # validation already bounds it to 1..100
    after, before = params.get("starting_after"), params.get("ending_before")
    if after and before:
        raise invalid_request(
            "You may only specify one of these parameters: ending_before, starting_after.",
            "ending_before",
        )
    if after:
        if after not in position:
            raise resource_missing("object", str(after), "starting_after")
        start = position[after] + 1
        return ids[start : start + limit], len(ids) - start > limit
    if before:
        if before not in position:
            raise resource_missing("object", str(before), "ending_before")
        end = position[before]
        return ids[max(end - limit, 0) : end], end > limit
    return ids[:limit], len(ids) > limit


def paginate(items: Iterable[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
    """A Stripe list envelope over `items` (oldest first in storage, newest first out).

    The page's objects are the stored ones: the API layer copies the body before `expand[]`.
    """
    keep = _created_filter(params)
    newest_first = [i for i in reversed(list(items)) if keep(int(i.get("created", 0)))]
    ids = [i["id"] for i in newest_first]
    position = {object_id: n for n, object_id in enumerate(ids)}
    page, more = page_window(ids, position, params)
    return {
        "object": "list",
        "data": [newest_first[position[object_id]] for object_id in page],
        "has_more": more,
        "url": url,
    }


#: A list item's JSON sits two levels deep in the envelope (Stripe indents by two spaces).
_ITEM_INDENT = "\n    "


def rendered_item(obj: dict[str, Any]) -> str:
    """``obj`` as Stripe's indented JSON, indented to sit in a list envelope's ``data``."""
    return json.dumps(obj, indent=2).replace("\n", _ITEM_INDENT)


def render_list(items: Sequence[str], has_more: bool, url: str) -> RenderedBody:
    """The list envelope around items from `rendered_item`: the bytes `render` would write."""
    data = "[\n    " + ",\n    ".join(items) + "\n  ]" if items else "[]"
    return RenderedBody(
        '{\n  "object": "list",\n  "data": ' + data + ',\n  "has_more": '
        + ("true" if has_more else "false") + ',\n  "url": ' + json.dumps(url) + "\n}"
    )


_EXPANDABLE_PREFIXES = {
    "acct_": "accounts",
    "txn_": "balance_transactions",
    "tr_": "transfers",
    "ch_": "charges",
    "po_": "payouts",
    "trr_": "reversals",
}


def _expand_path(ctx: Ctx, node: Any, parts: list[str]) -> Any:
    if not parts or node is None:
        return node
    head, rest = parts[0], parts[1:]
    if head == "data" and isinstance(node, dict) and node.get("object") == "list":
        node["data"] = [_expand_path(ctx, item, rest) for item in node["data"]]
        return node
    if not isinstance(node, dict) or head not in node:
        raise invalid_request(f"This property cannot be expanded ({head}).", "expand")
    value = node[head]
    if isinstance(value, str):
        for prefix, collection in _EXPANDABLE_PREFIXES.items():
            if value.startswith(prefix) and value in ctx.state[collection]:
                value = copy.deepcopy(ctx.state[collection][value])
                break
    node[head] = _expand_path(ctx, value, rest)
    return node


def expand(ctx: Ctx, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Apply `expand[]` to a response body: ids with a known prefix become their objects."""
    wanted = params.get("expand")
    if not wanted:
        return body
    if isinstance(wanted, str):
        wanted = [wanted]
    elif isinstance(wanted, dict):
        wanted = list(wanted.values())
    for path in wanted:
        body = _expand_path(ctx, body, str(path).split("."))
    return body


def require(params: dict[str, Any], name: str) -> Any:
    """A required parameter (validation normally catches these first)."""
    if params.get(name) in (None, ""):
        raise invalid_request(f"Missing required param: {name}.", name)
    return params[name]


def positive_amount(params: dict[str, Any], name: str = "amount") -> int:
    """An integer amount > 0, with Stripe's wording when it is not."""
    value = require(params, name)
    try:
        amount = int(value)
    except (TypeError, ValueError):
        raise invalid_request(f"Invalid integer: {value}", name) from None
    if amount <= 0:
        raise invalid_request("This value must be greater than or equal to 1.", name)
    return amount
