from datetime import UTC, datetime, timedelta

import jwt
import pytest

from lib.errors import PermissionDeniedError
from lib.roles import Role
from lib.tokens import (
    TokenError,
    issue_token,
    sign_value,
    unsign_value,
    verify_token,
)

SECRET = "s" * 40


def test_round_trip() -> None:
    token = issue_token(secret=SECRET, subject="7", role=Role.FREELANCER)
    claims = verify_token(token, secret=SECRET)
    assert claims.freelancer_id == 7
    assert claims.operator().username == "freelancer:7"


@pytest.mark.parametrize(
    "make",
    [
        lambda: issue_token(secret=SECRET, subject="7", role=Role.FREELANCER,
                            now=datetime.now(UTC) - timedelta(hours=2)),
        lambda: issue_token(secret="other" * 10, subject="7", role=Role.FREELANCER),
        lambda: jwt.encode({"sub": "7", "role": "freelancer", "iss": "connect-ops",
                            "exp": 9999999999, "iat": 1}, "", algorithm="none"),  # '': no key
        lambda: jwt.encode({"sub": "7", "role": "freelancer", "iss": "connect-ops", "iat": 1},
                           SECRET, algorithm="HS256"),
        lambda: jwt.encode({"role": "freelancer", "iss": "connect-ops", "exp": 9999999999,
                            "iat": 1}, SECRET, algorithm="HS256"),
        lambda: jwt.encode({"sub": "7", "role": "root", "iss": "connect-ops",
                            "exp": 9999999999, "iat": 1}, SECRET, algorithm="HS256"),
        lambda: jwt.encode({"sub": "7", "role": ["admin"], "iss": "connect-ops",
                            "exp": 9999999999, "iat": 1}, SECRET, algorithm="HS256"),
        lambda: issue_token(secret=SECRET, subject="7", role=Role.FREELANCER,
                            now=datetime.now(UTC) + timedelta(hours=1)),
        lambda: "not-a-token",
        lambda: "",
    ],
    ids=["expired", "wrong-key", "alg-none", "no-exp", "no-sub", "unknown-role", "list-role",
         "future-nbf", "garbage", "empty"],
)
def test_bad_tokens_are_refused(make) -> None:
    with pytest.raises(TokenError):
        verify_token(make(), secret=SECRET)


def test_admin_token_is_not_a_freelancer() -> None:
    claims = verify_token(issue_token(secret=SECRET, subject="alice", role=Role.ADMIN),
                          secret=SECRET)
    with pytest.raises(PermissionDeniedError):
        _ = claims.freelancer_id


def test_signed_values() -> None:
    signed = sign_value("42", secret=SECRET, purpose="p")
    assert unsign_value(signed, secret=SECRET, purpose="p") == "42"
    assert unsign_value(signed, secret=SECRET, purpose="other") is None
    assert unsign_value("43." + signed.split(".")[1], secret=SECRET, purpose="p") is None
    assert unsign_value("", secret=SECRET, purpose="p") is None
