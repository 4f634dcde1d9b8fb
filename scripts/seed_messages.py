"""Demo data for issue 20: the recommended alert rules, a first check of them, and a few
outreach emails, made through the product's own code (``make demo`` runs it with the seed).

The emails and alerts land in the outbox; the demo's worker delivers them to the local SMTP
sink (``make demo`` prints where to read them). Every address is under ``.example``, and with
the emulator the product refuses any SMTP server not on this machine anyway.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from lib.alerts import add_recommended_rules, evaluate_rules
from lib.outreach import due_freelancer_ids, preview_outreach, send_outreach
from lib.roles import Operator, Role

logger = logging.getLogger("seed")

ADMIN = Operator(username="admin", roles=frozenset({Role.ADMIN}))
#: Where the demo's alert rules write (the local sink catches it).
DEMO_TEAM = "ops-team@connect-ops.example"
#: Freelancers emailed by the seed (the rest are left for a person to try on the dashboard).
OUTREACH = 3


def seed_messages(factory: sessionmaker[Session]) -> tuple[int, int]:
    """Rules, a first check and a few outreach emails; (alerts opened, emails queued)."""
    with factory.begin() as session:
        add_recommended_rules(session, operator=ADMIN, email_recipients=DEMO_TEAM)
    opened = evaluate_rules(factory).opened
    with factory() as session:
        ids = due_freelancer_ids(session, operator=ADMIN, limit=OUTREACH)
    queued = 0
    if ids:
        with factory() as session:
            preview = preview_outreach(session, operator=ADMIN, freelancer_ids=ids)
        queued = send_outreach(factory, operator=ADMIN, token=preview.token,
                               freelancer_ids=preview.freelancer_ids).queued
    logger.info("seeded %d alert rule check(s): %d alert(s); %d outreach email(s) queued",
                1, opened, queued)
    return opened, queued
