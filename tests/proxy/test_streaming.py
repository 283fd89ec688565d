"""Streaming through /tic-tvh/: endless MPEG-TS, long polls, big downloads and uploads, client disconnects."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakes.tvheadend import TS_PACKET_SIZE, FakeTvheadend
from tests.proxy.conftest import BLOCK, Browser, EchoUpstream, PeakRss, TicServer, seed, start_tic

pytestmark = pytest.mark.asyncio(loop_scope="module")

MB = 1024 * 1024


async def until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_endless_stream_is_relayed_and_freed_when_the_client_leaves(
    tic: TicServer, proxied: Browser, tvh: FakeTvheadend
) -> None:
    seeded = seed(tvh)
    await proxied.settle()
    before = set(tvh._runner.server.connections)  # type: ignore[union-attr]
    # Quart cuts responses after RESPONSE_TIMEOUT (60 s by default); streams must be exempt.
    tic.app.config["RESPONSE_TIMEOUT"] = 0.3
    resp = await proxied.http.get(proxied.url(f"/tic-tvh/stream/channel/{seeded.channel}?profile=pass"))
    try:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "video/mp2t"
        received = b""
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            received += await resp.content.readany()
        assert len(received) > 200 * TS_PACKET_SIZE
        assert received[0] == 0x47 and received[TS_PACKET_SIZE] == 0x47
        assert tvh.open_streams == 1
        streaming = set(tvh._runner.server.connections) - before  # type: ignore[union-attr]
        assert streaming
    finally:
        tic.app.config["RESPONSE_TIMEOUT"] = 60
        resp.close()
    await until(lambda: tvh.open_streams == 0)
    # The upstream connection of the stream is closed, not parked in a pool.
    await until(lambda: not streaming & set(tvh._runner.server.connections))  # type: ignore[union-attr]


async def test_download_streams_with_backpressure_and_flat_memory(
    admin_browser: Browser, echo: EchoUpstream
) -> None:
    await admin_browser.configure_tvh(echo.url)
    size = 128 * MB
    digest = hashlib.sha256()
    received = 0
    async with PeakRss() as rss:
        async with admin_browser.request("GET", f"/tic-tvh/bytes/{size}") as resp:
            assert resp.status == 200 and resp.headers["Content-Length"] == str(size)
            # A slow reader first: TVHeadend must not be read ahead of the client.
            for _ in range(20):
                chunk = await resp.content.read(64 * 1024)
                received += len(chunk)
                digest.update(chunk)
                await asyncio.sleep(0.02)
            assert echo.bytes_sent < received + 24 * MB, (echo.bytes_sent, received)
            async for chunk in resp.content.iter_chunked(MB):
                received += len(chunk)
                digest.update(chunk)
    assert received == size
    assert digest.hexdigest() == expected_sha256(size)
    assert rss.growth < 64 * MB, f"memory grew by {rss.growth / MB:.0f} MB while relaying {size / MB:.0f} MB"


async def test_download_client_disconnect_frees_the_upstream(
    admin_browser: Browser, echo: EchoUpstream
) -> None:
    await admin_browser.configure_tvh(echo.url)
    resp = await admin_browser.http.get(admin_browser.url(f"/tic-tvh/bytes/{1024 * MB}"))
    assert resp.status == 200
    await resp.content.read(MB)
    assert echo.open_downloads == 1
    resp.close()
    await until(lambda: echo.open_downloads == 0)


class Generated:
    """An upload body made on the fly, counting what the client has produced so far."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.produced = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.produced < self.size:
            chunk = BLOCK[: min(len(BLOCK), self.size - self.produced)]
            self.produced += len(chunk)
            yield chunk


