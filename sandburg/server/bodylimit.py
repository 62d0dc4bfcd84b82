"""A size limit for JSON request bodies: a request to create a sandbox with a 100 MiB label must not make the server
hold and store it (found by tests/security/test_api.py). File uploads, build contexts and image archives are not
JSON: their routes stream them to disk with limits of their own.

Pure ASGI: a declared Content-Length over the limit is answered 413 `PAYLOAD_TOO_LARGE` before anything is read; a
chunked body is read here, up to the limit, and answered the same way once it passes it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._codes import ErrorCode
from .errors import error_response

MAX_JSON_BYTES = 16 << 20


class JsonBodyLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype not in (b"", b"application/json"):
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        # read the body here (at most the limit: JSON is parsed whole anyway), then hand it on in one piece
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, None, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            ErrorCode.PAYLOAD_TOO_LARGE, f"a JSON body may have at most {self.limit >> 20} MiB"
        )
        await response(scope, receive, send)


def _replay(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A receive() that gives the buffered body once, then whatever the client sends next (its disconnect, which
    streaming responses wait for: it must come from the client, not from here)."""
    pending: list[Message] = (
        [{"type": "http.request", "body": b"".join(chunks), "more_body": False}] if chunks else []
    )
    if last is not None:
        pending.append(last)

    async def receive_again() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return receive_again
