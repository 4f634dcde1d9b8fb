"""The companion service: one small ASGI app that Stripe and freelancers' browsers talk to.

Handlers are a few lines each: parse, call ``lib/``, map domain errors to HTTP. The app holds
no state of its own beyond the database engine and the Stripe gateway, so any number of
replicas can run behind a load balancer on one database.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lib.db import make_engine, make_session_factory
from lib.errors import ConnectOpsError
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from server import pages
from server.app_context import ServiceContext
from server.responses import domain_error_handler, validation_error_handler
from server.routes import admin, freelancer, webhooks
from server.security import SecurityHeadersMiddleware

logger = logging.getLogger(__name__)

#: What the service needs to start; checked before it listens.
REQUIRED_SETTINGS = (
    "STRIPE_SECRET_KEY",
    "STRIPE_CONNECT_CLIENT_ID",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_CONNECT_WEBHOOK_SECRET",
    "JWT_SECRET",
)


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    gateway: StripeGateway | None = None,
) -> FastAPI:
    """Build the service. Tests pass their own session factory and gateway."""
    settings.require(*REQUIRED_SETTINGS)
    owned_engine = None
    if session_factory is None:
        owned_engine = make_engine(settings.database_url)
        session_factory = make_session_factory(owned_engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned_engine is not None:
            owned_engine.dispose()

    app = FastAPI(
        title="Connect Ops companion service",
        version="1.0.0",
        description=(
            "The OAuth redirect callback, Stripe webhooks and the freelancer API of Connect Ops."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_exception_handler(ConnectOpsError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.include_router(freelancer.router)
    app.include_router(admin.router)
    app.include_router(webhooks.router)
    app.include_router(pages.router)
    app.state.context = ServiceContext(
        settings=settings,
        session_factory=session_factory,
        gateway=gateway or StripeGateway(settings),
    )

    @app.get("/healthz", tags=["operations"], summary="Liveness and database reachability")
    def healthz() -> JSONResponse:
        context: ServiceContext = app.state.context
        try:
            with context.session_factory() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            logger.warning("health check: database unreachable (%s)", exc.__class__.__name__)
            return JSONResponse(
                {"status": "error", "database": "unreachable"}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    return app
