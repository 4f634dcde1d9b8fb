"""What every handler may use, reached through ``request.app.state``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from lib.platform_tokens import PlatformTokenVerifier
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway


@dataclass
class ServiceContext:
    """Settings, the session factory and the Stripe gateway: nothing per-replica (the
    platform's keys are a cache of what it publishes)."""

    settings: Settings
    session_factory: sessionmaker[Session]
    gateway: StripeGateway
    #: None unless the platform's own tokens are configured (PLATFORM_JWT_ISSUER).
    platform_tokens: PlatformTokenVerifier | None = None


async def context_of(request: Request) -> ServiceContext:
    """The app's context. ``async`` because it never blocks: FastAPI runs a plain ``def``
    dependency in the threadpool, a thread hop per request for an attribute read."""
    return request.app.state.context
