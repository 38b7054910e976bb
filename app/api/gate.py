"""The documentation (/docs, /redoc, /openapi.json, the pages' assets) behind any valid API key, unless
made public.

These pages are outside the routers' key checks, so they are guarded here, in front of FastAPI."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.auth import Forbidden, Keyring, Unauthenticated, header
from app.api.docs import ASSETS, OAUTH2_REDIRECT
from app.api.errors import reply_for

DOC_PATHS = frozenset({"/docs", OAUTH2_REDIRECT, "/redoc", "/openapi.json"})


def is_docs(path: str) -> bool:
    return path in DOC_PATHS or path.startswith(f"{ASSETS}/")


class DocsGate:
    def __init__(self, app: ASGIApp, keyring: Keyring) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_docs(scope["path"]):
            try:
                self.keyring.authenticate(header(scope["headers"], b"authorization"))
            except (Unauthenticated, Forbidden) as refused:
                reply = reply_for(refused)
                assert reply is not None
                await reply.send(send)
                return
        await self.app(scope, receive, send)
