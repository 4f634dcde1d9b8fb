"""Validation must refuse what Stripe refuses, with Stripe's message, code and param."""

from __future__ import annotations

from decimal import Decimal

import pytest

from emulator.validation import (
    InvalidRequest,
    endpoint_info,
    match_template,
    resource_fields,
    resource_skeleton,
    unrecognized_url,
    validate_params,
)
from emulator.wire import decode_params

TRANSFER = {"amount": "1000", "currency": "usd", "destination": "acct_1"}


def check(method: str, template: str, raw: str) -> dict:
    return validate_params(method, template, decode_params(raw))


def refused(method: str, template: str, params: dict | str) -> InvalidRequest:
    if isinstance(params, str):
        params = decode_params(params)
    with pytest.raises(InvalidRequest) as info:
        validate_params(method, template, params)
    assert info.value.http_status == 400
    return info.value


# --------------------------------------------------------------------------- coercion


def test_transfer_create_is_typed() -> None:
    out = check("POST", "/v1/transfers", "amount=1000&currency=usd&destination=acct_1&metadata[order]=42")
    assert out == {"amount": 1000, "currency": "usd", "destination": "acct_1", "metadata": {"order": "42"}}
    assert isinstance(out["amount"], int)


def test_nested_booleans_and_enums_are_coerced() -> None:
    out = check("POST", "/v1/accounts", "type=express&capabilities[transfers][requested]=true"
                "&capabilities[card_payments][requested]=false")
    assert out == {
        "type": "express",
        "capabilities": {"transfers": {"requested": True}, "card_payments": {"requested": False}},
    }


def test_list_query_params() -> None:
    out = check("GET", "/v1/transfers", "limit=3&created%5Bgte%5D=1700000000&destination=acct_1"
                "&expand%5B0%5D=data.destination")
    assert out == {"limit": 3, "created": {"gte": 1700000000}, "destination": "acct_1",
                   "expand": ["data.destination"]}
    assert check("GET", "/v1/charges", "created=1700000000") == {"created": 1700000000}
    assert check("GET", "/v1/events", "types[0]=transfer.created&types[1]=account.updated"
                 "&delivery_success=true") == {
        "types": ["transfer.created", "account.updated"], "delivery_success": True}


def test_expand_is_accepted_on_every_endpoint() -> None:
    assert check("GET", "/v1/balance", "expand[0]=instant_available") == {"expand": ["instant_available"]}
    assert check("DELETE", "/v1/accounts/{account}", "expand[0]=x") == {"expand": ["x"]}
    err = refused("GET", "/v1/balance", "expand=x")
    assert (err.message, err.param) == ("Invalid array", "expand")


def test_empty_string_unsets_metadata_and_keys() -> None:
    assert check("POST", "/v1/transfers/{transfer}", "metadata=") == {"metadata": None}
    assert check("POST", "/v1/transfers/{transfer}", "metadata[a]=&metadata[b]=1") == {
        "metadata": {"a": None, "b": "1"}}


def test_digit_keyed_metadata_stays_an_object() -> None:
    assert check("POST", "/v1/transfers/{transfer}", "metadata[0]=x&metadata[7]=y") == {
        "metadata": {"0": "x", "7": "y"}}


def test_anyof_with_empty_enum_unsets() -> None:
    # business_profile[support_url] is anyOf(string, enum ['']) on account update.
    out = check("POST", "/v1/accounts/{account}", "business_profile[support_url]=")
    assert out == {"business_profile": {"support_url": None}}


def test_numbers_become_decimal() -> None:
    # The only 'number' parameters here are nested deep in account params; use the generic path.
    from emulator.validation import _coerce

    assert _coerce({"type": "number"}, "1.25", "x") == Decimal("1.25")
    with pytest.raises(InvalidRequest, match="Invalid decimal: abc"):
        _coerce({"type": "number"}, "abc", "x")


# --------------------------------------------------------------------------- Stripe's errors


def test_unknown_param() -> None:
    err = refused("POST", "/v1/transfers", {**TRANSFER, "foo": "1"})
    assert (err.message, err.code, err.param) == ("Received unknown parameter: foo", "parameter_unknown", "foo")


