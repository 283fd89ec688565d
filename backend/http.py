"""App-owned aiohttp sessions: one for API calls (bounded timeouts), one for streams and downloads."""

from __future__ import annotations

import aiohttp

from backend import __version__


class HttpSessions:
    """Created when the app starts serving (they need the running loop) and closed when it stops."""

    def __init__(self) -> None:
        self._api: aiohttp.ClientSession | None = None
        self._stream: aiohttp.ClientSession | None = None

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

    async def close(self) -> None:
        for session in (self._api, self._stream):
            if session is not None and not session.closed:
                await session.close()
        self._api = self._stream = None
