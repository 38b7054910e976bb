"""The HTTP ceiling: a raw ASGI app answering a fixed JSON body, on the same uvicorn as the services.

Run: python -m bench.peers.raw_asgi PORT
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

BODY = b'{"model_version":"fixed","results":[{"user_id":"u000001","churn_probability":0.5}]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole request body, as any real handler must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
        log_level="warning", access_log=False, lifespan="off",
    )  # fmt: skip
