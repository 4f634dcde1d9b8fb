"""The companion service: one small ASGI app that Stripe and freelancers' browsers talk to.

Handlers are a few lines each: parse, call ``lib/``, map domain errors to HTTP. The app holds
no state of its own beyond the database engine and the Stripe gateway, so any number of
replicas can run behind a load balancer on one database.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.client import responses as HTTP_PHRASES

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from lib.alerts import WorkerWatchdog
from lib.db import make_engine, make_session_factory
from lib.errors import ConnectOpsError
from lib.platform_tokens import PlatformTokenVerifier
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from lib.worker import new_worker_id
from server import pages
from server.app_context import ServiceContext
from server.blocking import run_blocking
from server.responses import (
    domain_error_handler,
    fail,
    internal_error_handler,
    validation_error_handler,
)
from server.routes import admin, freelancer, webhooks
from server.schemas import Health
from server.security import ApiCORSMiddleware, SecurityHeadersMiddleware

logger = logging.getLogger(__name__)

#: What the service needs to start; checked before it listens.
REQUIRED_SETTINGS = (
    "STRIPE_SECRET_KEY",
    "STRIPE_CONNECT_CLIENT_ID",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_CONNECT_WEBHOOK_SECRET",
    "JWT_SECRET",
)

#: What a lost database raises (server down, connection cut, pool exhausted, a SQLite file that
#: cannot be opened): temporary, so 503 and "try again", never a bare 500 or a driver message.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)
DATABASE_UNAVAILABLE_MESSAGE = (
    "The service cannot reach its database right now. Please try again in a moment."
)
RETRY_AFTER_SECONDS = "5"


async def database_unavailable_handler(request: Request, exc: Exception) -> Response:
    """503 for a database outage: a page for browsers (the OAuth callback), JSON for clients."""
    # Only the error's class is logged: driver messages carry host names and SQL.
    cause = getattr(exc, "orig", None) or exc
    logger.error("database unreachable during %s %s (%s)", request.method, request.url.path,
                 cause.__class__.__name__)
    if "text/html" in request.headers.get("accept", ""):
        # A browser (the OAuth callback, the freelancer pages) gets a page it can reload once
        # the database is back; a callback refused here spent no state (that needs a commit).
        response: Response = pages.problem_page(
            503, "Please try again in a moment", DATABASE_UNAVAILABLE_MESSAGE,
            hint="Reload this page in a few seconds.",
        )
    else:
        response = fail(503, DATABASE_UNAVAILABLE_MESSAGE, "database_unavailable")
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


#: The freelancer's pages: a browser there gets a page for the router's own errors, not JSON.
_PAGE_PREFIX = "/freelancer"
_PAGE_ERRORS = {
    404: ("Page not found", "There is no page at this address."),
    405: ("This page cannot do that", "The page does not accept this kind of request."),
}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """The router's own 404/405 (and any other HTTPException) in the service's envelope.

    Starlette raises them before any handler runs; FastAPI's default body ``{"detail": …}``
    is not the ``{"success", "message", "code"}`` envelope API clients parse. Headers the
    exception carries (``Allow`` on a 405) are kept.
    """
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    phrase = HTTP_PHRASES.get(status, "Error")
    if request.url.path.startswith(_PAGE_PREFIX):
        title, message = _PAGE_ERRORS.get(status, (phrase, "This request cannot be served."))
        response: Response = pages.problem_page(
            status, title, message, link=(pages.SETTINGS_PATH, "Go to payment settings"))
    else:
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
        response = fail(status, message, phrase.lower().replace(" ", "_").replace("-", "_"))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


_HEALTHY = {"status": "ok", "database": "ok"}
_UNREACHABLE = {"status": "error", "database": "unreachable"}


def ping_database(session_factory: sessionmaker[Session]) -> None:
    """``SELECT 1`` on a pooled connection of the factory's engine (SQLAlchemyError if down).

    A health check needs no ORM session: a bare connection costs a third of one.
    """
    engine = session_factory.kw.get("bind")
    if not isinstance(engine, Engine):  # a factory that binds per session: go through one
        with session_factory() as session:
            session.execute(text("SELECT 1"))
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    gateway: StripeGateway | None = None,
    platform_tokens: PlatformTokenVerifier | None = None,
    watchdog: bool = False,
) -> FastAPI:
    """Build the service. Tests pass their own session factory, gateway and token verifier.

    ``watchdog``: run the alert check a dead worker cannot run itself ("the worker is not
    heartbeating", ``lib.alerts.WorkerWatchdog``) in a thread while the service runs.
    """
    settings.require(*REQUIRED_SETTINGS)
    owned_engine = None
    if session_factory is None:
        owned_engine = make_engine(settings.database_url)
        session_factory = make_session_factory(owned_engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        guard = None
        if watchdog:
            assert session_factory is not None
            guard = WorkerWatchdog(session_factory, settings=settings,
                                   worker_id=f"companion:{new_worker_id()}")
            guard.start()
        yield
        if guard is not None:
            guard.stop()
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
    if settings.cors_origins:  # added first: the security headers wrap its answers too
        app.add_middleware(ApiCORSMiddleware, origins=settings.cors_origins,
                           allow_credentials=settings.cors_allow_credentials)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(ConnectOpsError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, internal_error_handler)  # answered outside middleware
    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, database_unavailable_handler)
    app.include_router(freelancer.router)
    app.include_router(admin.router)
    app.include_router(webhooks.router)
    app.include_router(pages.router)
    app.state.context = ServiceContext(
        settings=settings,
        session_factory=session_factory,
        gateway=gateway or StripeGateway(settings),
        platform_tokens=platform_tokens or PlatformTokenVerifier.from_settings(settings),
    )

    @app.get("/healthz", tags=["operations"], summary="Liveness and database reachability",
             response_model=Health,
             responses={503: {"model": Health, "description": "The database is unreachable"}})
    async def healthz() -> JSONResponse:
        try:
            await run_blocking(ping_database, session_factory)
        except SQLAlchemyError as exc:
            logger.warning("health check: database unreachable (%s)", exc.__class__.__name__)
            return JSONResponse(_UNREACHABLE, status_code=503)
        return JSONResponse(_HEALTHY)

    return app
