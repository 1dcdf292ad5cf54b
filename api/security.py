"""Security headers on every response: a CSP without inline script, framing only by the EHR."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = ("/docs", "/redoc")
# FastAPI's /docs and /redoc load their scripts from a CDN and start them inline: allowed there
# only, and only when ERAS_API_DOCS turns them on.
DOCS_SOURCES = "https://cdn.jsdelivr.net 'unsafe-inline'"


def content_security_policy(frame_origin: str | None, *, docs: bool = False) -> str:
    """The page policy: own scripts, styles and images only; framing by `frame_origin` alone."""
    extra = f" {DOCS_SOURCES}" if docs else ""
    ancestors = frame_origin or "'none'"
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self'{extra}",
        f"style-src 'self'{extra}",
        "img-src 'self' data:" + (" https://fastapi.tiangolo.com" if docs else ""),
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {ancestors}",
    ))


def security_headers(frame_origin: str | None, *, docs: bool = False) -> list[tuple[bytes, bytes]]:
    """The headers every response carries. With an EHR origin, `frame-ancestors` alone decides
    (X-Frame-Options cannot name an origin); without one, nothing may frame the pages."""
    headers = {
        "Content-Security-Policy": content_security_policy(frame_origin, docs=docs),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if frame_origin is None:
        headers["X-Frame-Options"] = "DENY"
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class SecurityHeaders:
    """A pure ASGI middleware (no response buffering: the intake's hot path stays as it is)."""

    def __init__(self, app: ASGIApp, *, frame_origin: str | None, docs: bool) -> None:
        self.app = app
        self.plain = security_headers(frame_origin)
        self.docs = security_headers(frame_origin, docs=True) if docs else self.plain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = self.docs if scope["path"] in DOCS_PATHS else self.plain

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _merged(message.get("headers", []), added)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _merged(
    headers: Iterable[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    names = {name for name, _ in added}
    return [(n, v) for n, v in headers if n.lower() not in names] + added
