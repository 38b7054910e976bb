"""The documentation (/docs, /redoc, /openapi.json) behind any valid API key, unless made public.

FastAPI serves these pages itself, outside any router, so they are guarded here, in front of it."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.auth import Forbidden, Keyring, Unauthenticated, header
from app.api.errors import reply_for

DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class DocsGate:
    def __init__(self, app: ASGIApp, keyring: Keyring) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in DOC_PATHS:
            try:
                self.keyring.authenticate(header(scope["headers"], b"authorization"))
            except (Unauthenticated, Forbidden) as refused:
                reply = reply_for(refused)
                assert reply is not None
                await reply.send(send)
                return
        await self.app(scope, receive, send)
