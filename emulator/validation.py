"""Validate and type request parameters exactly as Stripe's API does.

The emulator must refuse what Stripe refuses, with Stripe's error fields, or a
client that passes against the emulator can fail in production. The rules
(which parameters exist, their types, enums, required lists) come from the
committed OpenAPI subset in ``emulator/spec``; the error messages are Stripe's
own where they could be confirmed (see ``docs`` notes on each helper).

Coercion: the wire gives strings; :func:`validate_params` returns ``int`` for
integers (including unix times), ``bool`` for booleans, ``Decimal`` for
numbers, nested dicts/lists recursively, and ``None`` where the client sent
``''`` to *unset* a field the spec lets you unset (``metadata``, a metadata
key, or any field whose ``anyOf`` includes ``enum: ['']``).
"""

from __future__ import annotations

import copy
import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from emulator.spec import load_subset
from emulator.wire import IndexedList

logger = logging.getLogger(__name__)

__all__ = [
    "InvalidRequest",
    "endpoint_info",
    "endpoint_templates",
    "match_template",
    "resource_fields",
    "resource_skeleton",
    "unrecognized_url",
    "validate_params",
]

_INT_RE = re.compile(r"^-?[0-9]+$")
_DECIMAL_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_INT64_MAX = 2**63 - 1
_EXPAND_SCHEMA: dict[str, Any] = {"type": "array", "items": {"type": "string", "maxLength": 5000}}
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500


class InvalidRequest(Exception):
    """A 4xx ``invalid_request_error`` carrying the fields Stripe puts in its error body."""

    type = "invalid_request_error"

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, http_status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.http_status = http_status

    def to_dict(self) -> dict[str, Any]:
        """Stripe's error body. Like Stripe, keys whose value is null are left out,
        and a ``doc_url`` accompanies every ``code``."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}

    def __repr__(self) -> str:
        return f"InvalidRequest({self.message!r}, param={self.param!r}, code={self.code!r})"


# --------------------------------------------------------------------------- helpers


def _child(name: str, key: str | int) -> str:
    """Bracketed name of a nested parameter: ``capabilities`` + ``foo`` -> ``capabilities[foo]``."""
    return f"{name}[{key}]" if name else str(key)


def _leaf(name: str) -> str:
    return name.rsplit("[", 1)[-1].rstrip("]")


def _inspect(value: Any) -> str:
    """Render a decoded value the way Stripe (a Ruby service) echoes it in messages."""
    if isinstance(value, IndexedList):
        value = dict(zip(value.index_keys, value, strict=True))
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}"=>{_inspect(v)}' for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inspect(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _scalar_text(value: Any) -> str:
    return value if isinstance(value, str) else _inspect(value)


def _truncate(value: str) -> str:
    """Stripe shortens long values in messages: 'nnnnnnnnnn...nnnnnnnnnn'."""
    return value if len(value) <= 23 else f"{value[:10]}...{value[-10:]}"


def _sentence(values: list[str]) -> str:
    """Ruby's ``to_sentence``: 'a', 'a or b', 'a, b, or c'."""
    if len(values) <= 2:
        return " or ".join(values)
    return ", ".join(values[:-1]) + ", or " + values[-1]


def _empty(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"You passed an empty string for '{name}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{name}' cannot be unset. You should remove '{name}' from "
        "your request or supply a non-empty value.",
        param=name,
        code="parameter_invalid_empty",
    )


def _allows_empty(schema: dict[str, Any]) -> bool:
    return "" in schema.get("enum", ()) or any(_allows_empty(a) for a in schema.get("anyOf", ()))


def _shape_matches(schema: dict[str, Any], value: Any) -> bool:
    """Does the alternative expect the value's shape (object, array or scalar)?"""
    expected = schema.get("type")
    if isinstance(value, IndexedList):  # could be either an array or a digit-keyed object
        return expected in ("array", "object")
    if isinstance(value, dict):
        return expected == "object"
    if isinstance(value, list):
        return expected == "array"
    return expected not in ("object", "array")


# --------------------------------------------------------------------------- coercion


def _coerce(schema: dict[str, Any], value: Any, name: str) -> Any:
    """Check ``value`` against ``schema`` and return it typed; raise InvalidRequest otherwise."""
    if "anyOf" in schema:
        return _coerce_any_of(schema["anyOf"], value, name)
    kind = schema.get("type")
    if kind == "object":
        return _coerce_object(schema, value, name)
    if kind == "array":
        return _coerce_array(schema, value, name)
    if kind == "integer":
        return _coerce_integer(value, name)
    if kind == "boolean":
        return _coerce_boolean(value, name)
    if kind == "number":
        return _coerce_number(value, name)
    if kind == "string" or "enum" in schema or "maxLength" in schema:
        return _coerce_string(schema, value, name)
    return value


