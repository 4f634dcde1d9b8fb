"""Account links: single-use, five-minute URLs to the emulator's hosted onboarding page."""

from __future__ import annotations

from typing import Any

from emulator.errors import invalid_request
from emulator.resources.accounts import visible_account
from emulator.resources.common import Ctx, skeleton
from emulator.store import random_token

LINK_LIFETIME = 300


def create_account_link(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/account_links."""
    acct = visible_account(ctx, str(params["account"]), "account")
    link_type = params["type"]
    if link_type == "account_update" and acct["type"] in ("express", "standard"):
        raise invalid_request(
            f"You cannot create `account_update` type Account Links for {acct['type'].capitalize()} "
            "accounts. Use `account_onboarding` instead.",
            "type",
        )
    for name in ("refresh_url", "return_url"):
        if not params.get(name):
            raise invalid_request(f"Missing required param: {name}.", name)
        if not str(params[name]).startswith(("http://", "https://")):
            raise invalid_request("Not a valid URL", name, code="url_invalid")
    token = random_token(24)
    now = ctx.now()
    ctx.state["account_links"][token] = {
        "account": acct["id"],
        "type": link_type,
        "refresh_url": params["refresh_url"],
        "return_url": params["return_url"],
        "created": now,
        "expires_at": now + LINK_LIFETIME,
        "used": False,
    }
    ctx.store.mark_dirty()
    link = skeleton("account_link")
    link.update(
        {
            "created": now,
            "expires_at": now + LINK_LIFETIME,
            "url": f"{ctx.base_url}/_emulator/onboarding/{token}",
        }
    )
    return link


ROUTES = {("POST", "/v1/account_links"): create_account_link}
