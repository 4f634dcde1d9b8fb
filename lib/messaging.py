"""How a message leaves: email over SMTP, chat through a Slack-compatible incoming webhook.

Sending is the standard library's ``smtplib`` and ``email`` (no third-party mailer adds
anything for one message at a time) and ``httpx`` for the chat webhook. Each transport raises
:class:`DeliveryError` for what went wrong, marked *permanent* when trying again cannot help
(an SMTP 5xx reply, a webhook's 4xx other than 429): the outbox then stops retrying.

The chat JSON is the shape Slack's incoming webhooks, Mattermost, Rocket.Chat and others accept:
``text`` (the one-line notification) and one legacy ``attachments`` entry with ``fallback``,
``color``, ``title``, ``text`` and ``fields`` [{``title``, ``value``, ``short``}]. Slack's
``blocks`` are not used: Mattermost drops them. Every value a user or Stripe supplied goes
through :func:`chat_escape` (Slack's ``&``, ``<``, ``>`` rule), so a freelancer's name cannot
become a link or a mention.

Safety: with the Stripe emulator (demo and test data) email and chat go only to a server on
this machine (:func:`check_local_only`), so a demo can never write to a real address.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any
from urllib.parse import urlsplit

import httpx

from lib.errors import ConnectOpsError
from lib.settings import Settings

logger = logging.getLogger(__name__)

CHAT_COLOURS = {"error": "#d92d20", "warning": "#f79009", "info": "#2e90fa"}
#: Longest error text kept from a server's reply (it can echo the whole message).
MAX_REPLY = 300


class DeliveryError(ConnectOpsError):
    """The message was not delivered; ``permanent`` when retrying cannot help."""

    code = "delivery_failed"

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class NotConfigured(DeliveryError):
    """The channel has no settings yet: the message waits (retried) until it has."""

    code = "channel_not_configured"


@dataclass(frozen=True, slots=True)
class Email:
    """One email to one recipient: a plain-text part and, when given, an HTML alternative."""

    to: str
    subject: str
    text: str
    html: str | None = None
    #: Stable for every attempt of one outbox message, so a receiver can drop a duplicate.
    message_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def chat_escape(value: object) -> str:
    """Text for a chat message: Slack's (and Mattermost's) three control characters escaped."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_escape(value: object) -> str:
    """Text for an HTML email: every user-supplied value goes through this."""
    return html.escape(str(value), quote=True)


def message_id_for(dedupe_key: str, sender: str | None) -> str:
    """A Message-ID derived from the outbox row's key: the same for every attempt."""
    domain = parseaddr(sender or "")[1].rpartition("@")[2] or "connect-ops.invalid"
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_local_only(settings: Settings, *, host: str, what: str) -> None:
    """With the emulator (demo or test data), refuse any server not on this machine."""
    if settings.uses_local_stripe and not _is_local(host):
        raise DeliveryError(
            f"{what} goes only to a server on this machine while Stripe is the local emulator "
            f"(demo and test data); {host} is not local.", permanent=True)


def build_email(settings: Settings, email: Email) -> EmailMessage:
    """The MIME message: text first, HTML as the alternative a mail client prefers."""
    sender = settings.smtp_sender or ""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    if email.message_id:
        message["Message-ID"] = email.message_id
    # Automated mail: no vacation auto-replies back to the desk.
    message["Auto-Submitted"] = "auto-generated"
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text)
    if email.html is not None:
        message.add_alternative(email.html, subtype="html")
    return message


def _reply_text(exc: smtplib.SMTPResponseException) -> str:
    raw = exc.smtp_error
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:MAX_REPLY]


def send_email(settings: Settings, email: Email) -> None:
    """Hand one email to the configured SMTP server; :class:`DeliveryError` if it is not taken."""
    if not settings.smtp_host or not settings.smtp_sender:
        raise NotConfigured("Email is not configured: set SMTP_HOST and SMTP_SENDER.")
    host, port = settings.smtp_host, settings.smtp_port
    check_local_only(settings, host=host, what="Email")
    message = build_email(settings, email)
    timeout = settings.smtp_timeout_seconds
    context = ssl.create_default_context()
    try:
        if settings.smtp_security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if settings.smtp_security == "starttls":
                client.starttls(context=context)
            if settings.smtp_username and settings.smtp_password is not None:
                client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            refused = client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise DeliveryError(f"The SMTP server refused the recipient ({', '.join(map(str, codes))}).",
                            permanent=all(code >= 500 for code in codes)) from None
    except smtplib.SMTPAuthenticationError as exc:
        # A wrong password is fixed by a person, then the message retried from the Outbox.
        raise DeliveryError(f"The SMTP server refused the credentials ({exc.smtp_code}).",
                            permanent=True) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"The SMTP server answered {exc.smtp_code}: {_reply_text(exc)}",
                            permanent=exc.smtp_code >= 500) from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError("The SMTP server does not offer STARTTLS: set SMTP_SECURITY to "
                            "ssl, or to none for a relay on this machine.", permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        # Connection refused or reset, a timeout, a TLS failure: try again later.
        raise DeliveryError(f"Could not talk to the SMTP server {host}:{port} "
                            f"({type(exc).__name__}).") from None
    if refused:
        raise DeliveryError("The SMTP server refused the recipient.", permanent=True)


def post_chat(settings: Settings, payload: dict[str, Any]) -> None:
    """POST the JSON to the chat webhook; :class:`DeliveryError` unless it answers 2xx."""
    if settings.alert_chat_webhook_url is None:
        raise NotConfigured("Chat is not configured: set ALERT_CHAT_WEBHOOK_URL.")
    url = settings.alert_chat_webhook_url.get_secret_value()
    parts = urlsplit(url)
    host = parts.hostname or ""
    check_local_only(settings, host=host, what="Chat")
    try:
        response = httpx.post(url, json=payload, timeout=settings.smtp_timeout_seconds,
                              follow_redirects=False)
    except httpx.HTTPError as exc:
        # The URL carries the webhook's token: never in the message.
        raise DeliveryError(f"Could not reach the chat webhook on {host} "
                            f"({type(exc).__name__}).") from None
    if 200 <= response.status_code < 300:
        return
    permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
    raise DeliveryError(f"The chat webhook on {host} answered {response.status_code}.",
                        permanent=permanent)


def chat_payload(*, title: str, text: str, severity: str = "info",
                 fields: list[tuple[str, str]] | None = None, footer: str = "Connect Ops"
                 ) -> dict[str, Any]:
    """The Slack-compatible JSON (see the module); every argument is escaped here."""
    attachment: dict[str, Any] = {
        "fallback": chat_escape(title),
        "color": CHAT_COLOURS.get(severity, CHAT_COLOURS["info"]),
        "title": chat_escape(title),
        "text": chat_escape(text),
        "footer": chat_escape(footer),
    }
    if fields:
        attachment["fields"] = [{"title": chat_escape(name), "value": chat_escape(value),
                                 "short": len(str(value)) <= 40} for name, value in fields]
    return {"text": chat_escape(title), "attachments": [attachment]}
