"""Accounts, capabilities and login links (/v1/account, /v1/accounts/...)."""

from __future__ import annotations

import copy
from typing import Any

from emulator import account_state
from emulator.agreements import (
    agreement_of,
    check_agreement_change,
    check_capabilities,
    check_new_account,
    chosen_agreement,
)
from emulator.errors import account_access_denied, invalid_request, resource_missing
from emulator.resources.common import (
    Ctx,
    RenderedBody,
    metadata_update,
    page_window,
    paginate,
    render_list,
    rendered_item,
)
from emulator.store import random_token
from emulator.validation import resource_skeleton

#: How long a login link can be opened (Stripe says only "a brief period"; strict here).
LOGIN_LINK_LIFETIME = 300


def visible_account(ctx: Ctx, account_id: str, param: str = "account") -> dict[str, Any]:
    """A connected account of this platform.

    An account that exists but is not connected (its OAuth access was revoked, or it never
    authorized this platform) is Stripe's 403 ``account_invalid``; an id Stripe has never seen
    is a 404 ``No such account``.
    """
    if not account_state.is_connected(ctx.store, account_id):
        if account_id in ctx.state["accounts"]:
            raise account_access_denied(ctx.api_key, account_id)
        raise resource_missing("account", account_id, param)
    return ctx.state["accounts"][account_id]


def _flatten(prefix: str, value: Any) -> list[str]:
    if isinstance(value, dict):
        out: list[str] = []
        for key, sub in value.items():
            out.extend(_flatten(f"{prefix}.{key}", sub))
        return out
    return [prefix]


def _provided_fields(params: dict[str, Any]) -> set[str]:
    """Dotted requirement names a create/update call satisfies (`individual.dob.day`, ...)."""
    fields: set[str] = set()
    for top in ("individual", "company", "business_profile", "tos_acceptance"):
        if isinstance(params.get(top), dict):
            fields.update(_flatten(top, params[top]))
    if params.get("external_account"):
        fields.add("external_account")
    if params.get("business_type"):
        fields.add("business_type")
    return fields


def _apply_fields(acct: dict[str, Any], params: dict[str, Any]) -> None:
    """Copy the account fields Stripe echoes back and tick off the requirements they meet."""
    if "email" in params:
        acct["email"] = params["email"]
    if params.get("business_type"):
        acct["business_type"] = params["business_type"]
    if params.get("default_currency"):
        acct["default_currency"] = params["default_currency"]
    if "metadata" in params:
        acct["metadata"] = metadata_update(acct["metadata"], params["metadata"])
    if isinstance(params.get("business_profile"), dict):
        for key, value in params["business_profile"].items():
            if key in acct["business_profile"]:
                acct["business_profile"][key] = value
    if isinstance(params.get("tos_acceptance"), dict):
        for key, value in params["tos_acceptance"].items():
            if key in acct["tos_acceptance"]:
                acct["tos_acceptance"][key] = value
    if isinstance(params.get("settings"), dict):
        _merge(acct["settings"], params["settings"])
    if params.get("external_account"):
        acct["external_accounts"]["data"] = [
            account_state.bank_account(acct["id"], acct["default_currency"], acct["country"])
        ]
    provided = _provided_fields(params)
    if provided:
        reqs = acct["requirements"]
        for key in ("currently_due", "eventually_due", "past_due"):
            reqs[key] = [r for r in reqs[key] if r not in provided]
        if not reqs["currently_due"] and reqs["disabled_reason"] == "requirements.past_due":
            reqs["disabled_reason"] = None


def _merge(target: dict[str, Any], given: dict[str, Any]) -> None:
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif key in target:
            target[key] = value


def _requested(params: dict[str, Any]) -> list[str]:
    caps = params.get("capabilities") or {}
    return [name for name, spec in caps.items() if isinstance(spec, dict) and spec.get("requested")]


