import pytest

from lib.errors import ConfigurationError
from lib.settings import PROJECT_ROOT, Settings, load_settings, normalise_database_url
from tests.factories import TEST_SECRET_KEY, make_settings


def test_postgres_urls_are_normalised_to_psycopg() -> None:
    assert normalise_database_url("postgres://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert normalise_database_url("sqlite:///data/x.db") == f"sqlite:///{PROJECT_ROOT}/data/x.db"


def test_settings_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1/test")
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:12111/")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # an __init__ argument, no field
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1/test"
    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert settings.stripe_connect_base is None


def test_missing_required_value_names_variable_and_where_to_get_it() -> None:
    settings = make_settings(stripe_connect_client_id=None)
    with pytest.raises(ConfigurationError) as excinfo:
        settings.require("STRIPE_SECRET_KEY", "STRIPE_CONNECT_CLIENT_ID")
    message = str(excinfo.value)
    assert message.startswith("STRIPE_CONNECT_CLIENT_ID is not set")
    assert "Settings → Connect → OAuth" in message
    assert "\n" not in message


def test_blank_value_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "   ")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # an __init__ argument, no field
    with pytest.raises(ConfigurationError, match="JWT_SECRET is not set"):
        settings.require("JWT_SECRET")


def test_secrets_never_appear_in_repr_or_str() -> None:
    settings = make_settings()
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert TEST_SECRET_KEY not in text
        assert "whsec_" not in text
        assert "jwt-secret" not in text


def test_live_key_pointed_at_local_server_is_refused() -> None:
    settings = make_settings(
        stripe_secret_key="sk_live_" + "x" * 20,
        stripe_api_base="http://127.0.0.1:12111",
        backend_url="https://ops.example.com",
    )
    with pytest.raises(ConfigurationError, match="live key") as excinfo:
        settings.require("STRIPE_SECRET_KEY")
    assert "sk_live_x" not in str(excinfo.value)


def test_mixed_mode_keys_are_refused() -> None:
    settings = make_settings(stripe_publishable_key="pk_live_abc")
    with pytest.raises(ConfigurationError, match="different modes"):
        settings.require("STRIPE_SECRET_KEY")


def test_live_key_with_emulator_client_id_is_refused() -> None:
    settings = make_settings(
        stripe_secret_key="sk_live_" + "y" * 20,
        stripe_connect_client_id="ca_emulator_connectops",
        backend_url="https://ops.example.com",
    )
    with pytest.raises(ConfigurationError, match="emulator's client id"):
        settings.require("STRIPE_SECRET_KEY")


def test_live_mode_needs_https_backend() -> None:
    settings = make_settings(stripe_secret_key="sk_live_" + "z" * 20, stripe_connect_client_id="ca_live")
    with pytest.raises(ConfigurationError, match="https"):
        settings.require("STRIPE_SECRET_KEY")


def test_not_a_stripe_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="does not look like"):
        make_settings(stripe_secret_key="pk_test_oops").require("STRIPE_SECRET_KEY")


def test_client_id_must_look_like_one() -> None:
    with pytest.raises(ConfigurationError, match="must start with ca_"):
        make_settings(stripe_connect_client_id="abc").require("STRIPE_CONNECT_CLIENT_ID")


def test_malformed_value_gives_one_line_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_MAX_NETWORK_RETRIES", "lots-sk_test_secretish")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(_env_file=None)
    message = str(excinfo.value)
    assert message.startswith("STRIPE_MAX_NETWORK_RETRIES is invalid")
    assert "secretish" not in message


def test_mode_label() -> None:
    assert make_settings(stripe_api_base="http://127.0.0.1:12111").stripe_mode_label == "emulator"
    assert make_settings().stripe_mode_label == "test"
    live = make_settings(stripe_secret_key="sk_live_" + "q" * 20)
    assert live.stripe_mode_label == "live"
    assert make_settings().oauth_redirect_uri == (
        "http://127.0.0.1:8000/api/v1/freelancer/stripe-connect-callback"
    )
