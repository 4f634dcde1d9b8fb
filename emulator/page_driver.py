"""Drive the emulator's consent and onboarding pages over HTTP, as a browser's forms would.

Used by tests and by the demo seed (which connects a few Standard accounts through the real
OAuth dance). Raises ``PageError`` when a page is not what a browser would see.
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx


class PageError(RuntimeError):
    """The emulator page did not answer as a browser expects."""


def _form(html: str, form_id: str) -> tuple[str, dict[str, str]]:
    match = re.search(rf'<form[^>]*action="([^"]*)"[^>]*id="{form_id}"', html)
    if match is None:
        raise PageError(f"no form {form_id} on the page")
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    return unescape(match.group(1)), {k: unescape(v) for k, v in hidden.items()}


def consent(authorize_url: str, *, decision: str = "connect", account: str = "new",
            incomplete: bool = False) -> dict[str, str]:
    """Open the consent page, submit it, return the redirect's query (code/state or error)."""
    with httpx.Client(follow_redirects=False, timeout=10) as http:
        page = http.get(authorize_url)
        if page.status_code != 200:
            raise PageError(f"consent page answered {page.status_code}: {page.text[:200]}")
        action, fields = _form(page.text, "consent-form")
        fields.update({"account": account, "decision": decision})
        if incomplete:
            fields["incomplete"] = "1"
        answer = http.post(urljoin(authorize_url, action), data=fields)
        if answer.status_code not in (302, 303):
            raise PageError(f"consent answered {answer.status_code}: {answer.text[:200]}")
        location = answer.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def onboard(link_url: str, *, action: str = "complete", business_name: str | None = None) -> str:
    """Open an account link, press a button; return where Stripe sends the browser."""
    with httpx.Client(follow_redirects=False, timeout=10) as http:
        page = http.get(link_url)
        if page.status_code in (302, 303):
            return page.headers["location"]  # expired or reused: refresh_url
        form_action, fields = _form(page.text, "onboarding-form")
        fields["action"] = action
        if business_name is not None:
            fields["business_name"] = business_name
        answer = http.post(urljoin(link_url, form_action), data=fields)
        if answer.status_code not in (302, 303):
            raise PageError(f"onboarding answered {answer.status_code}: {answer.text[:200]}")
        return answer.headers["location"]