def test_unknown_nested_param_uses_bracketed_name() -> None:
    err = refused("POST", "/v1/accounts", "type=express&capabilities[transfers][requested]=true"
                  "&capabilities[transfers][foo]=1")
    assert err.message == "Received unknown parameter: capabilities[transfers][foo]"
    assert (err.code, err.param) == ("parameter_unknown", "capabilities[transfers][foo]")
    err = refused("GET", "/v1/transfers", "created[foo]=1")
    assert err.param == "created[foo]"


def test_several_unknown_params() -> None:
    err = refused("POST", "/v1/transfers", {**TRANSFER, "country": "US", "type": "custom"})
    assert err.message == "Received unknown parameters: country, type"


@pytest.mark.parametrize("missing", ["amount", "currency", "destination"])
def test_required_transfer_params(missing: str) -> None:
    params = {k: v for k, v in TRANSFER.items() if k != missing}
    err = refused("POST", "/v1/transfers", params)
    assert (err.message, err.code, err.param) == (
        f"Missing required param: {missing}.", "parameter_missing", missing)


def test_required_params_elsewhere() -> None:
    assert refused("POST", "/v1/account_links", "account=acct_1").message == "Missing required param: type."
    assert refused("POST", "/v1/accounts/{account}/reject", {}).param == "reason"
    assert refused("POST", "/v1/payouts", "currency=usd").message == "Missing required param: amount."


@pytest.mark.parametrize("value", ["abc", "10.5", "1e3", "", "99999999999999999999"])
def test_bad_integer(value: str) -> None:
    err = refused("POST", "/v1/transfers", {**TRANSFER, "amount": value})
    assert (err.message, err.code, err.param) == (
        f"Invalid integer: {value}", "parameter_invalid_integer", "amount")


def test_negative_integer() -> None:
    err = refused("POST", "/v1/transfers", {**TRANSFER, "amount": "-5"})
    assert (err.message, err.code, err.param) == (
        "Invalid non-negative integer", "parameter_invalid_integer", "amount")


def test_bad_list_query_integer() -> None:
    err = refused("GET", "/v1/transfers", "limit=ten")
    assert (err.message, err.param) == ("Invalid integer: ten", "limit")
    for bad in ("0", "101"):
        err = refused("GET", "/v1/transfers", f"limit={bad}")
        assert (err.message, err.param) == ("Invalid limit: must be between 1 and 100", "limit")
    assert check("GET", "/v1/transfers", "limit=100") == {"limit": 100}
    err = refused("GET", "/v1/transfers", "created=abc")
    assert (err.message, err.param) == ("Invalid integer: abc", "created")
    assert refused("GET", "/v1/transfers", "created[gte]=x").param == "created[gte]"


@pytest.mark.parametrize("value", ["yes", "True", "1"])
def test_bad_boolean(value: str) -> None:
    err = refused("POST", "/v1/accounts/{account}/capabilities/{capability}", {"requested": value})
    assert (err.message, err.code, err.param) == (f"Invalid boolean: {value}", None, "requested")


def test_bad_enum() -> None:
    err = refused("POST", "/v1/accounts", {"type": "premium"})
    assert err.message == "Invalid type: must be one of custom, express, or standard"
    assert (err.code, err.param) == (None, "type")
    err = refused("POST", "/v1/account_links", {"account": "acct_1", "type": "account_edit"})
    assert err.message == "Invalid type: must be one of account_onboarding or account_update"
    err = refused("POST", "/v1/accounts", {"capabilities": {"transfers": {"requested": "true"}},
                                           "business_type": "robot"})
    assert err.param == "business_type"
    err = refused("POST", "/v1/accounts", "settings[payouts][schedule][interval]=hourly")
    assert err.message.startswith("Invalid settings[payouts][schedule][interval]: must be one of ")
    assert err.param == "settings[payouts][schedule][interval]"


def test_string_too_long_is_truncated_like_stripe() -> None:
    err = refused("POST", "/v1/transfers", {**TRANSFER, "description": "n" * 5001})
    assert err.message == "Invalid string: nnnnnnnnnn...nnnnnnnnnn; must be at most 5000 characters"
    assert err.param == "description"


def test_object_given_as_scalar_and_scalar_as_object() -> None:
    err = refused("POST", "/v1/accounts", {"capabilities": "transfers"})
    assert (err.message, err.param) == ("Invalid object", "capabilities")
    err = refused("POST", "/v1/transfers", {**TRANSFER, "currency": {"a": "b"}})
    assert (err.message, err.param) == ('Invalid string: {"a"=>"b"}', "currency")


