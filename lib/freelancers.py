"""Freelancers: the marketplace's people we pay."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lib.errors import ConflictError, NotFoundError, ValidationError
from lib.models import Freelancer

_EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def normalise_email(email: str) -> str:
    """Trim and lower-case an email, or raise ValidationError."""
    value = (email or "").strip().lower()
    if not _EMAIL.match(value):
        raise ValidationError("Enter a valid email address (name@example.com).")
    return value


def create_freelancer(
    session: Session, *, name: str, email: str, country: str | None = None
) -> Freelancer:
    """Add a freelancer; the email must be unique."""
    clean_name = (name or "").strip()
    if not clean_name or len(clean_name) > 200:
        raise ValidationError("A freelancer needs a name of 1 to 200 characters.")
    clean_country = (country or "").strip().upper() or None
    if clean_country is not None and not _COUNTRY.match(clean_country):
        raise ValidationError("Country must be a two-letter ISO code such as US or FR.")
    freelancer = Freelancer(name=clean_name, email=normalise_email(email), country=clean_country)
    try:
        with session.begin_nested():
            session.add(freelancer)
    except IntegrityError:
        raise ConflictError(f"A freelancer with email {freelancer.email} already exists.") from None
    return freelancer


def get_freelancer(session: Session, *, freelancer_id: int) -> Freelancer:
    """The freelancer with this id, or NotFoundError."""
    freelancer = session.get(Freelancer, freelancer_id)
    if freelancer is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    return freelancer


def find_by_email(session: Session, *, email: str) -> Freelancer | None:
    """The freelancer with this email, if any."""
    return session.scalars(
        select(Freelancer).where(Freelancer.email == email.strip().lower())
    ).one_or_none()


def find_by_account(session: Session, *, stripe_account_id: str) -> Freelancer | None:
    """The freelancer currently connected to ``stripe_account_id``, if any."""
    return session.scalars(
        select(Freelancer).where(Freelancer.stripe_account_id == stripe_account_id)
    ).one_or_none()


def search_freelancers(session: Session, *, text: str = "", limit: int = 50) -> list[Freelancer]:
    """Freelancers whose name, email or account id contains ``text`` (for pickers)."""
    statement = select(Freelancer).order_by(Freelancer.name).limit(max(1, min(limit, 500)))
    needle = text.strip().lower()
    if needle:
        pattern = f"%{needle.replace('%', '').replace('_', '')}%"
        statement = statement.where(
            func.lower(Freelancer.name).like(pattern)
            | func.lower(Freelancer.email).like(pattern)
            | func.lower(func.coalesce(Freelancer.stripe_account_id, "")).like(pattern)
        )
    return list(session.scalars(statement))
