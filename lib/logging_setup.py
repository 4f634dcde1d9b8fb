"""Logging for every process: one format, and a filter that masks secrets wherever they appear."""

from __future__ import annotations

import logging
import re

# Stripe keys, webhook secrets, bearer tokens and JWTs never reach a log line in clear.
_SECRET_PATTERNS = [
    re.compile(r"\b(sk|rk)_(live|test)_[A-Za-z0-9_]+"),
    re.compile(r"\bwhsec_[A-Za-z0-9_]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
    # A chat incoming webhook's URL is its credential (Slack /services/…, Mattermost /hooks/…).
    re.compile(r"(/(?:hooks|services)/)[A-Za-z0-9/_\-]+"),
]


def mask_secrets(text: str) -> str:
    """Replace anything that looks like a secret with a fixed mask."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.re.groups == 1 else "") + "**********", text)
    return text


class SecretMaskingFilter(logging.Filter):
    """Masks secrets in the final message of every record passing through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Configure the root logger once per process."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretMaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK and HTTP clients log every request at INFO: our own lines say what matters.
    for noisy in ("stripe", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
