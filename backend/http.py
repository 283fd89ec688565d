"""App-owned aiohttp sessions: API calls (bounded timeouts), streams and downloads, and the TVHeadend proxy."""

from __future__ import annotations

import aiohttp

from backend import __version__


class HttpSessions:
    """Created when the app starts serving (they need the running loop) and closed when it stops."""

    def __init__(self) -> None:
        self._api: aiohttp.ClientSession | None = None
        self._stream: aiohttp.ClientSession | None = None
        self._proxy: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        headers = {"User-Agent": f"TIC/{__version__}"}
        self._api = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=30),
            headers=headers,
            connector=aiohttp.TCPConnector(limit=50, limit_per_host=10),
        )
        # Streams and downloads: no total timeout, raw bytes (compression is sniffed by the consumer).
        self._stream = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=None),
            headers=headers,
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=50),
        )
        # The /tic-tvh/ proxy: like `stream`, but without a cookie jar, since the cookies TVHeadend sets
        # belong to the browser they are relayed to and must never be sent on behalf of other
        # requests. All of its connections go to the one TVHeadend (each stream and websocket holds one),
        # so the per-host cap is the total cap.
        self._proxy = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=None),
            headers=headers,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=0),
        )

    @property
    def api(self) -> aiohttp.ClientSession:
        if self._api is None:
            raise RuntimeError("HTTP sessions are not started")
        return self._api

    @property
    def stream(self) -> aiohttp.ClientSession:
        if self._stream is None:
            raise RuntimeError("HTTP sessions are not started")
        return self._stream

    @property
    def proxy(self) -> aiohttp.ClientSession:
        if self._proxy is None:
            raise RuntimeError("HTTP sessions are not started")
        return self._proxy

    async def close(self) -> None:
        for session in (self._api, self._stream, self._proxy):
            if session is not None and not session.closed:
                await session.close()
        self._api = self._stream = self._proxy = None