def _coerce_any_of(alternatives: list[dict[str, Any]], value: Any, name: str) -> Any:
    """First alternative that accepts the value wins; on failure, report the error of the
    alternative shaped like the value (so ``created=abc`` says 'Invalid integer: abc')."""
    if value == "" and any(_allows_empty(a) for a in alternatives):
        return None
    ordered = sorted(
        (a for a in alternatives if a.get("enum") != [""]),
        key=lambda a: not _shape_matches(a, value),
    )
    first_error: InvalidRequest | None = None
    for alt in ordered:
        try:
            return _coerce(alt, value, name)
        except InvalidRequest as exc:
            first_error = first_error or exc
    if first_error is None:  # only the '' alternative exists and value is not ''
        raise InvalidRequest(f"Invalid {name}: must be one of \"\"", param=name)
    raise first_error


def _coerce_object(schema: dict[str, Any], value: Any, name: str) -> Any:
    props: dict[str, Any] = schema.get("properties", {})
    extra: dict[str, Any] | None = schema.get("additionalProperties")
    is_metadata = extra is not None and not props and _leaf(name) == "metadata"
    if value == "":
        if is_metadata:
            return None
        raise _empty(name)
    if isinstance(value, IndexedList):  # 'metadata[0]=x': the wire could not know it was an object
        value = dict(zip(value.index_keys, value, strict=True))
    if not isinstance(value, dict):
        raise InvalidRequest("Invalid object", param=name)
    if is_metadata:
        _check_metadata(value, name)
    unknown = [k for k in value if k not in props and extra is None]
    if unknown:
        raise _unknown([_child(name, k) for k in unknown])
    for req in schema.get("required", []):
        if req not in value:
            raise _missing(_child(name, req))
    out: dict[str, Any] = {}
    for key, sub in value.items():
        if key in props:
            out[key] = _coerce(props[key], sub, _child(name, key))
        elif is_metadata and sub == "":
            out[key] = None
        else:
            out[key] = _coerce(extra or {}, sub, _child(name, key))
    return out


def _check_metadata(value: dict[str, Any], name: str) -> None:
    """Stripe's metadata limits: 50 keys, keys <= 40 chars, values <= 500 chars and strings."""
    if len(value) > METADATA_MAX_KEYS:
        raise InvalidRequest(
            f"Metadata can have up to {METADATA_MAX_KEYS} keys, but you've set {len(value)}. "
            "Email us at support+metadata@stripe.com for more information.",
            param=name,
        )
    for key, val in value.items():
        if len(key) > METADATA_KEY_MAX:
            raise InvalidRequest(
                f"Invalid key: {key} must be a string under {METADATA_KEY_MAX} characters", param=name
            )
        if not isinstance(val, str) or len(val) > METADATA_VALUE_MAX:
            raise InvalidRequest(
                f"Invalid val: {_scalar_text(val)} must be a string under {METADATA_VALUE_MAX} characters",
                param=name,
            )


def _coerce_array(schema: dict[str, Any], value: Any, name: str) -> list[Any]:
    if value == "":
        raise _empty(name)
    if not isinstance(value, list):
        raise InvalidRequest("Invalid array", param=name)
    items = schema.get("items", {})
    keys = value.index_keys if isinstance(value, IndexedList) else [str(i) for i in range(len(value))]
    return [_coerce(items, v, _child(name, k)) for k, v in zip(keys, value, strict=True)]


def _coerce_integer(value: Any, name: str) -> int:
    """'Invalid integer: 10.5' (code parameter_invalid_integer), as Stripe answers."""
    text = _scalar_text(value)
    if not isinstance(value, str) or not _INT_RE.match(value) or abs(int(value)) > _INT64_MAX:
        raise InvalidRequest(f"Invalid integer: {text}", param=name, code="parameter_invalid_integer")
    number = int(value)
    if number < 0:
        raise InvalidRequest("Invalid non-negative integer", param=name, code="parameter_invalid_integer")
    return number


def _coerce_boolean(value: Any, name: str) -> bool:
    """Only 'true'/'false': Stripe rejects 'True' and '1' with 'Invalid boolean: True' (no code)."""
    if value == "true":
        return True
    if value == "false":
        return False
    raise InvalidRequest(f"Invalid boolean: {_scalar_text(value)}", param=name)


def _coerce_number(value: Any, name: str) -> Decimal:
    if isinstance(value, str) and _DECIMAL_RE.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the regex already guarantees a decimal
            pass
    raise InvalidRequest(f"Invalid decimal: {_scalar_text(value)}", param=name)


