import logging

import pytest

from lib.logging_setup import SecretMaskingFilter, mask_secrets


@pytest.mark.parametrize(
    "secret",
    [
        "sk_test_" + "FakeKeyForMaskingTest0123456789",
        "sk_live_" + "abcdef123456",
        "rk_live_abcdef",
        "whsec_abc123XYZ",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    ],
)
def test_secrets_are_masked(secret: str) -> None:
    masked = mask_secrets(f"calling with {secret} now")
    assert secret not in masked
    assert "**********" in masked


def test_bearer_token_masked_but_word_kept() -> None:
    assert mask_secrets("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer **********"


def test_filter_masks_formatted_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.masking")
    logger.addFilter(SecretMaskingFilter())
    with caplog.at_level(logging.INFO, logger="test.masking"):
        logger.info("key=%s", "sk_test_123456789")
    assert "sk_test_123456789" not in caplog.text
    assert "key=**********" in caplog.text
