"""Revoking a freelancer's payment-settings links and sessions.

``python -m server.links`` signs a link that opens the freelancer's payment settings without a
password: whoever holds it is that freelancer until it expires (30 minutes by default, at most
24 hours), and the session it opens lasts 8 hours. A link sent to the wrong address, forwarded,
or kept by a mail scanner must be stoppable before then. Every link and session carries the
freelancer's ``page_access_generation``; :func:`revoke_page_access` raises it, so every link and
session issued before stops working at once (the page checks it on every request).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from lib import audit
from lib.errors import NotFoundError
from lib.models import Freelancer
from lib.roles import Operator


def page_access_generation(session: Session, *, freelancer_id: int) -> int:
    """The generation new links and sessions of this freelancer carry."""
    freelancer = session.get(Freelancer, freelancer_id)
    if freelancer is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    return int(freelancer.page_access_generation or 0)


def revoke_page_access(session: Session, *, freelancer_id: int, actor: Operator | str) -> int:
    """End every payment-settings link and session of the freelancer; the new generation."""
    page_access_generation(session, freelancer_id=freelancer_id)  # exists, or NotFoundError
    session.execute(
        update(Freelancer).where(Freelancer.id == freelancer_id)
        .values(page_access_generation=Freelancer.page_access_generation + 1)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    generation = page_access_generation(session, freelancer_id=freelancer_id)
    audit.record(session, actor=actor, action="freelancer.page_links_revoke", result="revoked",
                 target=f"freelancer:{freelancer_id}", input={"generation": generation})
    return generation
