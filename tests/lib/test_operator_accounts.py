import bcrypt
import pytest
import yaml

from lib.errors import ConfigurationError, ValidationError
from lib.operator_accounts import DEMO_AUTH_PATH, add_user, hash_password, load_credentials, main
from lib.roles import Role
from tests.factories import make_settings


def test_add_user_stores_only_a_bcrypt_hash(tmp_path) -> None:
    path = tmp_path / "auth.yaml"
    add_user(path, username="grace", name="Grace H", email="g@example.com", role=Role.FINANCE,
             password="a long enough password")
    stored = yaml.safe_load(path.read_text())["credentials"]["usernames"]["grace"]
    assert "a long enough password" not in path.read_text()
    assert bcrypt.checkpw(b"a long enough password", stored["password"].encode())
    assert stored["roles"] == ["finance"]
    credentials = load_credentials(make_settings(auth_config_path=path))
    assert set(credentials["usernames"]) == {"grace"}


@pytest.mark.parametrize("password", ["short", "x" * 73])
def test_weak_or_overlong_passwords_refused(password) -> None:
    with pytest.raises(ValidationError):
        hash_password(password)


def test_demo_users_refused_with_a_live_key() -> None:
    settings = make_settings(stripe_secret_key="sk_live_" + "k" * 24, auth_config_path=DEMO_AUTH_PATH)
    with pytest.raises(ConfigurationError, match="demo users file"):
        load_credentials(settings)
    assert load_credentials(make_settings(auth_config_path=DEMO_AUTH_PATH))["usernames"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "no credentials"), (":\n  - [", "not valid YAML"),
     ("credentials:\n  usernames:\n    bob:\n      password: plain\n", "bcrypt"),
     ("credentials:\n  usernames:\n    bob:\n      password: $2b$12$x\n      roles: [root]\n",
      "unknown roles")],
)
def test_bad_users_files_are_one_clear_error(tmp_path, content, message) -> None:
    path = tmp_path / "auth.yaml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_credentials(make_settings(auth_config_path=path))
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_credentials(make_settings(auth_config_path=tmp_path / "missing.yaml"))


def test_command_asks_twice_and_writes(tmp_path, monkeypatch) -> None:
    answers = iter(["a long enough password", "a long enough password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    path = tmp_path / "auth.yaml"
    assert main(["add", "ada", "--name", "Ada", "--email", "a@example.com", "--role", "admin",
                 "--file", str(path)]) == 0
    assert "ada" in yaml.safe_load(path.read_text())["credentials"]["usernames"]
    answers = iter(["one password here", "another password"])
    assert main(["add", "eve", "--name", "Eve", "--email", "e@example.com", "--role", "admin",
                 "--file", str(path)]) == 2
    assert "eve" not in yaml.safe_load(path.read_text())["credentials"]["usernames"]


def test_one_person_one_entry_whatever_the_case(tmp_path) -> None:
    """Issue 17, defect 5: the users file cannot hold one name twice in another case."""
    path = tmp_path / "auth.yaml"
    path.write_text("credentials:\n  usernames:\n"
                    "    alice:\n      password: $2b$12$x\n      roles: [admin]\n"
                    "    Alice:\n      password: $2b$12$y\n      roles: [finance]\n")
    with pytest.raises(ConfigurationError, match="same name"):
        load_credentials(make_settings(auth_config_path=path))
    path.unlink()
    add_user(path, username="Grace", name="G", email="g@example.com", role=Role.FINANCE,
             password="a long enough password")
    add_user(path, username="GRACE", name="G", email="g@example.com", role=Role.ADMIN,
             password="a long enough password")
    users = load_credentials(make_settings(auth_config_path=path))["usernames"]
    assert list(users) == ["grace"] and users["grace"]["roles"] == ["admin"]


def test_the_command_line_operator_is_the_dashboards_user(tmp_path) -> None:
    from lib.payouts.__main__ import operator_from_users_file

    path = tmp_path / "auth.yaml"
    add_user(path, username="fiona", name="F", email="f@example.com", role=Role.FINANCE,
             password="a long enough password")
    operator = operator_from_users_file(make_settings(auth_config_path=path), "Fiona")
    assert operator.username == "fiona" and operator.roles == {Role.FINANCE}
