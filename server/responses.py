"""The platform's response envelope ``{"success", "message", "data"}`` and error mapping.

Its documented shapes are in ``server/schemas.py``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lib import errors
from lib.platform_tokens import TokenKeysUnavailable
from lib.tokens import TokenError
from server.security import headers_for

logger = logging.getLogger(__name__)


def ok(message: str, data: Any = None, status_code: int = 200) -> JSONResponse:
    body: dict[str, Any] = {"success": True, "message": message}
    if data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status_code)


def fail(status_code: int, message: str, code: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"success": False, "message": message}
    if code:
        body["code"] = code
    headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
    return JSONResponse(body, status_code=status_code, headers=headers)


_STATUS = (
    (TokenError, 401),
    (TokenKeysUnavailable, 503),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.ValidationError, 422),
    (errors.StripeRateLimitError, 503),
    (errors.StripeConnectionError, 503),
    (errors.StripeUnavailableError, 503),
    (errors.StripeRequestError, 502),
    (errors.StripeGatewayError, 502),
    (errors.ConfigurationError, 500),
)


def status_for(exc: errors.ConnectOpsError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


async def domain_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ConnectOpsError)
    return fail(status_for(exc), exc.message, exc.code)


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return fail(422, f"Invalid request: {where} {first.get('msg', '')}".strip(), "validation_error")


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A bug's 500: the envelope and the security headers, never a traceback or a secret.

    Starlette answers an unhandled exception outside every middleware, so the security headers
    are added here; the exception is re-raised after this response and logged by the server.
    """
    logger.error("unhandled %s in %s %s", exc.__class__.__name__, request.method,
                 request.url.path)
    response = fail(500, "Something went wrong on our side; nothing more was done. "
                         "Try again in a moment.", "internal_error")
    for name, value in headers_for(request.url.path):
        response.raw_headers.append((name, value))
    return response
