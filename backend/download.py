"""Streaming downloader for playlist, EPG and logo imports: bounded, cancellable and credential-safe."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import inspect
import io
import logging
import lzma
import re
import threading
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from backend.errors import AppError, Invalid, PayloadTooLarge, UpstreamError, UpstreamUnavailable

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"

ProgressCallback = Callable[[int, int | None], Awaitable[None] | None]

# Network chunks are small (a few KiB); batching them into ~1 MiB writes keeps thread hops rare
# while the buffer stays small enough that memory does not grow with the file.
_WRITE_BATCH = 1024 * 1024
_READ_BATCH = 1024 * 1024
_PROGRESS_INTERVAL = 0.25
_HEAD_BYTES = 64
# Query (and fragment) keys whose values are credentials, compared case-insensitively.
_REDACTED_PARAMS = (
    "username|user|password|passwd|pass|pwd|token|access_token|api_key|apikey|key|auth|secret"
    "|signature|sig|stream_key|cookie|authorization"
)
_REDACTED_PARAM = re.compile(_REDACTED_PARAMS, re.IGNORECASE)
_XTREAM_PATH = re.compile(r"/(live|movie|series|timeshift)/[^/?#]+/[^/?#]+(?:/|$)", re.IGNORECASE)
# Xtream panels also serve live streams as /<user>/<pass>/<stream id>, without a type prefix.
_XTREAM_BARE_PATH = re.compile(r"^/[^/]+/[^/]+/(\d+(?:\.[A-Za-z0-9]+)?)$")
_USERINFO = re.compile(r"//[^/?#@\s]*@")
_QUERY_SECRET = re.compile(rf"([?&;#](?:{_REDACTED_PARAMS})=)[^&;#\s]*", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_HTML_START = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|meta|title|script|style|link|div|form|p|h1|center|iframe|noscript)\b"
)
_XML_PROLOGUE = re.compile(rb"^(?:\s*<\?xml[^>]*\?>|\s*<!--.*?-->)*\s*", re.DOTALL)


@dataclass(slots=True)
class Download:
    """A finished download: the raw bytes as received, on disk, plus what an importer needs to know."""

    path: Path
    size: int
    compression: str | None
    content_type: str | None
    final_url: str
    sha256: str


@dataclass(slots=True)
class _Attempt:
    """What one download has got so far, so an error can say where it stopped."""

    safe_url: str
    phase: str = "connect"
    received: int = 0
    expected: int | None = None


def redact_url(url: str) -> str:
    """Return `url` with userinfo, credential query values and Xtream user/pass path segments as ***.

    Kodi-style header suffixes (`url|User-Agent=…&Cookie=…`) keep their names but lose secret values.
    """
    url, pipe, headers = url.partition("|")
    suffix = pipe + _redact_pairs(headers) if pipe else ""
    return _redact_plain_url(url) + suffix


def _redact_plain_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rsplit("@", 1)[1]
        path = _XTREAM_PATH.sub(_xtream_sub, parts.path)
        path = _XTREAM_BARE_PATH.sub(r"/***/***/\1", path)
        return urlunsplit(
            (parts.scheme, netloc, path, _redact_pairs(parts.query), _redact_pairs(parts.fragment))
        )
    except ValueError:
        # An unparseable URL still must not leak: fall back to the same rules applied as text.
        text = _USERINFO.sub("//***@", url)
        text = _XTREAM_PATH.sub(_xtream_sub, text)
        return _QUERY_SECRET.sub(r"\1***", text)


def _xtream_sub(match: re.Match[str]) -> str:
    """/live/<user>/<pass>/… → /live/***/***/… (the trailing slash only if there was one)."""
    return f"/{match.group(1)}/***/***" + ("/" if match.group(0).endswith("/") else "")


def _redact_pairs(query: str) -> str:
    """Replace the values of credential-like keys in an `a=1&b=2` string, leaving the rest verbatim."""
    if not query:
        return query
    out = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if sep and value and _REDACTED_PARAM.fullmatch(unquote(name).strip()):
            pair = f"{name}=***"
        out.append(pair)
    return "&".join(out)


def redact_urls_in_text(text: str) -> str:
    """Redact every URL inside free text, such as an aiohttp exception message."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _describe(exc: BaseException) -> str:
    # str(), never repr(): the repr of aiohttp response errors includes the request headers, and
    # with them the Authorization header built from the URL's userinfo.
    return f"{type(exc).__name__}: {redact_urls_in_text(str(exc))}"


