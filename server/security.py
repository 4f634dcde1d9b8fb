"""Security headers on every response, and the bearer-token dependency."""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


_BASELINE = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_PAGE_HEADERS = (*_BASELINE, (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
_DOCS_HEADERS = (*_BASELINE, (b"content-security-policy", _DOCS_CSP.encode()))
_NO_STORE = (b"cache-control", b"no-store")


def headers_for(path: str) -> list[tuple[bytes, bytes]]:
    """The headers a response to ``path`` gets (for responses built outside the middleware)."""
    defaults = _DOCS_HEADERS if path in ("/docs", "/redoc") else _PAGE_HEADERS
    return [*defaults, _NO_STORE] if path.startswith(("/api/", "/freelancer")) else [*defaults]


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response the app sends, whatever produced it.

    A pure ASGI middleware: it edits the ``http.response.start`` message on its way out, so
    a response costs one list scan. (Starlette's ``BaseHTTPMiddleware`` ran every request in
    a task group with memory streams in between: most of a small endpoint's time.) A header
    the response already set is kept, except ``Cache-Control`` on the API and the freelancer
    pages, which is always ``no-store``: nothing there may sit in a shared cache.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        defaults = _DOCS_HEADERS if path in ("/docs", "/redoc") else _PAGE_HEADERS
        no_store = path.startswith(("/api/", "/freelancer"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(name, value) for name, value in message.get("headers", ())
                           if not (no_store and name.lower() == b"cache-control")]
                present = {name.lower() for name, _ in headers}
                headers += [header for header in defaults if header[0] not in present]
                if no_store:
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def bearer_claims(request: Request) -> TokenClaims:
    """The verified claims of ``Authorization: Bearer <JWT>`` (TokenError → 401).

    ``async``: verifying an HMAC-signed JWT is a few microseconds of CPU and no I/O, cheaper
    on the event loop than the threadpool hop a plain ``def`` dependency costs.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("A bearer token is required.")
    settings = request.app.state.context.settings
    return verify_token(token.strip(), secret=settings.jwt_secret.get_secret_value())
