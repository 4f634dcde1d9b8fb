"""Who may do what. Enforced here, in the domain, not only by hiding a page.

Every action function in ``lib/`` takes the acting ``Operator`` and calls :func:`authorize`
first, so a page reached another way (or a script) still cannot act beyond its role. Every
refusal is a clear ``PermissionDeniedError`` and one audit entry (``authorize.<action>``,
``refused:permission_denied``) that outlives the caller's rollback.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from lib.errors import PermissionDeniedError


class Role(enum.StrEnum):
    ADMIN = "admin"
    FINANCE = "finance"
    MANAGER = "manager"
    #: A freelancer acting on their own connection through the companion API.
    FREELANCER = "freelancer"


class Action(enum.StrEnum):
    VIEW_OVERVIEW = "view_overview"
    VIEW_METRICS = "view_metrics"
    VIEW_ACCOUNTS = "view_accounts"
    VIEW_REQUIREMENTS = "view_requirements"
    VIEW_PAYOUTS = "view_payouts"
    VIEW_WEBHOOKS = "view_webhooks"
    VIEW_AUDIT_LOG = "view_audit_log"
    GENERATE_LINK = "generate_link"
    DISCONNECT = "disconnect"
    #: Release the hold on a freelancer's new payout destination for them (lib.destinations).
    CONFIRM_DESTINATION = "confirm_destination"
    REFRESH_ACCOUNT = "refresh_account"
    SYNC_ACCOUNTS = "sync_accounts"
    REQUEST_PAYOUT = "request_payout"
    APPROVE_PAYOUT = "approve_payout"
    REJECT_PAYOUT = "reject_payout"
    REVERSE_PAYOUT = "reverse_payout"
    RECONCILE = "reconcile"
    #: Propose or confirm how a payout no retry may settle ended (two people).
    DECIDE_SETTLEMENT = "decide_settlement"
    REPLAY_WEBHOOK = "replay_webhook"
    EXPORT = "export"
    #: Issue 21: the platform's balance against what is committed, per currency.
    VIEW_FUNDING = "view_funding"
    #: Issue 21: connected accounts' failed payouts to their bank.
    VIEW_BANK_PAYOUTS = "view_bank_payouts"
    #: Issue 21: a signed link that signs a freelancer in to their payment settings.
    SEND_SETTINGS_LINK = "send_settings_link"
    #: Issue 21: the finance reports (the notebook's figures).
    VIEW_REPORTS = "view_reports"
    #: Email freelancers a single-use link to their payment settings and what Stripe asks for.
    SEND_OUTREACH = "send_outreach"
    #: Create and change alert rules, their thresholds and recipients (lib.alerts).
    MANAGE_ALERTS = "manage_alerts"
    #: The outbox of outgoing messages (outreach and alerts), with their delivery errors.
    VIEW_OUTBOX = "view_outbox"
    #: Send a failed or dead message again.
    RETRY_MESSAGE = "retry_message"
    MANAGE_OWN_CONNECTION = "manage_own_connection"


_FINANCE = frozenset(
    {
        Action.VIEW_ACCOUNTS, Action.VIEW_REQUIREMENTS, Action.VIEW_PAYOUTS,
        Action.VIEW_AUDIT_LOG, Action.APPROVE_PAYOUT, Action.REJECT_PAYOUT,
        Action.RECONCILE, Action.DECIDE_SETTLEMENT, Action.EXPORT, Action.VIEW_FUNDING,
        Action.VIEW_BANK_PAYOUTS, Action.SEND_SETTINGS_LINK, Action.VIEW_REPORTS,
        # Finance chases what Stripe asks for (the Requirements export is theirs): the email
        # goes only to the freelancer's own address, with a link only to their own settings.
        Action.SEND_OUTREACH,
    }
)
_MANAGER = frozenset({Action.VIEW_OVERVIEW, Action.VIEW_METRICS})

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action) - {Action.MANAGE_OWN_CONNECTION},
    Role.FINANCE: _FINANCE,
    Role.MANAGER: _MANAGER,
    Role.FREELANCER: frozenset({Action.MANAGE_OWN_CONNECTION}),
}


def canonical_username(name: str) -> str:
    """One spelling per person: ``Alice``, ``alice`` and ``ａｌｉｃｅ`` are the same operator.

    The two-person rule compares usernames; the dashboard, API tokens and the command line
    must therefore agree on one identity whatever case or Unicode form a name was typed in
    (NFKC folds compatibility forms such as full-width letters, ``casefold`` folds case more
    thoroughly than ``lower``: ``ß`` and ``ss`` are one name).
    """
    return unicodedata.normalize("NFKC", name).strip().casefold()


@dataclass(frozen=True, slots=True)
class Operator:
    """The person (or freelancer) on whose behalf an action runs.

    ``username`` is stored canonical (:func:`canonical_username`), so every comparison and every
    audit entry sees one spelling per person, whichever door (dashboard, API, CLI) they came in.
    """

    username: str
    roles: frozenset[Role]

    def __post_init__(self) -> None:
        object.__setattr__(self, "username", canonical_username(self.username))

    def is_same_person(self, username: str | None) -> bool:
        """True when ``username`` (as stored on a row, any spelling) names this operator."""
        return username is not None and canonical_username(username) == self.username

    @classmethod
    def from_role_names(cls, username: str, role_names: object) -> Operator:
        """Build from streamlit-authenticator's ``roles`` (unknown names are ignored)."""
        names = role_names if isinstance(role_names, list | tuple | set | frozenset) else []
        roles = frozenset(Role(n) for n in names if n in Role._value2member_map_)
        return cls(username=username, roles=roles)

    @property
    def role_label(self) -> str:
        return ",".join(sorted(r.value for r in self.roles)) or "none"

    def can(self, action: Action) -> bool:
        return any(action in PERMISSIONS[role] for role in self.roles)


