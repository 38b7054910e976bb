"""Key checks in front of FastAPI, for paths whose routes cannot check the key first themselves.

The documentation (/docs, /redoc, /openapi.json, the pages' assets) is outside the routers' key checks:
it needs any valid key, unless made public. The admin routes check the admin scope in a dependency, but
FastAPI reads and parses a route's JSON body before it solves dependencies, so a caller without a key
would learn about their body (400, 422) before hearing 401: the scope is checked here first."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.auth import Forbidden, Keyring, Unauthenticated, header
from app.api.docs import ASSETS, OAUTH2_REDIRECT
from app.api.errors import reply_for

DOC_PATHS = frozenset({"/docs", OAUTH2_REDIRECT, "/redoc", "/openapi.json"})
ADMIN_PREFIX = "/admin/"
ADMIN_SCOPE = frozenset({"admin"})


def is_docs(path: str) -> bool:
    return path in DOC_PATHS or path.startswith(f"{ASSETS}/")


class KeyGate:
    def __init__(self, app: ASGIApp, keyring: Keyring, docs_public: bool) -> None:
        self.app = app
        self.keyring = keyring
        self.docs_public = docs_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            needs: frozenset[str] | None = None
            if path.startswith(ADMIN_PREFIX):
                needs = ADMIN_SCOPE
            elif not self.docs_public and is_docs(path):
                needs = frozenset()  # any valid key
            if needs is not None:
                try:
                    caller = self.keyring.authenticate(header(scope["headers"], b"authorization"))
                    if needs:
                        self.keyring.authorize(caller, needs)
                except (Unauthenticated, Forbidden) as refused:
                    reply = reply_for(refused)
                    assert reply is not None
                    await reply.send(send)
                    return
        await self.app(scope, receive, send)
