"""HTML rendering for the emulator's hosted pages (autoescaped Jinja2, no external assets)."""

from __future__ import annotations

import os
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from emulator.store import new_id

_ENV = Environment(
    loader=FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
PLATFORM_NAME = "Connect Ops"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def render_page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A rendered page with Stripe-ish headers and a Request-Id."""
    context.setdefault("platform_name", PLATFORM_NAME)
    html = _ENV.get_template(template).render(**context)
    headers = {**SECURITY_HEADERS, "Request-Id": new_id("req", 14)}
    return HTMLResponse(html, status_code=status, headers=headers)


def error_page(code: str, message: str, status: int = 400, title: str = "Something went wrong") -> HTMLResponse:
    """An error page that does not redirect anywhere (authorize errors stay on Stripe)."""
    return render_page("error.html", status, code=code, message=message, title=title)
