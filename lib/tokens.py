"""Tokens the companion service accepts: freelancer/admin API JWTs and signed page links.

API tokens are HS256 JWTs signed with ``JWT_SECRET``; ``exp`` and ``sub`` are required and the
algorithm is pinned, so ``alg: none`` or an RS/HS confusion is refused. Onboarding return links
carry an HMAC of the attempt id, so nobody can mark someone else's attempt as returned.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from lib.db import utcnow
from lib.errors import ConnectOpsError, PermissionDeniedError
from lib.roles import Operator, Role

ALGORITHM = "HS256"
ISSUER = "connect-ops"
#: The freelancer's page-access generation a payment-settings link or session was issued in
#: (``freelancers.page_access_generation``): raising it revokes them (``lib.page_access``).
PAGE_GENERATION_CLAIM = "pag"
#: A single-use payment-settings link (an outreach email's): the id it is spent by once
#: (``outreach_contacts.link_id``, ``lib.outreach.spend_link``). Never an API token.
LINK_ID_CLAIM = "lid"


class TokenError(ConnectOpsError):
    """The bearer token is missing, malformed, expired or not ours (HTTP 401)."""

    code = "invalid_token"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    role: Role
    expires_at: datetime
    #: 0 when the token carries none (API tokens).
    page_generation: int = 0
    #: Set on a single-use link's token only.
    link_id: str | None = None

    @property
    def freelancer_id(self) -> int:
        if self.role is not Role.FREELANCER:
            raise PermissionDeniedError("This endpoint is for freelancers.")
        try:
            return int(self.subject)
        except ValueError:
            raise TokenError("The token's subject is not a freelancer id.") from None

    def operator(self) -> Operator:
        name = f"freelancer:{self.subject}" if self.role is Role.FREELANCER else self.subject
        return Operator(username=name, roles=frozenset({self.role}))


def issue_token(
    *, secret: str, subject: str, role: Role, lifetime: timedelta = timedelta(hours=1),
    now: datetime | None = None, page_generation: int | None = None,
    link_id: str | None = None,
) -> str:
    """A signed API token for ``subject`` with ``role`` (and a page-access generation)."""
    issued = now or utcnow()
    payload: dict[str, object] = {
        "sub": subject, "role": role.value, "iss": ISSUER,
        "iat": int(issued.timestamp()), "nbf": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    if page_generation is not None:
        payload[PAGE_GENERATION_CLAIM] = page_generation
    if link_id is not None:
        payload[LINK_ID_CLAIM] = link_id
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(token: str, *, secret: str) -> TokenClaims:
    """Check signature, algorithm, expiry and claims; raise TokenError otherwise."""
    if not token or len(token) > 4096:
        raise TokenError("A bearer token is required.")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
            options={"require": ["exp", "sub", "iat"]}, leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("The token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("The token is not valid yet.") from None
    except jwt.InvalidTokenError:
        raise TokenError("The token is invalid.") from None
    role_name = claims.get("role")
    if not isinstance(role_name, str) or role_name not in Role._value2member_map_:
        raise TokenError("The token carries no known role.")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenError("The token has no subject.")
    generation = claims.get(PAGE_GENERATION_CLAIM, 0)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise TokenError("The token is invalid.")
    link_id = claims.get(LINK_ID_CLAIM)
    if link_id is not None and (not isinstance(link_id, str) or not 0 < len(link_id) <= 36):
        raise TokenError("The token is invalid.")

    return TokenClaims(
        subject=subject, role=Role(role_name),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
        page_generation=generation, link_id=link_id,
    )


def sign_value(value: str, *, secret: str, purpose: str) -> str:
    """``value.signature`` for a value carried in a URL."""
    digest = hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()
    return f"{value}.{digest[:32]}"


def unsign_value(signed: str, *, secret: str, purpose: str) -> str | None:
    """The value if its signature is ours, else None."""
    value, _, signature = (signed or "").rpartition(".")
    # compare_digest raises TypeError on non-ASCII text (a 500 on a tampered onboarding link).
    if not value or not signature or not signature.isascii():
        return None
    expected = sign_value(value, secret=secret, purpose=purpose).rpartition(".")[2]
    return value if hmac.compare_digest(expected, signature) else None