def expected_sha256(size: int) -> str:
    expected = hashlib.sha256()
    for _ in range(size // len(BLOCK)):
        expected.update(BLOCK)
    return expected.hexdigest()


async def _upload(browser: Browser, body: Generated) -> dict[str, object]:
    async with browser.request(
        "POST",
        "/tic-tvh/sink",
        data=body.__aiter__(),
        headers={"Content-Length": str(body.size), "Content-Type": "application/octet-stream"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        result: dict[str, object] = await resp.json()
        return result


async def test_big_upload_is_streamed_with_flat_memory(admin_browser: Browser, echo: EchoUpstream) -> None:
    await admin_browser.configure_tvh(echo.url)
    body = Generated(128 * MB)
    async with PeakRss() as rss:
        result = await _upload(admin_browser, body)
    assert result == {"size": body.size, "sha256": expected_sha256(body.size)}
    upload = echo.uploads[-1]
    assert upload.content_length == str(body.size) and not upload.chunked
    assert rss.growth < 48 * MB, (
        f"memory grew by {rss.growth / MB:.0f} MB while relaying {body.size / MB:.0f} MB"
    )


async def test_a_stalled_upstream_slows_the_uploader_down(admin_browser: Browser, echo: EchoUpstream) -> None:
    await admin_browser.configure_tvh(echo.url)
    echo.sink_stall_after, echo.sink_stall = MB, 0.6
    body = Generated(96 * MB)
    async with PeakRss() as rss:
        upload = asyncio.ensure_future(_upload(admin_browser, body))
        await until(lambda: echo.sink_received >= MB)
        await asyncio.sleep(0.4)
        # Without backpressure TIC would have taken in the whole body by now and held it in memory.
        ahead = body.produced - echo.sink_received
        assert ahead < 40 * MB, f"the client got {ahead / MB:.0f} MB ahead of a stalled TVHeadend"
        result = await upload
    assert result == {"size": body.size, "sha256": expected_sha256(body.size)}
    assert rss.growth < 48 * MB, f"memory grew by {rss.growth / MB:.0f} MB"


async def test_upload_through_digest_primes_a_fresh_nonce(proxied: Browser, tvh: FakeTvheadend) -> None:
    # A body too big to resend must not meet a 401: TIC learns a nonce first with a bodiless request.
    form = b"conf=" + b"%7B%22name%22%3A%22big%22%7D" + b"&pad=" + b"x" * (256 * 1024)
    async with proxied.request(
        "POST",
        "/tic-tvh/api/channeltag/create",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.status == 200, await resp.text()
    assert [n.fields["name"] for n in tvh.state.of("channeltag")] == ["big"]


async def test_comet_long_poll(admin_browser: Browser) -> None:
    async with FakeTvheadend(comet_poll_timeout=1.0) as fake:
        await admin_browser.configure_tvh(fake.url)
        async with admin_browser.request("GET", "/tic-tvh/comet/poll") as resp:
            boxid = (await resp.json())["boxid"]
        started = time.monotonic()
        async with admin_browser.request("POST", "/tic-tvh/comet/poll", data={"boxid": boxid}) as resp:
            assert resp.status == 200
            assert (await resp.json())["messages"] == []
        assert time.monotonic() - started >= 0.9
        poll = asyncio.ensure_future(
            admin_browser.request("POST", "/tic-tvh/comet/poll", data={"boxid": boxid}).__aenter__()
        )
        await asyncio.sleep(0.3)
        fake.notify("logmessage", logtxt="hello through TIC")
        resp = await poll
        try:
            messages = (await resp.json())["messages"]
        finally:
            resp.release()
        assert messages[0]["logtxt"] == "hello through TIC"


async def test_uploads_over_the_limit_are_refused(
    tic: TicServer, database_url: str, admin_browser: Browser, echo: EchoUpstream
) -> None:
    await admin_browser.configure_tvh(echo.url)
    # A second TIC on the same data (so the admin's session works) with a 1 MiB upload limit.
    small, close = await start_tic(tic.svc.config.data_dir.parent, database_url, max_upload_bytes=MB)
    try:
        cookies = {c.key: c.value for c in admin_browser.http.cookie_jar}
        async with aiohttp.ClientSession(cookies=cookies) as http:
            headers = {"Origin": small.base, "Content-Type": "application/octet-stream"}
            # Announced as too big: refused before anything is sent to TVHeadend.
            async with http.post(small.base + "/tic-tvh/sink", data=b"x" * (2 * MB), headers=headers) as resp:
                assert resp.status == 413
            # Chunked, so only counting tells: cut off once the limit is passed.
            sinks = len(echo.uploads)
            async with http.post(
                small.base + "/tic-tvh/sink", data=Generated(8 * MB).__aiter__(), headers=headers
            ) as resp:
                assert resp.status == 413
                assert "larger than" in await resp.text()
            assert all(u.size < 8 * MB for u in echo.uploads[sinks:])
    finally:
        await close()
