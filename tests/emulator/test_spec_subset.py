"""The committed Stripe subset covers every endpoint the emulator serves.

Only the committed file is read here: a fresh checkout has no ../shared.
"""

from __future__ import annotations

import json

import pytest

from emulator.spec import SUBSET_PATH, load_subset
from emulator.validation import endpoint_templates, resource_fields, resource_skeleton

SERVED = {
    ("GET", "/v1/accounts"), ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts/{account}"), ("POST", "/v1/accounts/{account}"),
    ("DELETE", "/v1/accounts/{account}"), ("POST", "/v1/accounts/{account}/reject"),
    ("GET", "/v1/account"), ("GET", "/v1/accounts/{account}/capabilities"),
    ("GET", "/v1/accounts/{account}/capabilities/{capability}"),
    ("POST", "/v1/accounts/{account}/capabilities/{capability}"),
    ("POST", "/v1/accounts/{account}/login_links"), ("POST", "/v1/account_links"),
    ("GET", "/v1/transfers"), ("POST", "/v1/transfers"),
    ("GET", "/v1/transfers/{transfer}"), ("POST", "/v1/transfers/{transfer}"),
    ("GET", "/v1/transfers/{id}/reversals"), ("POST", "/v1/transfers/{id}/reversals"),
    ("GET", "/v1/transfers/{transfer}/reversals/{id}"), ("POST", "/v1/transfers/{transfer}/reversals/{id}"),
    ("GET", "/v1/balance"), ("GET", "/v1/balance_transactions"),
    ("GET", "/v1/charges"), ("POST", "/v1/charges"),
    ("GET", "/v1/charges/{charge}"), ("GET", "/v1/payouts"), ("POST", "/v1/payouts"),
    ("GET", "/v1/payouts/{payout}"), ("GET", "/v1/events"), ("GET", "/v1/events/{id}"),
}

RESOURCES = ["account", "account_link", "balance", "balance_transaction", "capability", "charge", "deleted_account",
             "event", "login_link", "payout", "transfer", "transfer_reversal"]

# Stripe's account_link, balance and login_link objects genuinely have no id.
WITHOUT_ID = {"account_link", "balance", "login_link"}


def test_subset_file_loads_and_is_cached() -> None:
    subset = load_subset()
    assert subset is load_subset()
    assert subset["api_version"] == "2024-04-10"
    assert json.loads(SUBSET_PATH.read_text(encoding="utf-8")) == subset


def test_every_served_template_is_present() -> None:
    assert set(endpoint_templates()) == SERVED


def test_path_params_match_the_template() -> None:
    for key, endpoint in load_subset()["endpoints"].items():
        template = key.split(" ", 1)[1]
        for name in endpoint["path_params"]:
            assert "{" + name + "}" in template


def test_list_endpoints_take_pagination_params() -> None:
    for key, endpoint in load_subset()["endpoints"].items():
        if endpoint["returns_list"] and not key.endswith("/capabilities"):
            assert {"limit", "starting_after", "ending_before", "expand"} <= set(endpoint["params"]), key


def test_created_filter_is_integer_or_range() -> None:
    created = load_subset()["endpoints"]["GET /v1/transfers"]["params"]["created"]
    kinds = {alt["type"] for alt in created["anyOf"]}
    assert kinds == {"integer", "object"}
    ranged = next(a for a in created["anyOf"] if a["type"] == "object")
    assert set(ranged["properties"]) == {"gt", "gte", "lt", "lte"}


@pytest.mark.parametrize("resource", RESOURCES)
def test_resource_skeletons(resource: str) -> None:
    skeleton = resource_skeleton(resource)
    fields = resource_fields(resource)
    assert "object" in skeleton and "object" in fields
    if resource in WITHOUT_ID:
        assert "id" not in fields
    else:
        assert skeleton["id"] and "id" in fields
    assert set(skeleton) <= set(fields)


def test_every_endpoint_returns_a_known_resource() -> None:
    for endpoint in load_subset()["endpoints"].values():
        assert endpoint["returns"] in RESOURCES
