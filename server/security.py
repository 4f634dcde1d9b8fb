"""Security headers on every response, and the bearer-token dependency."""

from __future__ import annotations

from fastapi import Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lib.tokens import TokenClaims, TokenError, verify_token
from server.blocking import run_blocking

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


#: The API the platform's frontend calls from its own origin (the webhooks, the OAuth callback
#: and the service's own pages are never fetched cross-origin).
CORS_PREFIXES = ("/api/v1/freelancer/", "/api/v1/admin/")
CORS_METHODS = ["GET", "POST", "DELETE"]
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
CORS_MAX_AGE = 600


class ApiCORSMiddleware:
    """CORS for the configured frontend origin(s) only, on the API paths only.

    Starlette's ``CORSMiddleware`` does the work: a preflight from an allowed origin is
    answered (200, the methods and headers the frontend uses); from any other origin it is a
    400 without ``Access-Control-Allow-Origin``, and other origins' requests never get that
    header, so their browsers refuse to hand them the response. ``*`` is never configured
    (``lib.settings``); credentials are allowed only with ``CORS_ALLOW_CREDENTIALS`` (the
    guide's frontend sends a bearer token, no cookie).
    """

    def __init__(self, app: ASGIApp, *, origins: list[str], allow_credentials: bool) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=CORS_METHODS,
                                   allow_headers=CORS_HEADERS, allow_credentials=allow_credentials,
                                   expose_headers=["Retry-After"], max_age=CORS_MAX_AGE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CORS_PREFIXES):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def bearer_claims(request: Request) -> TokenClaims:
    """The verified claims of ``Authorization: Bearer <JWT>`` (TokenError → 401).

    The companion's own tokens, or the platform's when configured (``lib.platform_tokens``):
    a token claiming the platform's issuer is verified only as the platform's.

    ``async``: verifying a JWT is a few microseconds of CPU and no I/O, cheaper on the event
    loop than the threadpool hop a plain ``def`` dependency costs. Only fetching the platform's
    keys is I/O: it runs in the worker threads.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise TokenError("A bearer token is required.")
    context = request.app.state.context
    platform = context.platform_tokens
    if platform is not None and platform.claims_issuer(token):
        if platform.needs_keys(token):
            await run_blocking(platform.load_keys, token)
        return platform.verify(token)
    claims = verify_token(token, secret=context.settings.jwt_secret.get_secret_value())
    if claims.link_id is not None:
        # An outreach email's single-use link opens the payment settings once; as a bearer
        # token it would work again and again until it expires.
        raise TokenError("A single-use link is not an API token.")
    return claims
