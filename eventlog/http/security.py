"""Browser security headers on every response (the Durable Streams protocol asks for them on
its streams; the run API is as exposed to a browser navigating to a URL).

``X-Content-Type-Options: nosniff`` keeps a browser from running a stream's bytes as another
type than the one declared, and ``Cross-Origin-Resource-Policy: cross-origin`` states that
``fetch`` from other origins may read responses (what CORS then governs) while blocking
speculative cross-origin embedding (CORB)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cross-origin-resource-policy", b"cross-origin")]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