def _host(safe_url: str) -> str:
    return urlsplit(safe_url).netloc.rsplit("@", 1)[-1]


def sniff_compression(first_bytes: bytes) -> str | None:
    """Name the compression of a file from its magic bytes: "gzip", "xz" or None for anything else."""
    if first_bytes.startswith(GZIP_MAGIC):
        return "gzip"
    if first_bytes.startswith(XZ_MAGIC):
        return "xz"
    return None


def _decompress_head(first_bytes: bytes, limit: int = 8192) -> bytes:
    """Decompress as much of a possibly partial compressed head as is available, up to `limit` bytes."""
    kind = sniff_compression(first_bytes)
    try:
        if kind == "gzip":
            return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(first_bytes, limit)
        if kind == "xz":
            return lzma.LZMADecompressor().decompress(first_bytes, max_length=limit)
    except (zlib.error, lzma.LZMAError):
        return b""
    return first_bytes[:limit]


def looks_like_html(first_bytes: bytes) -> bool:
    """Tell whether the head of a download is an HTML page (a login or error page), decompressing it first."""
    head = _decompress_head(first_bytes).lstrip(b"\xef\xbb\xbf").lower()
    head = _XML_PROLOGUE.sub(b"", head, count=1)
    return _HTML_START.match(head) is not None


def open_decompressed(path: Path) -> BinaryIO:
    """Open a downloaded file for reading its content, decompressing gzip or xz as told by its magic bytes."""
    with path.open("rb") as f:
        kind = sniff_compression(f.read(len(XZ_MAGIC)))
    if kind == "gzip":
        return cast(BinaryIO, gzip.open(path, "rb"))
    if kind == "xz":
        return cast(BinaryIO, lzma.open(path, "rb"))
    return path.open("rb")


async def verify_decompressible(path: Path, compression: str | None) -> None:
    """Read a compressed download to its end in a thread; raise Invalid if it is truncated or corrupt."""
    if compression is None:
        return
    stop = threading.Event()
    try:
        await asyncio.to_thread(_read_to_end, path, compression, stop)
    finally:
        # If the caller is cancelled, the thread cannot be; the flag makes it give up at its next read.
        stop.set()


def _read_to_end(path: Path, compression: str, stop: threading.Event) -> None:
    opener = gzip.open if compression == "gzip" else lzma.open
    try:
        with opener(path, "rb") as f:
            while not stop.is_set() and f.read(_READ_BATCH):
                pass
    except EOFError:
        raise Invalid(
            f"The downloaded {compression} file is truncated: the compressed data ends early. "
            "The provider probably cut the transfer short; try the update again later.",
            code="DOWNLOAD_TRUNCATED",
        ) from None
    except (gzip.BadGzipFile, zlib.error, lzma.LZMAError) as exc:
        raise Invalid(
            f"The downloaded {compression} file is corrupt ({exc}). "
            "Try the update again; if it keeps failing, the provider is serving a damaged file.",
            code="DOWNLOAD_CORRUPT",
        ) from None