def create_account(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/accounts: a new un-onboarded Express/Custom/Standard account."""
    account_type = params.get("type") or ("custom" if params.get("controller") else "standard")
    controller = params.get("controller") or {}
    if not params.get("type") and controller:
        dashboard = (controller.get("stripe_dashboard") or {}).get("type")
        account_type = {"express": "express", "full": "standard"}.get(dashboard or "", "custom")
    requested = _requested(params)
    if account_type == "custom" and not requested:
        raise invalid_request(
            "You must request at least one capability for Custom accounts.", "capabilities"
        )
    platform_country = ctx.store.config.platform_country
    # Without `country` Stripe creates the account in the platform's country.
    country = str(params.get("country") or platform_country).upper()
    agreement = chosen_agreement(params) or "full"
    check_new_account(account_type=account_type, agreement=agreement, country=country,
                      platform_country=platform_country, capabilities=requested)
    acct = account_state.build_account(
        ctx.store,
        account_type=account_type,
        country=country,
        email=params.get("email"),
        business_type=params.get("business_type"),
        capabilities=requested,
        via="platform",
        service_agreement=agreement,
    )
    _apply_fields(acct, {k: v for k, v in params.items() if k not in ("email", "business_type")})
    account_state.add_account(ctx.store, acct, via="platform", connected=True)
    return acct


def retrieve_account(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/accounts/{account}."""
    return visible_account(ctx, path["account"])


def retrieve_own_account(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/account: the platform, or the Stripe-Account's own account."""
    if ctx.account:
        return ctx.state["accounts"][ctx.account]
    return account_state.platform_account(ctx.store)


def update_account(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/accounts/{account}: email, metadata, business profile, settings, ..."""
    acct = visible_account(ctx, path["account"])
    requested = _requested(params)
    unrequested = [
        name
        for name, spec in (params.get("capabilities") or {}).items()
        if isinstance(spec, dict) and spec.get("requested") is False
    ]
    agreement = chosen_agreement(params)
    if agreement is not None:
        check_agreement_change(acct, agreement)
    _check_requests(acct, requested, agreement=agreement)

    def mutate(a: dict[str, Any]) -> None:
        _apply_fields(a, params)
        _set_capabilities(ctx, a, requested, unrequested)

    return account_state.change_account(
        ctx.store,
        acct["id"],
        mutate,
        request_id=ctx.request_id,
        idempotency_key=ctx.idempotency_key,
    )


def _check_requests(acct: dict[str, Any], add: list[str], *, agreement: str | None = None) -> None:
    """A later capability request obeys the account's (or its new) service agreement."""
    if acct["type"] == "standard":
        return
    wanted = agreement or agreement_of(acct)
    if wanted == "recipient":
        check_capabilities(wanted, set(acct["capabilities"]) | set(add))
    elif "card_payments" in add:
        check_capabilities(wanted, set(acct["capabilities"]) | set(add))


def _set_capabilities(ctx: Ctx, acct: dict[str, Any], add: list[str], remove: list[str]) -> None:
    onboarded = acct["details_submitted"] and not acct["requirements"]["currently_due"]
    times = ctx.state["connections"][acct["id"]].setdefault("requested_at", {})
    for name in add:
        if name in account_state.KNOWN_CAPABILITIES and name not in acct["capabilities"]:
            acct["capabilities"][name] = "active" if onboarded else "inactive"
            times[name] = ctx.now()
    for name in remove:
        acct["capabilities"].pop(name, None)
        times.pop(name, None)


def _connected_newest_first(ctx: Ctx) -> tuple[list[str], dict[str, int]]:
    """The connected accounts' ids in list order and each id's index (until the state changes)."""

    def build() -> tuple[list[str], dict[str, int]]:
        ids = [aid for aid in reversed(ctx.state["accounts"]) if account_state.is_connected(ctx.store, aid)]
        return ids, {aid: n for n, aid in enumerate(ids)}

    return ctx.store.derived("accounts:connected", build)


def _account_json(ctx: Ctx, account_id: str) -> str:
    acct = ctx.state["accounts"][account_id]
    return ctx.store.derived(f"accounts:json:{account_id}", lambda: rendered_item(acct))


def list_accounts(
    ctx: Ctx, params: dict[str, Any], path: dict[str, str]
) -> dict[str, Any] | RenderedBody:
    """GET /v1/accounts: the platform's connected accounts, newest first.

    A backfill pages through every account: the order is kept with each id's position (a cursor
    is a seek) and each account's JSON is rendered once until the state changes, instead of a
    scan, a deep copy and an indented dump per account per page. `created` filters and
    `expand[]` take the general path.
    """
    if params.get("created") not in (None, "") or params.get("expand"):
        items = [a for aid, a in ctx.state["accounts"].items() if account_state.is_connected(ctx.store, aid)]
        return paginate(items, params, "/v1/accounts")
    ids, position = _connected_newest_first(ctx)
    page, more = page_window(ids, position, params)
    return render_list([_account_json(ctx, aid) for aid in page], more, "/v1/accounts")


def delete_account(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """DELETE /v1/accounts/{account}: only accounts the platform created (test mode)."""
    acct = visible_account(ctx, path["account"])
    if ctx.state["connections"][acct["id"]]["via"] == "oauth":
        raise invalid_request(
            "You cannot delete an account that was connected through OAuth; deauthorize it "
            "instead.",
            "account",
        )
    del ctx.state["accounts"][acct["id"]]
    ctx.state["connections"].pop(acct["id"], None)
    ctx.store.mark_dirty()
    return {"deleted": True, "id": acct["id"], "object": "account"}


def reject_account(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/accounts/{account}/reject: disable the account for fraud, terms or other."""
    acct = visible_account(ctx, path["account"])
    if acct["type"] == "standard":
        raise invalid_request(
            "You can only reject Custom and Express accounts.", "account"
        )
    reason = params["reason"]
    if reason not in ("fraud", "terms_of_service", "other"):
        raise invalid_request(
            "Invalid reason: must be one of fraud, terms_of_service, or other", "reason"
        )

    def mutate(a: dict[str, Any]) -> None:
        a["requirements"]["disabled_reason"] = f"rejected.{reason}"
        a["charges_enabled"] = False
        a["payouts_enabled"] = False
        a["capabilities"] = {name: "inactive" for name in a["capabilities"]}

    return account_state.change_account(
        ctx.store, acct["id"], mutate, request_id=ctx.request_id, idempotency_key=ctx.idempotency_key
    )


def list_capabilities(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/accounts/{account}/capabilities (not paginated, like Stripe)."""
    acct = visible_account(ctx, path["account"])
    data = [account_state.capability_object(ctx.store, acct["id"], name) for name in sorted(acct["capabilities"])]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/accounts/{acct['id']}/capabilities",
    }


def _capability_name(name: str) -> str:
    if name not in account_state.KNOWN_CAPABILITIES:
        raise resource_missing("capability", name, "capability")
    return name


def retrieve_capability(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """GET /v1/accounts/{account}/capabilities/{capability}."""
    acct = visible_account(ctx, path["account"])
    return account_state.capability_object(ctx.store, acct["id"], _capability_name(path["capability"]))


def update_capability(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/accounts/{account}/capabilities/{capability} (`requested`)."""
    acct = visible_account(ctx, path["account"])
    name = _capability_name(path["capability"])
    if "requested" in params:
        add, remove = ([name], []) if params["requested"] else ([], [name])
        _check_requests(acct, add)
        account_state.change_account(
            ctx.store,
            acct["id"],
            lambda a: _set_capabilities(ctx, a, add, remove),
            request_id=ctx.request_id,
            idempotency_key=ctx.idempotency_key,
        )
    return account_state.capability_object(ctx.store, acct["id"], name)


def create_login_link(ctx: Ctx, params: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    """POST /v1/accounts/{account}/login_links: Express accounts only."""
    acct = visible_account(ctx, path["account"])
    if acct["type"] != "express":
        raise invalid_request(
            f"Cannot create an edit link for the account {acct['id']}, which is not an "
            "Express account.",
            "account",
        )
    if not acct["details_submitted"]:
        raise invalid_request(
            f"Cannot create a login link for an account that has not completed onboarding "
            f"({acct['id']}).",
            "account",
        )
    # Single use and short-lived ("Login Links are single-use URLs"; "the URL expires a brief
    # period after you retrieve it"): the page consumes it, a reused or late one is refused.
    token = random_token(12)
    now = ctx.now()
    ctx.state.setdefault("login_links", {})[token] = {
        "account": acct["id"], "created": now, "expires_at": now + LOGIN_LINK_LIFETIME,
        "used": False,
    }
    ctx.store.mark_dirty()
    link = resource_skeleton("login_link")
    link.update(
        {
            "created": now,
            "url": f"{ctx.base_url}/_emulator/express/{acct['id']}/{token}",
        }
    )
    return copy.deepcopy(link)


ROUTES = {
    ("GET", "/v1/account"): retrieve_own_account,
    ("POST", "/v1/accounts"): create_account,
    ("GET", "/v1/accounts"): list_accounts,
    ("GET", "/v1/accounts/{account}"): retrieve_account,
    ("POST", "/v1/accounts/{account}"): update_account,
    ("DELETE", "/v1/accounts/{account}"): delete_account,
    ("POST", "/v1/accounts/{account}/reject"): reject_account,
    ("GET", "/v1/accounts/{account}/capabilities"): list_capabilities,
    ("GET", "/v1/accounts/{account}/capabilities/{capability}"): retrieve_capability,
    ("POST", "/v1/accounts/{account}/capabilities/{capability}"): update_capability,
    ("POST", "/v1/accounts/{account}/login_links"): create_login_link,
}
