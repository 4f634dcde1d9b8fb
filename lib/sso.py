"""Dashboard sign-in through the company's OpenID Connect provider: who, and which roles.

Streamlit's ``st.login`` runs the OIDC dance and keeps the provider's ID-token claims in a
signed cookie (``st.user``); this module turns those claims into an ``Operator`` and audits
it, without importing streamlit. Roles come only from the configured claim
(``OIDC_ROLES_CLAIM``, e.g. ``groups``) through ``OIDC_ROLE_MAP``: a value that is not mapped
grants nothing, and a person with no mapped role is signed in to see nothing but a message
(still audited: ``auth.login`` ``refused:no_role``). The audit log names people by the claim
the provider asserted (``OIDC_USERNAME_CLAIM``, the email by default, else ``sub``), and the
login entry keeps the issuer, subject and groups the provider sent. Roles are enforced in
``lib.roles`` as for every other operator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lib import audit
from lib.login_throttle import LOGIN_OK, client_target, normalise_username
from lib.models import AuditLog
from lib.roles import Operator, Role
from lib.settings import Settings

_MAX = 200


@dataclass(frozen=True, slots=True)
class SsoIdentity:
    """The person the provider asserted, and the roles that maps to here."""

    username: str
    issuer: str | None
    subject: str | None
    groups: tuple[str, ...]
    roles: frozenset[Role]
    #: When the provider issued the ID token (``iat``): a logout after it ends this session.
    issued_at: datetime | None

    @property
    def operator(self) -> Operator:
        return Operator(username=self.username, roles=self.roles)


def _text(value: Any) -> str | None:
    return value.strip()[:_MAX] or None if isinstance(value, str) else None


def identity_from_claims(claims: Mapping[str, Any], *, settings: Settings) -> SsoIdentity | None:
    """The identity in ``st.user``'s claims; None when not signed in or nameless."""
    if not claims.get("is_logged_in"):
        return None
    username = _text(claims.get(settings.oidc_username_claim)) or _text(claims.get("sub"))
    if username is None:
        return None
    raw = claims.get(settings.oidc_roles_claim)
    values = raw if isinstance(raw, list) else [raw] if raw is not None else []
    groups = tuple(str(v)[:_MAX] for v in values if isinstance(v, str | int))[:50]
    mapping = settings.oidc_roles
    roles = frozenset(Role(mapping[g]) for g in groups if g in mapping)
    iat = claims.get("iat")
    issued = (datetime.fromtimestamp(int(iat), tz=UTC)
              if isinstance(iat, int | float) and not isinstance(iat, bool) else None)
    return SsoIdentity(username=normalise_username(username), issuer=_text(claims.get("iss")),
                       subject=_text(claims.get("sub")), groups=groups, roles=roles,
                       issued_at=issued)


def sign_in_key(identity: SsoIdentity) -> str:
    """One key per ID token: a sign-in is audited once, however many tabs and reloads use it."""
    stamp = int(identity.issued_at.timestamp()) if identity.issued_at else 0
    raw = f"{identity.issuer}|{identity.subject}|{identity.username}|{stamp}"
    return "oidc:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def record_sso_login(session: Session, *, identity: SsoIdentity, client: str | None) -> bool:
    """Audit a sign-in through the provider, with what it asserted (refused without a role).

    Once per ID token (``sign_in_key``); False when this one was already recorded.
    """
    key = sign_in_key(identity)
    if session.scalar(select(AuditLog.id).where(AuditLog.action == LOGIN_OK,
                                                AuditLog.idempotency_key == key).limit(1)):
        return False
    operator = identity.operator
    audit.record(session, actor=operator, action=LOGIN_OK,
                 result="ok" if identity.roles else "refused:no_role",
                 target=client_target(client), idempotency_key=key,
                 input={"via": "oidc", "issuer": identity.issuer, "subject": identity.subject,
                        "groups": list(identity.groups), "roles": operator.role_label})
    return True