def _format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class _ProgressReporter:
    """Calls the caller's progress callback at most every 0.25 s, plus once at the end."""

    __slots__ = ("_callback", "_last_time", "_last_value", "_total")

    def __init__(self, callback: ProgressCallback | None, total: int | None) -> None:
        self._callback = callback
        self._total = total
        self._last_time = float("-inf")
        self._last_value = -1

    async def update(self, done: int, *, final: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if final and done == self._last_value:
            return
        if not final and now - self._last_time < _PROGRESS_INTERVAL:
            return
        self._last_time = now
        self._last_value = done
        result = self._callback(done, self._total)
        if inspect.isawaitable(result):
            await result


def _check_url(url: str, safe_url: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise Invalid(f"The URL {safe_url} is not valid.", code="URL_INVALID") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise Invalid(
            f"Only http:// and https:// URLs can be downloaded; {safe_url} has {scheme}.",
            code="URL_SCHEME",
        )
    if not host:
        raise Invalid(f"The URL {safe_url} has no host name.", code="URL_INVALID")


def _request_headers(
    session: aiohttp.ClientSession, headers: Mapping[str, str] | None, user_agent: str | None
) -> dict[str, str]:
    out: dict[str, str] = {}
    if not session.auto_decompress:
        # Raw bytes are stored as received, so only ask for an encoding that sniffing can recognise.
        out["Accept-Encoding"] = "gzip"
    out.update(headers or {})
    if user_agent:
        out["User-Agent"] = user_agent
    return out


async def download_to_file(
    session: aiohttp.ClientSession,
    url: str,
    dest_dir: Path,
    *,
    headers: Mapping[str, str] | None = None,
    user_agent: str | None = None,
    max_bytes: int,
    connect_timeout: float = 15,
    read_timeout: float = 60,
    progress: ProgressCallback | None = None,
    max_redirects: int = 5,
    limit_setting: str = "the download size limit",
) -> Download:
    """Stream `url` into a new file in `dest_dir` and describe it; raise an AppError on any failure.

    The session should be created with `auto_decompress=False`: a response sent with
    `Content-Encoding: gzip` is then stored as the gzip bytes on the wire, `compression` says
    "gzip" (it is sniffed from the magic bytes, never from the name or headers), and
    `open_decompressed` undoes it like any other gzip file. With an auto-decompressing session
    the decoded bytes are stored instead and Content-Length is not checked against them.
    No partial file is ever left behind: the `.part` file is removed on failure or cancellation.
    """
    attempt = _Attempt(safe_url=redact_url(url))
    _check_url(url, attempt.safe_url)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
    started = time.monotonic()
    try:
        # aiohttp counts the redirect that trips the limit, so one more lets exactly max_redirects through.
        async with session.get(
            url,
            headers=_request_headers(session, headers, user_agent),
            timeout=timeout,
            allow_redirects=max_redirects > 0,
            max_redirects=max_redirects + 1,
        ) as resp:
            attempt.phase = "body"
            attempt.safe_url = redact_url(str(resp.url))
            _check_status(resp, attempt, max_redirects)
            result = await _stream_body(session, resp, dest_dir, attempt, max_bytes, limit_setting, progress)
    except aiohttp.ClientError as exc:
        log.debug("Download of %s failed: %s", attempt.safe_url, _describe(exc))
        raise _map_client_error(exc, attempt, connect_timeout, read_timeout, max_redirects) from None
    except TimeoutError as exc:
        log.debug("Download of %s timed out: %s", attempt.safe_url, _describe(exc))
        raise _timeout_error(attempt, connect_timeout, read_timeout) from None
    log.info(
        "Downloaded %s: %s (%s) in %.1f s",
        attempt.safe_url,
        _format_bytes(result.size),
        result.compression or "uncompressed",
        time.monotonic() - started,
    )
    return result


def _check_status(resp: aiohttp.ClientResponse, attempt: _Attempt, max_redirects: int) -> None:
    status, safe = resp.status, attempt.safe_url
    if max_redirects == 0 and status in (301, 302, 303, 307, 308):
        raise _too_many_redirects(safe, max_redirects)
    if 200 <= status < 300 and status != 204:
        return
    if status in (401, 403):
        raise UpstreamError(
            f"The provider refused the credentials (HTTP {status}) for {safe}. Check the username and "
            "password (or token) for this source, and that the subscription is still active.",
            code="UPSTREAM_AUTH",
        )
    if status == 404:
        raise UpstreamError(
            f"The provider has nothing at {safe} (HTTP 404). Check the URL; the provider may have moved it.",
            code="UPSTREAM_NOT_FOUND",
        )
    if 500 <= status < 600:
        raise UpstreamError(
            f"The provider's server failed (HTTP {status}) while serving {safe}. "
            "This is usually temporary; try again later.",
            transient=True,
            code="UPSTREAM_SERVER_ERROR",
        )
    if status == 204:
        raise _empty_error(safe)
    raise UpstreamError(
        f"The provider rejected the request for {safe} with HTTP {status}. "
        "Check the URL and any custom headers or user agent set for this source.",
        # Rate limiting and request timeouts clear up by themselves, so a retry may help.
        transient=status in (408, 429),
        code="UPSTREAM_HTTP_ERROR",
    )


async def _stream_body(
    session: aiohttp.ClientSession,
    resp: aiohttp.ClientResponse,
    dest_dir: Path,
    attempt: _Attempt,
    max_bytes: int,
    limit_setting: str,
    progress: ProgressCallback | None,
) -> Download:
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity") or not session.auto_decompress:
        attempt.expected = resp.content_length
    if encoding not in ("", "identity", "gzip", "x-gzip") and not session.auto_decompress:
        raise UpstreamError(
            f"The provider sent {attempt.safe_url} with Content-Encoding {encoding!r}, which TIC cannot "
            "decode. Ask the provider for an uncompressed or gzip file.",
            code="UPSTREAM_ENCODING",
        )
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise _too_large(attempt.safe_url, max_bytes, limit_setting, declared=resp.content_length)

    await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
    part = dest_dir / f"download-{uuid.uuid4().hex}.part"
    f = await asyncio.to_thread(open, part, "xb")
    digest = hashlib.sha256()
    reporter = _ProgressReporter(progress, attempt.expected)
    head = b""
    buf = bytearray()
    try:
        async for chunk in resp.content.iter_any():
            attempt.received += len(chunk)
            if attempt.received > max_bytes:
                raise _too_large(attempt.safe_url, max_bytes, limit_setting, declared=None)
            if len(head) < _HEAD_BYTES:
                head += chunk[: _HEAD_BYTES - len(head)]
            buf += chunk
            if len(buf) >= _WRITE_BATCH:
                batch, buf = buf, bytearray()
                await asyncio.to_thread(_write_batch, f, digest, batch)
            await reporter.update(attempt.received)
        if buf:
            await asyncio.to_thread(_write_batch, f, digest, buf)
        if attempt.received == 0:
            raise _empty_error(attempt.safe_url)
        await reporter.update(attempt.received, final=True)
        final = part.with_suffix("")
        await asyncio.to_thread(_finish, f, part, final)
    except BaseException:
        _discard(f, part)
        raise
    return Download(
        path=final,
        size=attempt.received,
        compression=sniff_compression(head),
        content_type=resp.content_type if "Content-Type" in resp.headers else None,
        final_url=str(resp.url),
        sha256=digest.hexdigest(),
    )


def _write_batch(f: io.BufferedWriter, digest: hashlib._Hash, data: bytearray) -> None:
    # Hashing here too keeps the loop free of per-megabyte CPU work; batches are written in order.
    f.write(data)
    digest.update(data)


def _finish(f: io.BufferedWriter, part: Path, final: Path) -> None:
    f.close()
    part.replace(final)


def _discard(f: io.BufferedWriter, part: Path) -> None:
    # This runs synchronously on purpose: it must complete even if the task is cancelled again, and
    # closing a file and unlinking it are metadata operations that take microseconds.
    with contextlib.suppress(OSError, ValueError):
        f.close()
    try:
        part.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("Could not remove the partial download %s: %s", part, exc)


def _too_large(safe_url: str, max_bytes: int, limit_setting: str, *, declared: int | None) -> PayloadTooLarge:
    size = f"declares {_format_bytes(declared)}" if declared is not None else "is bigger than that"
    return PayloadTooLarge(
        f"The file at {safe_url} {size}, over the limit of {_format_bytes(max_bytes)}. "
        f"If the file really is that big, raise {limit_setting}.",
        code="DOWNLOAD_TOO_LARGE",
    )


def _empty_error(safe_url: str) -> Invalid:
    return Invalid(
        f"The provider returned an empty file for {safe_url}. Check the URL; some providers answer "
        "with an empty body when the account has expired.",
        code="DOWNLOAD_EMPTY",
    )


def _incomplete_error(attempt: _Attempt) -> UpstreamError:
    expected = _format_bytes(attempt.expected) if attempt.expected is not None else "an unknown size"
    return UpstreamError(
        f"The connection to {attempt.safe_url} ended after {_format_bytes(attempt.received)} of "
        f"{expected}. This is usually temporary; try again later.",
        transient=True,
        code="DOWNLOAD_INCOMPLETE",
    )


def _too_many_redirects(safe_url: str, max_redirects: int) -> UpstreamError:
    return UpstreamError(
        f"{safe_url} redirected more than {max_redirects} times, probably in a loop. Check the URL; "
        "the provider may want a browser login or may be misconfigured.",
        code="UPSTREAM_TOO_MANY_REDIRECTS",
    )


def _timeout_error(attempt: _Attempt, connect_timeout: float, read_timeout: float) -> UpstreamUnavailable:
    host = _host(attempt.safe_url)
    if attempt.phase == "connect":
        what = (
            f"No answer from {host} in time (connect timeout {connect_timeout:g} s, "
            f"read timeout {read_timeout:g} s)"
        )
    else:
        what = (
            f"The download of {attempt.safe_url} stalled: no data for {read_timeout:g} s after "
            f"{_format_bytes(attempt.received)}"
        )
    return UpstreamUnavailable(
        f"{what}. The provider may be overloaded or blocking this server; try again later.",
        code="UPSTREAM_TIMEOUT",
    )


def _map_client_error(
    exc: aiohttp.ClientError,
    attempt: _Attempt,
    connect_timeout: float,
    read_timeout: float,
    max_redirects: int,
) -> AppError:
    safe = attempt.safe_url
    host = _host(safe)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return _too_many_redirects(safe, max_redirects)
    if isinstance(exc, aiohttp.RedirectClientError):
        return UpstreamError(
            f"{safe} redirected to an address TIC cannot follow (not http or https).",
            code="UPSTREAM_BAD_REDIRECT",
        )
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return Invalid(f"Only http:// and https:// URLs can be downloaded, not {safe}.", code="URL_SCHEME")
    if isinstance(exc, aiohttp.InvalidURL):
        return Invalid(f"The URL {safe} is not valid.", code="URL_INVALID")
    if isinstance(exc, TimeoutError):
        return _timeout_error(attempt, connect_timeout, read_timeout)
    if isinstance(exc, aiohttp.ClientSSLError):
        return UpstreamError(
            f"The secure connection to {host} failed ({redact_urls_in_text(str(exc.os_error))}). "
            "Check the certificate of the provider, or use its http:// address.",
            code="UPSTREAM_TLS_ERROR",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            reason = "the host name could not be resolved"
        elif isinstance(exc.os_error, ConnectionRefusedError):
            reason = "the connection was refused"
        else:
            reason = redact_urls_in_text(exc.strerror or type(exc.os_error).__name__)
        return UpstreamUnavailable(
            f"Could not connect to {host}: {reason}. Check the address and port, and that the provider "
            "is online.",
            code="UPSTREAM_UNREACHABLE",
        )
    if isinstance(exc, aiohttp.ClientPayloadError) or (
        attempt.phase == "body" and isinstance(exc, aiohttp.ClientConnectionError)
    ):
        return _incomplete_error(attempt)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return UpstreamUnavailable(
            f"{host} closed the connection before answering the request for {safe}. "
            "This is usually temporary; try again later.",
            code="UPSTREAM_DISCONNECTED",
        )
    return UpstreamError(
        f"The provider sent a response TIC cannot read for {safe} ({type(exc).__name__}). "
        "Check the URL; try again later if it used to work.",
        transient=True,
        code="UPSTREAM_BAD_RESPONSE",
    )
