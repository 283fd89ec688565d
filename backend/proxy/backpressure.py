"""Request-body backpressure: a streamed upload is read from the client only as fast as it is consumed.

Quart's ASGI layer moves every received chunk into the request body's buffer at once, so a client that
uploads faster than the proxy can pass the bytes on to TVHeadend would fill memory. With these two
classes, a body that is being iterated (`async for chunk in request.body`) holds at most HIGH_WATER
bytes: the connection stops taking messages from the server until the consumer catches up, the server's
queue fills and TCP flow control slows the client down. Bodies read whole (`await request.get_data()`)
are unaffected.
"""

from __future__ import annotations

import asyncio

from hypercorn.typing import ASGIReceiveCallable
from quart import Quart, Request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers.request import Body

#: Bytes an iterated body may buffer before the client is made to wait.
HIGH_WATER = 1024 * 1024


class BoundedBody(Body):
    """A request body that, once iterated, asks the connection to wait while its buffer is full."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._streaming = False
        self._room = asyncio.Event()
        self._room.set()

    def __aiter__(self) -> BoundedBody:
        self._streaming = True
        return self

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        finally:
            self._room.set()

    def append(self, data: bytes) -> None:
        super().append(data)
        if self._streaming and len(self._data) >= HIGH_WATER:
            self._room.clear()

    async def wait_for_room(self) -> None:
        await self._room.wait()


class BackpressureHTTPConnection(ASGIHTTPConnection):
    """Quart's HTTP connection, but it receives the next body message only when the body has room."""

    async def handle_messages(self, request: Request, receive: ASGIReceiveCallable) -> None:
        body = request.body
        while True:
            if isinstance(body, BoundedBody):
                await body.wait_for_room()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                return


def install(app: Quart) -> None:
    """Use the bounded body and the backpressure connection for every HTTP request of `app`."""
    app.request_class.body_class = BoundedBody
    app.asgi_http_class = BackpressureHTTPConnection
