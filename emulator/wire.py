"""Decode Stripe's form wire format into nested Python values.

Stripe (a Rack app) reads POST bodies and query strings as "bracketed" form
parameters: ``metadata[foo]=bar``, ``capabilities[transfers][requested]=true``,
``expand[0]=x``. The stripe-python SDK always writes arrays with explicit
indices and percent-encodes the brackets in GET query strings. This module
turns that into dicts and lists of *strings*; deciding what is an integer or a
boolean needs the endpoint's schema, so it is left to ``emulator.validation``.

Indexed arrays become :class:`IndexedList` (a plain ``list`` subclass) that
remembers the original index strings. Validation needs them because the wire
alone cannot tell ``metadata[0]=x`` (an object with key ``"0"``) from
``expand[0]=x`` (an array): Stripe decides with the schema, and so do we.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

logger = logging.getLogger(__name__)

__all__ = ["IndexedList", "WireError", "decode_params"]

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


class WireError(ValueError):
    """A body or query string whose bracket nesting Stripe would refuse."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class IndexedList(list):
    """A list decoded from ``a[0]=..&a[1]=..``; ``index_keys`` keeps the raw indices.

    It compares equal to a plain list. When the schema says "object" (for
    example ``metadata[0]=x``), validation rebuilds the dict from ``index_keys``.
    """

    index_keys: list[str]

    def __init__(self, items: Iterable[Any] = (), index_keys: Iterable[str] | None = None) -> None:
        super().__init__(items)
        self.index_keys = list(index_keys) if index_keys is not None else [str(i) for i in range(len(self))]


class _Appendable(list):
    """Internal marker for ``a[]=x`` style arrays while decoding."""


def _split_key(key: str) -> list[str]:
    """``'a[b][0]'`` -> ``['a', 'b', '0']``; ``'a[]'`` -> ``['a', '']``."""
    match = _KEY_RE.match(key)
    if match is None:
        raise WireError(f"Invalid parameter name: {key}", key or None)
    return [match.group(1), *_SEGMENT_RE.findall(match.group(2))]


def _display(parts: list[str]) -> str:
    """Render path segments back into Stripe's bracketed parameter name."""
    return parts[0] + "".join(f"[{p}]" for p in parts[1:])


def _conflict(parts: list[str]) -> WireError:
    name = _display(parts)
    return WireError(f"Invalid parameter nesting: {name} is given both as a value and as a nested object", name)


def _assign(root: dict[str, Any], parts: list[str], value: str) -> None:
    """Store ``value`` at ``parts`` inside ``root``, creating containers as needed."""
    node: Any = root
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = parts[: depth + 1]
        if isinstance(node, _Appendable):
            if part != "":
                raise _conflict(parts[:depth])
            if last:
                node.append(value)
                return
            # 'a[][b]=1&a[][c]=2': start a new element when the next key is already set (Rack).
            nxt = parts[depth + 1]
            if not node or not isinstance(node[-1], dict) or nxt in node[-1] or nxt == "":
                node.append({})
            node = node[-1]
            continue
        # node is a dict
        if part == "" and depth > 0:
            raise _conflict(parts[:depth])
        if last:
            if isinstance(node.get(part), dict | list):
                raise _conflict(here)
            node[part] = value
            return
        child = node.get(part)
        want_append = parts[depth + 1] == ""
        if child is None:
            child = _Appendable() if want_append else {}
            node[part] = child
        elif isinstance(child, str):
            raise _conflict(here)
        elif want_append != isinstance(child, _Appendable):
            raise _conflict(here)
        node = child


def _finish(value: Any) -> Any:
    """Turn digit-keyed dicts into IndexedLists and ``[]`` arrays into plain lists."""
    if isinstance(value, _Appendable):
        return [_finish(v) for v in value]
    if isinstance(value, dict):
        done = {k: _finish(v) for k, v in value.items()}
        if done and all(k.isdigit() for k in done):
            keys = sorted(done, key=int)
            return IndexedList([done[k] for k in keys], keys)
        return done
    return value


def decode_params(raw: str | bytes) -> dict[str, Any]:
    """Decode a Stripe form body or query string into nested dicts/lists of strings.

    ``'metadata[foo]=bar&expand[0]=x&expand[1]=y'`` ->
    ``{'metadata': {'foo': 'bar'}, 'expand': ['x', 'y']}``.
    Percent-encoded brackets decode the same as literal ones; ``+`` is a space;
    ``key=`` (or a bare ``key``) gives ``''``. Repeated scalar keys: the last wins.
    A name used both as a value and as a container raises :class:`WireError`.
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        if key == "":
            continue
        _assign(root, _split_key(key), value)
    return {k: _finish(v) for k, v in root.items()}