def _coerce_string(schema: dict[str, Any], value: Any, name: str) -> str | None:
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid string: {_inspect(value)}", param=name)
    enum = schema.get("enum")
    if value == "":
        if enum is not None and "" in enum:
            return None
        raise _empty(name)
    # ``bypass_validation`` (x-stripeBypassValidation) only tells SDK generators not to
    # check the enum client-side; the API itself still refuses other values
    # (e.g. "Invalid type: must be one of ..." for account_links), so enforce it.
    if enum is not None and value not in enum:
        choices = [e for e in enum if e != ""]
        raise InvalidRequest(f"Invalid {name}: must be one of {_sentence(choices)}", param=name)
    limit = schema.get("maxLength")
    if limit is not None and len(value) > limit:
        raise InvalidRequest(
            f"Invalid string: {_truncate(value)}; must be at most {limit} characters", param=name
        )
    return value


def _unknown(names: list[str]) -> InvalidRequest:
    if len(names) == 1:
        return InvalidRequest(
            f"Received unknown parameter: {names[0]}", param=names[0], code="parameter_unknown"
        )
    return InvalidRequest(
        f"Received unknown parameters: {', '.join(names)}", param=names[0], code="parameter_unknown"
    )


def _missing(name: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required param: {name}.", param=name, code="parameter_missing")


# --------------------------------------------------------------------------- public API


def _endpoint(method: str, path_template: str) -> dict[str, Any]:
    return load_subset()["endpoints"][f"{method.upper()} {path_template}"]


def endpoint_info(method: str, path_template: str) -> dict[str, Any]:
    """What the subset knows about an operation: ``returns`` (resource name),
    ``returns_list``, ``required``, ``path_params``, ``params`` (reduced schemas).
    Raises KeyError for a template the emulator does not serve. Do not mutate."""
    return _endpoint(method, path_template)


def validate_params(method: str, path_template: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate decoded params for one operation and return them typed.

    Raises KeyError for an unknown (method, template), InvalidRequest like Stripe
    for anything Stripe would refuse. ``expand`` is accepted everywhere.
    """
    endpoint = _endpoint(method, path_template)
    props = dict(endpoint["params"])
    props.setdefault("expand", _EXPAND_SCHEMA)
    schema = {"type": "object", "properties": props, "required": endpoint["required"]}
    out = _coerce_object(schema, params, "")
    limit = out.get("limit")
    if endpoint["returns_list"] and isinstance(limit, int) and not 1 <= limit <= 100:
        raise InvalidRequest("Invalid limit: must be between 1 and 100", param="limit")
    return out


def endpoint_templates() -> list[tuple[str, str]]:
    """Every (METHOD, Stripe path template) the subset covers."""
    return [tuple(key.split(" ", 1)) for key in load_subset()["endpoints"]]


def _match(template: str, path: str) -> tuple[tuple[int, ...], dict[str, str]] | None:
    """Match one template; the rank prefers literal segments, earliest first."""
    t_parts = template.strip("/").split("/")
    p_parts = path.rstrip("/").strip("/").split("/") if path.strip("/") else []
    if len(t_parts) != len(p_parts):
        return None
    captured: dict[str, str] = {}
    rank: list[int] = []
    for t, p in zip(t_parts, p_parts, strict=True):
        if t.startswith("{") and t.endswith("}"):
            if not p:
                return None
            captured[t[1:-1]] = p
            rank.append(0)
        elif t == p:
            rank.append(1)
        else:
            return None
    return tuple(rank), captured


def match_template(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """Map a concrete path to its template and path parameters, for this method.

    '/v1/accounts/acct_1' -> ('/v1/accounts/{account}', {'account': 'acct_1'}).
    Literal segments beat placeholders. ``None`` if no template of that method fits.
    """
    best: tuple[tuple[int, ...], str, dict[str, str]] | None = None
    for m, template in endpoint_templates():
        if m != method.upper():
            continue
        found = _match(template, path.split("?", 1)[0])
        if found is not None and (best is None or found[0] > best[0]):
            best = (found[0], template, found[1])
    return None if best is None else (best[1], best[2])


def unrecognized_url(method: str, path: str) -> InvalidRequest:
    """Stripe's 404 for a URL it does not route (e.g. no template for this method)."""
    return InvalidRequest(
        f"Unrecognized request URL ({method.upper()}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
        http_status=404,
    )


def resource_skeleton(resource: str) -> dict[str, Any]:
    """A fresh deep copy of Stripe's fixture object for ``resource`` (e.g. 'transfer')."""
    return copy.deepcopy(load_subset()["resources"][resource]["skeleton"])


def resource_fields(resource: str) -> list[str]:
    """Top-level field names of ``resource`` per Stripe's component schema."""
    return list(load_subset()["resources"][resource]["fields"])
