"""What every request passes first (an ASGI middleware): the API key, and the metrics.

With an API key set, every route but ``/health`` needs ``Authorization: Bearer KEY`` (compared
in constant time); anything else is a 401 in OpenAI's error shape. A ``Content-Length`` over
the body limit is a 413 before the body is read (the routes also count the bytes they read).
Each request's route, status and time to its last byte go to :class:`Metrics`.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tunelab.serving.metrics import Metrics
from tunelab.serving.schemas import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROUTES = (
    "/health",
    "/metrics",
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/classify",
)
OPEN = ("/health",)


class Gate:
    """Authentication, the body-size check and request metrics around the app."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body: int, metrics: Metrics) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        status = [500]

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        start = time.monotonic()
        self.metrics.inflight += 1
        try:
            problem = self._refuse(scope, path)
            if problem is not None:
                await _respond(tracked, *problem)
            else:
                await self.app(scope, receive, tracked)
        finally:
            self.metrics.inflight -= 1
            self.metrics.request(route, status[0], time.monotonic() - start)

    def _refuse(self, scope: Scope, path: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        headers = dict(scope.get("headers") or [])
        if self.key is not None and path not in OPEN:
            given = headers.get(b"authorization", b"")
            if not (given.startswith(b"Bearer ") and hmac.compare_digest(given[7:], self.key)):
                body = error_body(
                    "missing or wrong API key: send Authorization: Bearer KEY",
                    param=None,
                    code="invalid_api_key",
                )
                return 401, body, {"www-authenticate": "Bearer"}
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return 400, error_body("Content-Length is not a number"), {}
            if int(length) > self.max_body:
                message = (
                    f"request body of {int(length)} bytes is over the {self.max_body}-byte limit"
                )
                return 413, error_body(message, code="body_too_large"), {}
        return None


async def _respond(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
