"""Derive the small Stripe OpenAPI subset the local emulator validates against.

How to run (from the repo root):

    .venv/bin/python scripts/derive_stripe_spec.py [--spec-dir ../shared/stripe-openapi]

It reads ``spec3.json`` and ``fixtures3.json`` from ``--spec-dir`` (default
``../shared/stripe-openapi`` relative to the repo root) and writes
``emulator/spec/stripe_subset.json`` (sorted keys, 1-space indent, so re-running
on the same spec gives a byte-identical file). Tests and runtime code only ever
read that committed subset: a fresh checkout has no ``../shared``.

Why a subset: the full spec is 6 MB and the emulator serves ~30 operations.
Schemas are reduced to what validation needs (type, enum, properties, items,
required, anyOf, maxLength, format, additionalProperties, bypass flag).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("derive_stripe_spec")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC_DIR = REPO_ROOT / ".." / "shared" / "stripe-openapi"
OUTPUT = REPO_ROOT / "emulator" / "spec" / "stripe_subset.json"

# (method, Stripe path template) the emulator serves; templates exactly as in spec3.json.
ENDPOINTS: list[tuple[str, str]] = [
    ("GET", "/v1/accounts"),
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts/{account}"),
    ("POST", "/v1/accounts/{account}"),
    ("DELETE", "/v1/accounts/{account}"),
    ("POST", "/v1/accounts/{account}/reject"),
    ("GET", "/v1/account"),
    ("GET", "/v1/accounts/{account}/capabilities"),
    ("GET", "/v1/accounts/{account}/capabilities/{capability}"),
    ("POST", "/v1/accounts/{account}/capabilities/{capability}"),
    ("POST", "/v1/accounts/{account}/login_links"),
    ("POST", "/v1/account_links"),
    ("GET", "/v1/transfers"),
    ("POST", "/v1/transfers"),
    ("GET", "/v1/transfers/{transfer}"),
    ("POST", "/v1/transfers/{transfer}"),
    ("GET", "/v1/transfers/{id}/reversals"),
    ("POST", "/v1/transfers/{id}/reversals"),
    ("GET", "/v1/transfers/{transfer}/reversals/{id}"),
    ("POST", "/v1/transfers/{transfer}/reversals/{id}"),
    ("GET", "/v1/balance"),
    ("GET", "/v1/balance_transactions"),
    ("GET", "/v1/charges"),
    ("POST", "/v1/charges"),
    ("GET", "/v1/charges/{charge}"),
    ("GET", "/v1/payouts"),
    ("POST", "/v1/payouts"),
    ("GET", "/v1/payouts/{payout}"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/{id}"),
]

RESOURCES = [
    "account",
    "account_link",
    "balance",
    "balance_transaction",
    "capability",
    "charge",
    "deleted_account",
    "event",
    "login_link",
    "payout",
    "transfer",
    "transfer_reversal",
]

# Where Stripe's live API is stricter than the published spec. The spec leaves
# ``amount`` optional on transfer creation, but the API answers
# "Missing required param: amount." without it; the emulator follows the API.
EXTRA_REQUIRED: dict[tuple[str, str], list[str]] = {
    ("POST", "/v1/transfers"): ["amount"],
}

_KEEP = ("type", "enum", "maxLength", "format", "required")


def reduce_schema(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Keep only the keywords validation uses, resolving ``$ref`` and recursing."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return reduce_schema(components[name], components)
    out: dict[str, Any] = {k: schema[k] for k in _KEEP if k in schema}
    if schema.get("x-stripeBypassValidation"):
        out["bypass_validation"] = True
    if "properties" in schema:
        out["properties"] = {
            name: reduce_schema(sub, components) for name, sub in schema["properties"].items()
        }
    if "items" in schema:
        out["items"] = reduce_schema(schema["items"], components)
    if "anyOf" in schema:
        out["anyOf"] = [reduce_schema(alt, components) for alt in schema["anyOf"]]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = reduce_schema(extra, components)
    return out


def reduce_operation(method: str, path: str, op: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Merge query parameters and form-body properties into one parameter table."""
    params: dict[str, Any] = {}
    required: set[str] = set()
    path_params: list[str] = []
    for p in op.get("parameters", []):
        if p["in"] == "path":
            path_params.append(p["name"])
        elif p["in"] == "query":
            params[p["name"]] = reduce_schema(p.get("schema", {}), components)
            if p.get("required"):
                required.add(p["name"])
    form = op.get("requestBody", {}).get("content", {}).get("application/x-www-form-urlencoded", {})
    body = form.get("schema", {})
    for name, sub in body.get("properties", {}).items():
        params[name] = reduce_schema(sub, components)
    required.update(body.get("required", []))
    required.update(EXTRA_REQUIRED.get((method, path), []))
    response = op["responses"]["200"]["content"]["application/json"]["schema"]
    if "$ref" in response:
        returns, is_list = response["$ref"].rsplit("/", 1)[-1], False
    else:
        returns, is_list = response["properties"]["data"]["items"]["$ref"].rsplit("/", 1)[-1], True
    return {
        "operation_id": op.get("operationId"),
        "params": params,
        "path_params": path_params,
        "required": sorted(required),
        "returns": returns,
        "returns_list": is_list,
    }


def reduce_resource(name: str, components: dict[str, Any], fixtures: dict[str, Any]) -> dict[str, Any]:
    """Field list from the schema; the fixture as skeleton, minus fields this API
    version no longer returns (the charge fixture still carries legacy ``source``)."""
    fields = sorted(components[name].get("properties", {}))
    fixture = fixtures["resources"][name]
    dropped = sorted(set(fixture) - set(fields))
    if dropped:
        logger.info("%s: dropping fixture fields absent from the schema: %s", name, ", ".join(dropped))
    return {"fields": fields, "skeleton": {k: v for k, v in fixture.items() if k in fields}}


def derive(spec: dict[str, Any], fixtures: dict[str, Any]) -> dict[str, Any]:
    """Build the subset document from the parsed spec and fixtures."""
    components = spec["components"]["schemas"]
    endpoints: dict[str, Any] = {}
    for method, path in ENDPOINTS:
        op = spec["paths"][path][method.lower()]
        endpoints[f"{method} {path}"] = reduce_operation(method, path, op, components)
    resources = {name: reduce_resource(name, components, fixtures) for name in RESOURCES}
    return {
        "api_version": spec["info"]["version"],
        "endpoints": endpoints,
        "resources": resources,
        "source": "spec3.json + fixtures3.json from Stripe's openapi repository (MIT)",
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: read the spec dir, write the subset, report what was written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec-dir", type=Path, default=DEFAULT_SPEC_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    spec = json.loads((args.spec_dir / "spec3.json").read_text(encoding="utf-8"))
    fixtures = json.loads((args.spec_dir / "fixtures3.json").read_text(encoding="utf-8"))
    subset = derive(spec, fixtures)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(subset, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    args.output.write_text(text, encoding="utf-8")
    logger.info(
        "wrote %s: %d endpoints, %d resources, %d bytes",
        args.output, len(subset["endpoints"]), len(subset["resources"]), len(text),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
