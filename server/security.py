"""Security headers on every response, and the bearer-token dependency."""

from __future__ import annotations

from fastapi import Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from lib.tokens import TokenClaims, TokenError, verify_token

#: The service's own pages use no script and no third-party asset.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'"
)
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    "https://fastapi.tiangolo.com; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        is_docs = request.url.path in ("/docs", "/redoc")
        headers.setdefault("Content-Security-Policy", _DOCS_CSP if is_docs else CONTENT_SECURITY_POLICY)
        if request.url.path.startswith(("/api/", "/freelancer")):
            headers["Cache-Control"] = "no-store"
        return response


def bearer_claims(request: Request) -> TokenClaims:
    """The verified claims of ``Authorization: Bearer <JWT>`` (TokenError → 401)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("A bearer token is required.")
    settings = request.app.state.context.settings
    return verify_token(token.strip(), secret=settings.jwt_secret.get_secret_value())
