"""The hosted onboarding page behind Account Links, and the Express dashboard behind login links.

Opening a link consumes it (single use, as on Stripe): the page then carries a one-time
session in its form. An expired, reused or already-opened link redirects to the link's
`refresh_url`, so the platform must mint a new one. Either button ends at `return_url`;
returning does not mean onboarding is complete (the platform must read the account).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from emulator import account_state
from emulator.pages import error_page, render_page
from emulator.runtime import Runtime
from emulator.store import random_token
from emulator.wire import WireError, decode_params

logger = logging.getLogger(__name__)


def _rt(request: Request) -> Runtime:
    return request.app.state.runtime


async def open_link(request: Request) -> Response:
    """GET /_emulator/onboarding/{token}: the onboarding page, or a redirect to refresh_url."""
    rt = _rt(request)
    token = request.path_params["token"]
    with rt.store.transaction() as s:
        link = s["account_links"].get(token)
        if link is None:
            return error_page("invalid_link", "This link is invalid.", status=404, title="Link not found")
        if link["used"] or rt.store.now() > link["expires_at"]:
            return RedirectResponse(link["refresh_url"], status_code=302)
        link["used"] = True
        link["session"] = random_token(24)
        rt.store.mark_dirty()
        account = s["accounts"].get(link["account"])
        if account is None:
            return RedirectResponse(link["refresh_url"], status_code=302)
        return render_page(
            "onboarding.html",
            account=account,
            due=list(account["requirements"]["currently_due"]),
            session=link["session"],
            action=f"/_emulator/onboarding/{token}",
        )


async def submit(request: Request) -> Response:
    """POST /_emulator/onboarding/{token}: complete or leave incomplete, then go to return_url."""
    rt = _rt(request)
    token = request.path_params["token"]
    try:
        form = decode_params((await request.body()).decode("utf-8", "replace"))
    except WireError as exc:
        return error_page("invalid_request", exc.message)
    with rt.store.transaction() as s:
        link = s["account_links"].get(token)
        if link is None:
            return error_page("invalid_link", "This link is invalid.", status=404, title="Link not found")
        session = link.get("session")
        if not session or form.get("session") != session:
            return RedirectResponse(link["refresh_url"], status_code=302)
        link["session"] = None
        rt.store.mark_dirty()
        action = form.get("action")
        if action not in ("complete", "incomplete"):
            return error_page("invalid_request", "Choose Complete onboarding or Leave incomplete.")
        if link["account"] in s["accounts"]:
            finish = account_state.complete_onboarding if action == "complete" else account_state.leave_onboarding_incomplete
            name = str(form.get("business_name") or "").strip()[:200]

            def mutate(acct: dict) -> None:
                finish(acct)
                if name:  # what the person onboarding typed: Stripe reports it on the account
                    acct["business_profile"]["name"] = name
                    acct["settings"]["dashboard"]["display_name"] = name

            account_state.change_account(rt.store, link["account"], mutate)
        return RedirectResponse(link["return_url"], status_code=302)


async def express_dashboard(request: Request) -> Response:
    """GET /_emulator/express/{account}/{token}: where an Express login link lands (once)."""
    rt = _rt(request)
    with rt.store.transaction() as s:
        link = s.setdefault("login_links", {}).get(request.path_params["token"])
        if link is None or link["account"] != request.path_params["account"]:
            return error_page("invalid_link", "This link is invalid.", status=404,
                              title="Link not found")
        if link["used"] or rt.store.now() > link["expires_at"]:
            return error_page("link_expired", "This login link has expired or was already "
                              "used. Go back to the platform and open your dashboard again.",
                              status=410, title="Link expired")
        link["used"] = True
        rt.store.mark_dirty()
        account = s["accounts"].get(link["account"])
        if account is None:
            return error_page("resource_missing", "No such account.", status=404, title="Not found")
        return render_page("express.html", account=account)


ROUTES = [
    Route("/_emulator/onboarding/{token}", open_link, methods=["GET"]),
    Route("/_emulator/onboarding/{token}", submit, methods=["POST"]),
    Route("/_emulator/express/{account}/{token}", express_dashboard, methods=["GET"]),
]
