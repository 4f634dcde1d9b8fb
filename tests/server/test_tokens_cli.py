import pytest

from lib.roles import Role
from lib.tokens import verify_token
from server.tokens import main
from tests.factories import TEST_JWT_SECRET


def test_prints_a_verifiable_token(monkeypatch, capsys) -> None:
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    assert main(["admin", "alice", "--minutes", "5"]) == 0
    claims = verify_token(capsys.readouterr().out.strip(), secret=TEST_JWT_SECRET)
    assert claims.role is Role.ADMIN and claims.subject == "alice"


@pytest.mark.parametrize("argv", [["freelancer", "bob"], ["admin", "a", "--minutes", "0"]])
def test_bad_arguments_exit_2(monkeypatch, capsys, argv) -> None:
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    assert main(argv) == 2
    assert capsys.readouterr().out == ""


def test_missing_secret_is_one_line(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["freelancer", "1"]) == 2
    assert capsys.readouterr().err.startswith("connect-ops tokens: JWT_SECRET is not set")
