"""Request limits shared by the canary router and the model server: body size and JSON nesting.

A request body larger than :data:`MAX_BODY_BYTES` is refused with 413 before
it is read: at once when its ``Content-Length`` says so, and as soon as a
chunked body passes the limit otherwise. The largest valid body (``/score``
with 10,000 ids of 256 characters) is about 2.6 MB. JSON nested deeper than
the decoder's recursion limit is a client error (422), never a
``RecursionError`` and a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class NestingError(ValueError):
    """The JSON document is nested too deeply to decode."""


def loads(body: bytes | str) -> Any:
    """``json.loads``, with excessive nesting as a :class:`NestingError` (a ``ValueError``)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise NestingError("the JSON body is nested too deeply") from None


def too_large_message(length: int | None = None) -> str:
    size = f"{length} bytes" if length is not None else "the body"
    return f"{size} is over the limit of {MAX_BODY_BYTES} bytes per request"


def declared_length(value: str | None) -> int | None:
    """The ``Content-Length`` header as a number (None when absent or not a number)."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class BodyLimit:
    """ASGI middleware: 413 for a body over :data:`MAX_BODY_BYTES`, without reading it all.

    A declared length over the limit is refused before one byte of the body is
    read; a body without one (chunked) is buffered up to the limit and refused
    the moment it passes it. Bodies within the limit reach the app unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        length = declared_length(headers.get(b"content-length", b"").decode("latin-1") or None)
        if length is not None:
            if length > self.max_bytes:
                await self._refuse(scope, send, length)
                return
            await self.app(scope, receive, send)  # the server holds the body to its length
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, send, None)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def buffered() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, buffered, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, length: int | None) -> None:
        message = too_large_message(length)
        log.warning("%s %s: 413 %s", scope.get("method"), scope.get("path"), message)
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
