"""The emulator must read exactly what stripe-python 16 writes on the wire."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

import pytest
from stripe._encode import _api_encode

from emulator.wire import IndexedList, WireError, decode_params


def sdk_encode(params: dict, *, literal_brackets: bool) -> str:
    """Encode a dict as stripe._api_requestor does (it turns %5B/%5D back into literal brackets)."""
    encoded = urlencode(list(_api_encode(params)))
    return encoded.replace("%5B", "[").replace("%5D", "]") if literal_brackets else encoded


def test_nested_objects_and_indexed_arrays() -> None:
    raw = "metadata[foo]=bar&capabilities[transfers][requested]=true&expand[0]=x&expand[1]=y"
    assert decode_params(raw) == {
        "metadata": {"foo": "bar"},
        "capabilities": {"transfers": {"requested": "true"}},
        "expand": ["x", "y"],
    }


def test_percent_encoded_brackets_decode_like_literal_ones() -> None:
    assert decode_params("expand%5B0%5D=a&created%5Bgte%5D=5") == {
        "expand": ["a"],
        "created": {"gte": "5"},
    }


def test_empty_values_plus_and_unicode() -> None:
    assert decode_params("description=&bare&name=a+b%20c&city=M%C3%BCnchen") == {
        "description": "",
        "bare": "",
        "name": "a b c",
        "city": "München",
    }


def test_indexed_arrays_are_ordered_by_index_and_keep_their_keys() -> None:
    decoded = decode_params("a[10]=z&a[2]=y&a[0]=x")
    assert decoded == {"a": ["x", "y", "z"]}
    assert isinstance(decoded["a"], IndexedList)
    assert decoded["a"].index_keys == ["0", "2", "10"]


def test_empty_bracket_arrays_and_arrays_of_objects() -> None:
    assert decode_params("a[]=x&a[]=y") == {"a": ["x", "y"]}
    assert decode_params("i[0][p]=1&i[0][q]=2&i[1][p]=3") == {"i": [{"p": "1", "q": "2"}, {"p": "3"}]}


def test_repeated_plain_key_last_wins() -> None:
    assert decode_params("a=1&a=2&m[k]=1&m[k]=2") == {"a": "2", "m": {"k": "2"}}


def test_bytes_and_empty_input() -> None:
    assert decode_params(b"a=1") == {"a": "1"}
    assert decode_params("") == {}


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ("a=1&a[b]=2", "a"),
        ("a[b]=2&a=1", "a"),
        ("a[0]=1&a[]=2", "a"),
        ("a[b][c]=1&a[b]=2", "a[b]"),
        ("a[b=1", "a[b"),
    ],
)
def test_malformed_nesting_raises_wire_error(raw: str, param: str) -> None:
    with pytest.raises(WireError) as info:
        decode_params(raw)
    assert info.value.param == param
    assert info.value.message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"type": "express", "capabilities": {"transfers": {"requested": True}}, "metadata": {"k": "v"}},
            {"type": "express", "capabilities": {"transfers": {"requested": "true"}}, "metadata": {"k": "v"}},
        ),
        ({"expand": ["data.destination", "data.balance_transaction"]},
         {"expand": ["data.destination", "data.balance_transaction"]}),
        ({"amount": 1000, "currency": "usd", "description": "Café & co = 100%"},
         {"amount": "1000", "currency": "usd", "description": "Café & co = 100%"}),
        ({"metadata": {"a": ""}, "limit": 3, "rate": Decimal("1.25")},
         {"metadata": {"a": ""}, "limit": "3", "rate": "1.25"}),
        ({"items": [{"price": "p", "quantity": 2}, {"price": "q"}]},
         {"items": [{"price": "p", "quantity": "2"}, {"price": "q"}]}),
        ({"created": {"gte": 1700000000, "lt": 1800000000}},
         {"created": {"gte": "1700000000", "lt": "1800000000"}}),
    ],
)
@pytest.mark.parametrize("literal_brackets", [True, False])
def test_round_trip_through_the_sdk_encoder(params: dict, expected: dict, literal_brackets: bool) -> None:
    assert decode_params(sdk_encode(params, literal_brackets=literal_brackets)) == expected
