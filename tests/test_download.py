"""Tests for backend.download against the fake upstream provider: faults, formats, limits and loop health."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import json
import logging
import lzma
import socket
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend.download import (
    Download,
    download_to_file,
    looks_like_html,
    open_decompressed,
    redact_url,
    sniff_compression,
    verify_decompressible,
)
from backend.errors import AppError, Invalid, PayloadTooLarge, UpstreamError, UpstreamUnavailable
from tests.fakes.upstream import LOGIN_PAGE, FakeProvider, corpus_path

log = logging.getLogger(__name__)

MiB = 1024 * 1024
PLAYLIST = b'#EXTM3U\n#EXTINF:-1 tvg-id="one.uk" group-title="News",One\nhttp://example.invalid/1.ts\n' * 200

# Credentials that must never appear in an error message, its traceback or a log line.
USERINFO = "alice:hunter2-basic"
XTREAM_USER = "xtuser77"
XTREAM_PASS = "xtpass-Secret9"
TOKEN = "tok-0f1e2d3c"
# The Basic auth header built from the userinfo must not leak either.
SECRETS = (
    "alice",
    "hunter2-basic",
    base64.b64encode(USERINFO.encode()).decode(),
    XTREAM_USER,
    XTREAM_PASS,
    TOKEN,
)
SECRET_PATH = f"/live/{XTREAM_USER}/{XTREAM_PASS}/123.ts"
SECRET_QUERY = f"?username={XTREAM_USER}&password={XTREAM_PASS}&token={TOKEN}"


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(max_stall=10) as p:
        yield p


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="backend.download"):
        yield caplog


async def fetch(session: aiohttp.ClientSession, url: str, dest: Path, **kwargs: Any) -> Download:
    kwargs.setdefault("max_bytes", 10 * MiB)
    kwargs.setdefault("connect_timeout", 2)
    kwargs.setdefault("read_timeout", 0.5)
    return await download_to_file(session, url, dest, **kwargs)


def files_in(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


def assert_no_secrets(err: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    text = "".join(traceback.format_exception(err)) + str(err) + caplog.text
    if isinstance(err, AppError):
        text += err.message + json.dumps(err.to_dict())
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into: {text}"


# -- faults map to stable codes, clear messages and no leaked credentials -------------------------

FAULTS: list[tuple[str, dict[str, Any], type[AppError], str, bool, str]] = [
    ("status", {"status": 401}, UpstreamError, "UPSTREAM_AUTH", False, "refused the credentials (HTTP 401)"),
    ("status", {"status": 403}, UpstreamError, "UPSTREAM_AUTH", False, "refused the credentials (HTTP 403)"),
    ("status", {"status": 404}, UpstreamError, "UPSTREAM_NOT_FOUND", False, "HTTP 404"),
    ("status", {"status": 418}, UpstreamError, "UPSTREAM_HTTP_ERROR", False, "HTTP 418"),
    ("status", {"status": 429}, UpstreamError, "UPSTREAM_HTTP_ERROR", True, "HTTP 429"),
    ("status", {"status": 500}, UpstreamError, "UPSTREAM_SERVER_ERROR", True, "HTTP 500"),
    ("status", {"status": 503}, UpstreamError, "UPSTREAM_SERVER_ERROR", True, "HTTP 503"),
    ("status", {"status": 204}, Invalid, "DOWNLOAD_EMPTY", False, "empty file"),
    ("status", {"status": 200, "body": ""}, Invalid, "DOWNLOAD_EMPTY", False, "empty file"),
    ("timeout", {"stage": "body"}, UpstreamUnavailable, "UPSTREAM_TIMEOUT", True, "stalled"),
    ("timeout", {"stage": "headers"}, UpstreamUnavailable, "UPSTREAM_TIMEOUT", True, "No answer"),
    ("short_body", {"declared": 200_000, "send": 5_000}, UpstreamError, "DOWNLOAD_INCOMPLETE", True, "ended"),
    ("reset", {"declared": 4 * MiB, "after": 64 * 1024}, UpstreamError, "DOWNLOAD_INCOMPLETE", True, "ended"),
    ("huge", {"size": 64 * MiB}, PayloadTooLarge, "DOWNLOAD_TOO_LARGE", False, "over the limit of 10.0 MiB"),
    (
        "redirect",
        {"to": SECRET_PATH + SECRET_QUERY},
        UpstreamError,
        "UPSTREAM_TOO_MANY_REDIRECTS",
        False,
        "loop",
    ),
]


@pytest.mark.parametrize(
    ("kind", "opts", "exc_type", "code", "transient", "phrase"),
    FAULTS,
    ids=[f"{f[0]}-{f[1].get('status', f[1].get('stage', ''))}" for f in FAULTS],
)
async def test_fault_maps_to_code_without_leaking_credentials(
    provider: FakeProvider,
    session: aiohttp.ClientSession,
    dest: Path,
    debug_logs: pytest.LogCaptureFixture,
    kind: str,
    opts: dict[str, Any],
    exc_type: type[AppError],
    code: str,
    transient: bool,
    phrase: str,
) -> None:
    provider.fault(SECRET_PATH, kind, **opts)
    url = provider.url(SECRET_PATH + SECRET_QUERY, userinfo=USERINFO)

    with pytest.raises(exc_type) as caught:
        await fetch(session, url, dest)

    err = caught.value
    assert err.code == code
    assert getattr(err, "transient", False) is transient
    assert phrase in err.message
    assert f"127.0.0.1:{provider.port}" in err.message, "the message should say which server failed"
    assert_no_secrets(err, debug_logs)
    assert files_in(dest) == [], "a failed download must not leave a file behind"


async def test_connection_refused_is_unreachable(
    session: aiohttp.ClientSession, dest: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://{USERINFO}@127.0.0.1:{port}{SECRET_PATH}{SECRET_QUERY}"

    with pytest.raises(UpstreamUnavailable) as caught:
        await fetch(session, url, dest)

    assert caught.value.code == "UPSTREAM_UNREACHABLE"
    assert caught.value.transient is True
    assert "refused" in caught.value.message
    assert_no_secrets(caught.value, debug_logs)


async def test_connect_timeout_is_timeout(
    session: aiohttp.ClientSession, dest: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    # A listener that never accepts, with its backlog filled, drops further SYNs: connect hangs.
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        url = f"http://{USERINFO}@127.0.0.1:{port}{SECRET_PATH}{SECRET_QUERY}"

        with pytest.raises(UpstreamUnavailable) as caught:
            await fetch(session, url, dest, connect_timeout=0.3)

    assert caught.value.code == "UPSTREAM_TIMEOUT"
    assert "connect timeout 0.3 s" in caught.value.message
    assert_no_secrets(caught.value, debug_logs)


async def test_connection_closed_before_answering_is_unavailable(
    session: aiohttp.ClientSession, dest: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetch(session, f"http://{USERINFO}@127.0.0.1:{port}{SECRET_PATH}{SECRET_QUERY}", dest)

    assert caught.value.code == "UPSTREAM_DISCONNECTED"
    assert caught.value.transient is True
    assert_no_secrets(caught.value, debug_logs)


async def test_unknown_content_encoding_is_refused(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault(
        "/list.m3u", "status", status=200, body="not really brotli", headers={"Content-Encoding": "br"}
    )

    with pytest.raises(UpstreamError) as caught:
        await fetch(session, provider.url("/list.m3u"), dest)

    assert caught.value.code == "UPSTREAM_ENCODING"
    assert "'br'" in caught.value.message
    assert files_in(dest) == []


@pytest.mark.parametrize("url", ["ftp://example.invalid/list.m3u", "file:///etc/passwd", "list.m3u"])
async def test_only_http_urls_are_accepted(session: aiohttp.ClientSession, dest: Path, url: str) -> None:
    with pytest.raises(Invalid) as caught:
        await fetch(session, url, dest)
    assert caught.value.code == "URL_SCHEME"
    assert "http:// and https://" in caught.value.message


# -- content and compression -------------------------------------------------------------------


async def test_gzip_is_detected_by_magic_not_by_name(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    packed = gzip.compress(PLAYLIST)
    provider.add_file("/list.m3u", packed, content_type="audio/x-mpegurl")
    provider.add_file("/epg.xml.gz", PLAYLIST, content_type="application/gzip")

    gz = await fetch(session, provider.url("/list.m3u"), dest)
    plain = await fetch(session, provider.url("/epg.xml.gz"), dest)

    assert (gz.compression, gz.size, gz.sha256) == ("gzip", len(packed), hashlib.sha256(packed).hexdigest())
    assert gz.path.read_bytes() == packed, "the raw bytes are stored as received"
    assert gz.content_type == "audio/x-mpegurl"
    assert plain.compression is None
    with open_decompressed(gz.path) as a, open_decompressed(plain.path) as b:
        assert a.read() == PLAYLIST
        assert b.read() == PLAYLIST
    assert sorted(files_in(dest)) == sorted([gz.path, plain.path])
    assert not any(p.suffix == ".part" for p in files_in(dest))


async def test_xz_is_detected_and_verified(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.add_file("/guide", lzma.compress(PLAYLIST))

    result = await fetch(session, provider.url("/guide"), dest)

    assert result.compression == "xz"
    await verify_decompressible(result.path, result.compression)
    with open_decompressed(result.path) as f:
        assert f.read() == PLAYLIST


async def test_content_encoding_gzip_is_stored_raw_and_detected(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.add_file("/enc.m3u", PLAYLIST, content_type="audio/x-mpegurl", gzip_encoding=True)

    result = await fetch(session, provider.url("/enc.m3u"), dest)

    assert result.compression == "gzip"
    assert provider.requests[-1].headers["Accept-Encoding"] == "gzip"
    with open_decompressed(result.path) as f:
        assert f.read() == PLAYLIST
    async with aiohttp.ClientSession() as decoding:
        decoded = await fetch(decoding, provider.url("/enc.m3u"), dest)
    assert decoded.compression is None
    assert decoded.path.read_bytes() == PLAYLIST


async def test_corpus_file_streamed_with_content_encoding(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    source = provider.add_corpus_file("/epg.xml", "xmltv/dispatcharr__test_epg.xml", gzip_encoding=True)

    result = await fetch(session, provider.url("/epg.xml"), dest)

    assert result.compression == "gzip"
    await verify_decompressible(result.path, result.compression)
    with open_decompressed(result.path) as f:
        assert f.read() == source.read_bytes()


async def test_compressed_corpus_guide_downloads_intact(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    source = provider.add_corpus_file("/nz.xml.gz", "xmltv/i-mjh-nz__nz_epg.xml.gz")

    result = await fetch(session, provider.url("/nz.xml.gz"), dest)

    assert result.compression == "gzip"
    assert result.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    await verify_decompressible(result.path, result.compression)


async def test_generated_playlist_points_at_the_fake(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path, tmp_path: Path
) -> None:
    await provider.add_generated("/big.m3u", "m3u", tmp_path, entries=500, gzip_output=True)

    result = await fetch(session, provider.url("/big.m3u"), dest)

    assert result.compression == "gzip"
    with open_decompressed(result.path) as f:
        text = f.read().decode()
    assert text.startswith("#EXTM3U")
    assert text.count("#EXTINF") == 500
    assert f"http://127.0.0.1:{provider.port}/" in text


async def test_html_login_page_is_recognisable(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/list.m3u", "html_login")

    result = await fetch(session, provider.url("/list.m3u"), dest)

    assert result.content_type == "text/html"
    head = result.path.read_bytes()[:512]
    assert looks_like_html(head)
    assert looks_like_html(gzip.compress(LOGIN_PAGE)[:200]), "the head is decompressed before checking"
    assert not looks_like_html(PLAYLIST[:512])
    assert not looks_like_html(corpus_path("xmltv/dispatcharr__test_epg.xml").read_bytes()[:512])
    assert not looks_like_html(b'{"user_info": {"auth": 0}}')


def test_sniff_compression() -> None:
    assert sniff_compression(gzip.compress(b"x")) == "gzip"
    assert sniff_compression(lzma.compress(b"x")) == "xz"
    assert sniff_compression(b"#EXTM3U") is None
    assert sniff_compression(b"") is None


# -- redirects -----------------------------------------------------------------------------------


async def test_redirects_are_followed_up_to_the_limit(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.add_file("/list.m3u", PLAYLIST)
    for i in range(1, 6):
        provider.fault(f"/r{i}", "redirect", to=f"/r{i + 1}" if i < 5 else "/list.m3u")

    result = await fetch(session, provider.url("/r1"), dest, max_redirects=5)

    assert result.final_url == provider.url("/list.m3u")
    assert result.path.read_bytes() == PLAYLIST
    with pytest.raises(UpstreamError) as caught:
        await fetch(session, provider.url("/r1"), dest, max_redirects=4)
    assert caught.value.code == "UPSTREAM_TOO_MANY_REDIRECTS"


async def test_redirect_loop_is_detected(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/a", "redirect", to="/b")
    provider.fault("/b", "redirect", to="/a", status=301)

    with pytest.raises(UpstreamError) as caught:
        await fetch(session, provider.url("/a"), dest, max_redirects=3)

    assert caught.value.code == "UPSTREAM_TOO_MANY_REDIRECTS"
    assert "more than 3 times" in caught.value.message
    assert [r.path for r in provider.requests] == ["/a", "/b", "/a", "/b"]


async def test_no_redirects_allowed(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/a", "redirect", to="/list.m3u")

    with pytest.raises(UpstreamError) as caught:
        await fetch(session, provider.url("/a"), dest, max_redirects=0)

    assert caught.value.code == "UPSTREAM_TOO_MANY_REDIRECTS"


# -- size limits ---------------------------------------------------------------------------------


async def test_size_cap_by_content_length_fails_before_reading(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/huge.xml", "huge", size=512 * MiB)
    seen: list[int] = []

    with pytest.raises(PayloadTooLarge) as caught:
        await fetch(
            session,
            provider.url("/huge.xml"),
            dest,
            max_bytes=MiB,
            progress=lambda done, total: seen.append(done),
            limit_setting="the EPG size limit (Settings > Guides)",
        )

    assert caught.value.code == "DOWNLOAD_TOO_LARGE"
    assert "declares 512.0 MiB" in caught.value.message
    assert "1.0 MiB" in caught.value.message
    assert "raise the EPG size limit (Settings > Guides)" in caught.value.message
    assert seen == [], "no body byte should have been read"
    assert files_in(dest) == []


async def test_size_cap_by_streamed_bytes_removes_the_part_file(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/huge.m3u", "huge", size=512 * MiB, declared=None)
    seen: list[int] = []

    with pytest.raises(PayloadTooLarge) as caught:
        await fetch(
            session, provider.url("/huge.m3u"), dest, max_bytes=3 * MiB, progress=lambda d, t: seen.append(d)
        )

    assert caught.value.code == "DOWNLOAD_TOO_LARGE"
    assert dest.exists(), "the partial file was created, so its removal is what this test checks"
    assert files_in(dest) == []


async def test_one_byte_over_the_cap_is_rejected(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/over", "huge", size=2 * MiB + 1, declared=None)

    with pytest.raises(PayloadTooLarge):
        await fetch(session, provider.url("/over"), dest, max_bytes=2 * MiB)

    assert files_in(dest) == []


async def test_size_exactly_at_the_cap_is_accepted(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/exact", "huge", size=2 * MiB, declared=None)

    result = await fetch(session, provider.url("/exact"), dest, max_bytes=2 * MiB)

    assert result.size == 2 * MiB == result.path.stat().st_size


# -- progress, cancellation, headers -------------------------------------------------------------


async def test_progress_reports_increasing_values_at_a_bounded_rate(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/slow.m3u", "slow_trickle", total=24 * 1024, chunk=1024, interval=0.05)
    calls: list[tuple[int, int | None]] = []

    async def progress(done: int, total: int | None) -> None:
        calls.append((done, total))

    started = time.monotonic()
    result = await fetch(session, provider.url("/slow.m3u"), dest, progress=progress)
    elapsed = time.monotonic() - started

    values = [done for done, _ in calls]
    assert len(calls) >= 3
    assert values == sorted(set(values)), "progress values strictly increase"
    assert calls[-1] == (result.size, 24 * 1024)
    assert len(calls) <= elapsed * 4 + 2


async def test_cancellation_removes_the_part_file(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/slow.m3u", "slow_trickle", total=64 * 1024, chunk=1024, interval=0.1)
    started = asyncio.Event()

    def progress(done: int, total: int | None) -> None:
        started.set()

    task = asyncio.create_task(fetch(session, provider.url("/slow.m3u"), dest, progress=progress))
    await asyncio.wait_for(started.wait(), 5)
    assert [p.suffix for p in files_in(dest)] == [".part"]

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert files_in(dest) == []


async def test_user_agent_and_custom_headers_reach_the_provider(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.add_file("/list.m3u", PLAYLIST)

    await fetch(
        session,
        provider.url("/list.m3u"),
        dest,
        user_agent="TiviMate/4.7.0",
        headers={"Referer": "http://portal.example/", "X-Device-Id": "abc"},
    )

    method, path, headers = provider.requests[-1]
    assert (method, path) == ("GET", "/list.m3u")
    assert headers["User-Agent"] == "TiviMate/4.7.0"
    assert headers["Referer"] == "http://portal.example/"
    assert headers["X-Device-Id"] == "abc"


# -- verify_decompressible -----------------------------------------------------------------------


async def test_verify_catches_truncated_gzip_served_in_full(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.fault("/epg.xml.gz", "truncated_gzip")

    result = await fetch(session, provider.url("/epg.xml.gz"), dest)

    assert result.compression == "gzip", "the transfer itself completed and looks like gzip"
    with pytest.raises(Invalid) as caught:
        await verify_decompressible(result.path, result.compression)
    assert caught.value.code == "DOWNLOAD_TRUNCATED"
    assert "truncated" in caught.value.message


async def test_verify_catches_truncated_xz(tmp_path: Path) -> None:
    packed = lzma.compress(PLAYLIST * 20)
    path = tmp_path / "guide.xz"
    path.write_bytes(packed[: len(packed) // 2])

    with pytest.raises(Invalid) as caught:
        await verify_decompressible(path, sniff_compression(packed))

    assert caught.value.code == "DOWNLOAD_TRUNCATED"


async def test_verify_reports_corrupt_gzip(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(PLAYLIST))
    packed[-8] ^= 0xFF  # The CRC32 in the trailer no longer matches the content.
    path = tmp_path / "guide.gz"
    path.write_bytes(bytes(packed))

    with pytest.raises(Invalid) as caught:
        await verify_decompressible(path, "gzip")

    assert caught.value.code == "DOWNLOAD_CORRUPT"


async def test_verify_accepts_intact_and_plain_files(tmp_path: Path) -> None:
    packed = tmp_path / "ok.gz"
    packed.write_bytes(gzip.compress(PLAYLIST))
    plain = tmp_path / "ok.m3u"
    plain.write_bytes(PLAYLIST)

    await verify_decompressible(packed, "gzip")
    await verify_decompressible(plain, None)


# -- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://u:p@host:8080/list.m3u", "http://***@host:8080/list.m3u"),
        (
            "http://host/get.php?username=bob&password=pw&type=m3u_plus",
            "http://host/get.php?username=***&password=***&type=m3u_plus",
        ),
        ("http://host/live/bob/pw/123.ts", "http://host/live/***/***/123.ts"),
        ("http://host/movie/bob/pw/9.mkv", "http://host/movie/***/***/9.mkv"),
        ("http://host/series/bob/pw/9.mp4", "http://host/series/***/***/9.mp4"),
        ("http://host/bob/pw/123", "http://host/***/***/123"),
        ("https://cdn/hls/a.m3u8?Token=abc&x=1", "https://cdn/hls/a.m3u8?Token=***&x=1"),
        ("https://h/epg.xml?api_key=k&key=v&monkey=ok", "https://h/epg.xml?api_key=***&key=***&monkey=ok"),
        ("http://host/epg.xml", "http://host/epg.xml"),
        ("http://u:p@[bad/live/a/b/1.ts?auth=z", "http://***@[bad/live/***/***/1.ts?auth=***"),
        ("http://host/live/bob/pw", "http://host/live/***/***"),
        (
            "http://host/a.ts|User-Agent=VLC&Cookie=sid%3Dabc",
            "http://host/a.ts|User-Agent=VLC&Cookie=***",
        ),
        ("http://host/a.ts|Authorization=Bearer%20x", "http://host/a.ts|Authorization=***"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# -- Xtream Codes endpoints of the fake, fetched through the downloader -----------------------------


async def read_json(session: aiohttp.ClientSession, url: str, dest: Path) -> Any:
    result = await fetch(session, url, dest)
    with open_decompressed(result.path) as f:
        return json.load(f)


async def test_xtream_api_and_playlist(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path
) -> None:
    provider.add_xtream(
        "bob",
        "pw1",
        categories=[{"category_name": "News"}, {"category_name": "Sport"}],
        live_streams=[
            {"name": "BBC One", "epg_channel_id": "bbc1.uk", "category_id": "1"},
            {"name": "Sky Sports", "category_id": "2"},
        ],
    )
    api = provider.url("/player_api.php?username=bob&password=pw1")

    info = await read_json(session, api, dest)
    denied = await read_json(session, provider.url("/player_api.php?username=bob&password=nope"), dest)
    cats = await read_json(session, api + "&action=get_live_categories", dest)
    sport = await read_json(session, api + "&action=get_live_streams&category_id=2", dest)
    get_php = provider.url("/get.php?username=bob&password=pw1&type=m3u_plus&output=ts")
    playlist = await fetch(session, get_php, dest)

    assert info["user_info"]["auth"] == 1
    assert info["server_info"]["port"] == str(provider.port)
    assert denied == {"user_info": {"auth": 0}}
    assert [c["category_name"] for c in cats] == ["News", "Sport"]
    assert [s["name"] for s in sport] == ["Sky Sports"]
    text = playlist.path.read_text()
    assert text.startswith("#EXTM3U\n")
    assert '#EXTINF:-1 tvg-id="bbc1.uk" tvg-name="BBC One" tvg-logo="" group-title="News",BBC One' in text
    assert provider.url("/live/bob/pw1/2.ts") in text
    stream = await fetch(session, provider.url("/live/bob/pw1/1.ts"), dest)
    assert stream.content_type == "video/mp2t"


async def test_xtream_playlist_with_wrong_password_is_an_auth_error(
    provider: FakeProvider, session: aiohttp.ClientSession, dest: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    provider.add_xtream(XTREAM_USER, "the-right-one")
    url = provider.url(f"/get.php?username={XTREAM_USER}&password={XTREAM_PASS}&type=m3u_plus")

    with pytest.raises(UpstreamError) as caught:
        await fetch(session, url, dest)

    assert caught.value.code == "UPSTREAM_AUTH"
    assert_no_secrets(caught.value, debug_logs)


# -- the loop stays responsive -------------------------------------------------------------------


@pytest.mark.slow
async def test_loop_keeps_ticking_during_a_200_mb_download(
    provider: FakeProvider,
    session: aiohttp.ClientSession,
    dest: Path,
    record_property: Any,
) -> None:
    size = 200 * MiB
    provider.fault("/big.xml", "huge", size=size)
    lags: list[float] = []
    done = asyncio.Event()

    async def monitor() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    watcher = asyncio.create_task(monitor())
    started = time.monotonic()
    try:
        result = await fetch(session, provider.url("/big.xml"), dest, max_bytes=300 * MiB, read_timeout=10)
    finally:
        done.set()
        await watcher
    elapsed = time.monotonic() - started

    assert result.size == size == result.path.stat().st_size
    max_lag = max(lags)
    throughput = size / MiB / elapsed
    record_property("throughput_mib_s", round(throughput, 1))
    record_property("max_loop_lag_ms", round(max_lag * 1000, 1))
    log.info("200 MiB download: %.1f MiB/s, max loop lag %.1f ms", throughput, max_lag * 1000)
    assert len(lags) > 10, "the monitor must have run during the download"
    assert max_lag < 0.5
