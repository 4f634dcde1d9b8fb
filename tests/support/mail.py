"""Local receivers for the messages the product sends: an SMTP sink and a chat webhook.

The SMTP sink is aiosmtpd's ``Controller`` (its server in a thread on a free 127.0.0.1 port)
with a handler that keeps every accepted message and can refuse the next N with a temporary
(4xx) or permanent (5xx) reply. The chat webhook is a small HTTP server that records each
JSON body it is POSTed and can answer an error status. Nothing here ever reaches another host.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.servers import HOST, free_port


class SmtpSink:
    """aiosmtpd handler: accepted messages in ``messages``; ``refuse(n, reply)`` first."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refusals: list[str] = []
        self.refused = 0
        self.port = 0
        self._lock = threading.Condition()

    def refuse(self, count: int, reply: str = "451 4.3.0 Try again later") -> None:
        with self._lock:
            self.refusals = [reply] * count

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self.refusals:
                self.refused += 1
                return self.refusals.pop(0)
            message = message_from_bytes(envelope.original_content or envelope.content,
                                         policy=policy.default)
            assert isinstance(message, EmailMessage)
            message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
            self.messages.append(message)
            self._lock.notify_all()
        return "250 2.0.0 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        """Wait until at least ``count`` messages arrived; all of them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.messages)} of {count} message(s) arrived")
                self._lock.wait(left)
            return list(self.messages)


@contextmanager
def running_smtp_sink() -> Iterator[SmtpSink]:
    """aiosmtpd on a free loopback port (``sink.port``), stopped afterwards."""
    sink = SmtpSink()
    sink.port = free_port()
    controller = Controller(sink, hostname=HOST, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def text_of(message: EmailMessage) -> str:
    """The plain-text part of an email."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


class ChatWebhook:
    """Records what a Slack-compatible incoming webhook would receive."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.fail_with: list[int] = []
        self.url = ""
        self._lock = threading.Condition()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.posts) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.posts)} of {count} post(s) arrived")
                self._lock.wait(left)
            return list(self.posts)


@contextmanager
def running_chat_webhook() -> Iterator[ChatWebhook]:
    """An HTTP server on a free loopback port; POST /hooks/test-token records the JSON."""
    hook = ChatWebhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with hook._lock:
                status = hook.fail_with.pop(0) if hook.fail_with else 200
                if status == 200 and self.path == "/hooks/test-token":
                    hook.posts.append(json.loads(body))
                    hook.content_types.append(self.headers.get("Content-Type", ""))
                    hook._lock.notify_all()
                elif status == 200:
                    status = 404
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"error")

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet

    port = free_port()
    server = ThreadingHTTPServer((HOST, port), Handler)
    hook.url = f"http://{HOST}:{port}/hooks/test-token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