def test_empty_string_for_a_field_that_cannot_be_unset() -> None:
    err = refused("POST", "/v1/transfers", {**TRANSFER, "currency": ""})
    assert err.code == "parameter_invalid_empty"
    assert err.message.startswith("You passed an empty string for 'currency'.")


def test_metadata_limits() -> None:
    too_many = {f"k{i}": "v" for i in range(51)}
    err = refused("POST", "/v1/transfers", {**TRANSFER, "metadata": too_many})
    assert err.message.startswith("Metadata can have up to 50 keys, but you've set 51.")
    assert err.param == "metadata"
    ok = {f"k{i}": "v" * 500 for i in range(50)} | {"x" * 40: "v"}
    ok.pop("k0")
    assert validate_params("POST", "/v1/transfers", {**TRANSFER, "metadata": ok})["metadata"] == ok
    err = refused("POST", "/v1/transfers", {**TRANSFER, "metadata": {"k" * 41: "v"}})
    assert err.message == f"Invalid key: {'k' * 41} must be a string under 40 characters"
    err = refused("POST", "/v1/transfers", {**TRANSFER, "metadata": {"k": "v" * 501}})
    assert err.message == f"Invalid val: {'v' * 501} must be a string under 500 characters"
    err = refused("POST", "/v1/transfers", {**TRANSFER, "metadata": {"k": {"a": "b"}}})
    assert err.message.startswith("Invalid val: ")


def test_to_dict_matches_stripes_error_body() -> None:
    err = refused("POST", "/v1/transfers", {**TRANSFER, "amount": "abc"})
    assert err.to_dict() == {"error": {
        "type": "invalid_request_error",
        "code": "parameter_invalid_integer",
        "doc_url": "https://stripe.com/docs/error-codes/parameter-invalid-integer",
        "message": "Invalid integer: abc",
        "param": "amount",
    }}
    assert "code" not in InvalidRequest("Invalid array", param="expand").to_dict()["error"]


def test_unknown_template_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        validate_params("GET", "/v1/customers", {})
    with pytest.raises(KeyError):
        validate_params("DELETE", "/v1/transfers", {})


# --------------------------------------------------------------------------- routing helpers


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/accounts/acct_1", ("/v1/accounts/{account}", {"account": "acct_1"})),
        ("POST", "/v1/accounts/x/reject", ("/v1/accounts/{account}/reject", {"account": "x"})),
        ("GET", "/v1/account", ("/v1/account", {})),
        ("GET", "/v1/accounts", ("/v1/accounts", {})),
        ("POST", "/v1/accounts/acct_1/capabilities/transfers",
         ("/v1/accounts/{account}/capabilities/{capability}", {"account": "acct_1", "capability": "transfers"})),
        ("GET", "/v1/transfers/tr_1/reversals", ("/v1/transfers/{id}/reversals", {"id": "tr_1"})),
        ("GET", "/v1/transfers/tr_1/reversals/trr_1",
         ("/v1/transfers/{transfer}/reversals/{id}", {"transfer": "tr_1", "id": "trr_1"})),
        ("get", "/v1/events/evt_1", ("/v1/events/{id}", {"id": "evt_1"})),
        ("DELETE", "/v1/transfers/tr_1", None),
        ("GET", "/v1/customers", None),
        ("GET", "/v1/accounts//capabilities", None),
    ],
)
def test_match_template(method: str, path: str, expected: tuple | None) -> None:
    assert match_template(method, path) == expected


def test_unrecognized_url() -> None:
    err = unrecognized_url("GET", "/v1/customers")
    assert err.http_status == 404
    assert err.message.startswith("Unrecognized request URL (GET: /v1/customers).")


def test_resources_and_endpoint_info() -> None:
    skeleton = resource_skeleton("transfer")
    skeleton["amount"] = -1
    assert resource_skeleton("transfer")["amount"] != -1  # a fresh copy each time
    assert {"id", "object", "amount", "destination", "reversals"} <= set(resource_fields("transfer"))
    assert endpoint_info("GET", "/v1/transfers")["returns"] == "transfer"
    assert endpoint_info("GET", "/v1/transfers")["returns_list"] is True
    assert endpoint_info("DELETE", "/v1/accounts/{account}")["returns"] == "deleted_account"