class AuditedRefusal(PermissionDeniedError):
    """A refusal already in the audit log: a caller's own refusal handler must not add another."""


def refuse(
    operator: Operator | None, action: Action, message: str, *,
    session: Session | None, target: str | None = None,
) -> PermissionDeniedError:
    """Audit a refusal of ``action`` and return the error for the caller to raise.

    The entry is written in its own transaction (see ``lib.audit.record_refusal``): the caller's
    transaction is rolled back when the error propagates, and the refusal must still be seen.
    Without a session nothing is written and a plain ``PermissionDeniedError`` comes back.
    """
    # Imported here: lib.audit needs Operator from this module.
    from lib import audit

    signed_in = operator is not None and bool(operator.username)
    actor: Operator | str = operator if signed_in and operator is not None else "anonymous"
    roles = sorted(r.value for r in operator.roles) if operator is not None else []
    audit.record_refusal(session, actor=actor, action=audit.refusal_action(action.value),
                         detail=message, target=target,
                         input={"action": action.value, "roles": roles})
    return AuditedRefusal(message) if session is not None else PermissionDeniedError(message)


def authorize_on_freelancer(
    operator: Operator | None, action: Action, *, freelancer_id: int,
    session: Session | None,
) -> bool:
    """Authorize ``action`` on ``freelancer_id``'s connection; True when the operator is that
    freelancer.

    A freelancer may act only on their own connection (``MANAGE_OWN_CONNECTION``), whatever
    the action; anyone else needs ``action`` itself. Refusals are audited as :func:`authorize`'s.
    """
    target = f"freelancer:{freelancer_id}"
    if operator is not None and Role.FREELANCER in operator.roles:
        authorize(operator, Action.MANAGE_OWN_CONNECTION, session=session, target=target)
        if operator.username != target:
            raise refuse(operator, Action.MANAGE_OWN_CONNECTION,
                         "A freelancer can only manage their own connection.",
                         session=session, target=target)
        return True
    authorize(operator, action, session=session, target=target)
    return False


def authorize(
    operator: Operator | None, action: Action, *, session: Session | None,
    target: str | None = None,
) -> Operator:
    """Return the operator if allowed, else audit the refusal and raise ``PermissionDeniedError``.

    ``session`` is the caller's session (a function holding only a factory opens one: ``with
    factory() as session``); the refusal is committed on its own even though the caller's
    transaction rolls back. ``None`` only when no database is at hand (or the caller audits the
    refusal itself). ``target`` names what the refused action was for.
    """
    words = action.value.replace("_", " ")
    if operator is None or not operator.username:
        raise refuse(operator, action, f"You must be signed in to {words}.", session=session,
                     target=target)
    if not operator.can(action):
        raise refuse(operator, action,
                     f"{operator.username} ({operator.role_label}) may not {words}.",
                     session=session, target=target)
    return operator


def authorize_in(
    factory: sessionmaker[Session], operator: Operator | None, action: Action, *,
    target: str | None = None,
) -> Operator:
    """:func:`authorize` for a function that holds a session factory, not a session.

    The session is opened only to audit a refusal (a SQLAlchemy session connects on first use,
    so an allowed action costs no round trip).
    """
    with factory() as session:
        return authorize(operator, action, session=session, target=target)
