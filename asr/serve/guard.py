"""What every response of `asr serve` carries, and which requests it answers at all.

Bound to a loopback address, the server answers only requests whose Host is local: a page elsewhere
cannot reach it through DNS rebinding. A browser request from another origin (its Origin header) is
refused unless that origin was allowed with --cors-origin, so a page elsewhere cannot make the server work
even when it cannot read the answer. Every response gets a Content-Security-Policy that lets the page run
only the package's own scripts and styles.
"""

import ipaddress
from urllib.parse import urlsplit

from asr.serve.openai_api import APIError

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def is_loopback(host: str) -> bool:
    """'localhost', 127.x.x.x, ::1 (a host name without port or brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hostname(netloc: str) -> str | None:
    """'[::1]:8000' -> '::1', 'localhost:80' -> 'localhost'; None when malformed."""
    try:
        return urlsplit(f"//{netloc}").hostname
    except ValueError:
        return None


def netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


class Guard:
    """Pure ASGI middleware (no buffering of bodies)."""

    def __init__(self, app, loopback_only: bool, cors_origins=()):
        self.app, self.loopback_only, self.cors_origins = app, loopback_only, set(cors_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin", b"").decode("latin-1")
        if self.loopback_only and not is_loopback(hostname(host) or ""):
            refusal = APIError(
                400,
                f"Host {host!r} refused: this server is bound to a loopback address and answers local requests only",
                code="invalid_host",
            )
            return await refusal.response()(scope, receive, send)
        if origin and origin not in self.cors_origins and netloc(origin) != host:
            refusal = APIError(
                403, f"Origin {origin!r} refused: allow it with asr serve --cors-origin {origin}", code="invalid_origin"
            )
            return await refusal.response()(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)
