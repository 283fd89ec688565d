"""TIC's TVHeadend connection for the DVR: the API client from settings and a reader for recording files."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import aiohttp
from yarl import URL

from backend.dvr.state import dvr_state
from backend.errors import NotFound, ServiceUnavailable, UpstreamError, UpstreamUnavailable
from backend.tvheadend.client import TvheadendClient
from backend.tvheadend.service import client_for, load_tvh_settings

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_FILE_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)


class RecordingFileMissing(NotFound):
    code = "RECORDING_FILE_MISSING"


class TvheadendNotConfigured(ServiceUnavailable):
    code = "TVH_NOT_CONFIGURED"


async def tvh_client(svc: Any) -> TvheadendClient | None:
    """The API client for the TVHeadend in settings, or None when no URL is set.

    Kept between calls (until the settings change) so its Digest nonce is reused.
    """
    async with svc.db.session() as session:
        settings = await load_tvh_settings(session, svc.keyring)
    if not settings.configured:
        return None
    state = dvr_state(svc)
    key = (settings.url, settings.username, settings.password, settings.timeout)
    if state.client is None or state.client_key != key:
        state.client = client_for(settings, svc.http.api)
        state.client_key = key
        state.files = TvhFiles(svc.http.proxy, settings.url, settings.username, settings.password)
    return state.client


async def tvh_files(svc: Any) -> TvhFiles:
    """The recording-file reader for the configured TVHeadend; 503 TVH_NOT_CONFIGURED without one."""
    await tvh_client(svc)
    files = dvr_state(svc).files
    if files is None:
        raise TvheadendNotConfigured(
            "TVHeadend is not configured: set its URL, user and password in Settings"
        )
    return files


class ByteSource(Protocol):
    """Where a recording's bytes come from; `read(offset)` yields what exists now from `offset` on."""

    def describe(self) -> str: ...

    def read(self, offset: int) -> AsyncIterator[bytes]: ...


class TvhFiles:
    """Reads `dvrfile/<uuid>` with TIC's TVHeadend login (Digest or Basic, whichever the server takes).

    The bytes travel through TIC to ffmpeg's stdin, so no credentials ever appear on a command line and
    Digest-only servers work too.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, username: str, password: str) -> None:
        base = URL(base_url.rstrip("/"))
        if base.user and not username:
            username, password = base.user, base.password or ""
        self._base = base.with_user(None).with_password(None)
        self._session = session
        self._username = username
        self._password = password
        self._digest = aiohttp.DigestAuthMiddleware(username, password) if username else None
        self._basic = False

    def url(self, uuid: str) -> URL:
        return self._base.with_path(f"{self._base.path.rstrip('/')}/dvrfile/{uuid}")

    def source(self, uuid: str) -> TvhFileSource:
        return TvhFileSource(self, uuid)

    async def _get(self, url: URL, headers: dict[str, str]) -> aiohttp.ClientResponse:
        kwargs: dict[str, Any] = {"headers": headers, "timeout": _FILE_TIMEOUT, "allow_redirects": False}
        if self._basic:
            kwargs["auth"] = aiohttp.BasicAuth(self._username, self._password)
        elif self._digest is not None:
            kwargs["middlewares"] = (self._digest,)
        resp = await self._session.get(url, **kwargs)
        if resp.status == 401 and self._username and not self._basic:
            offered = " ".join(resp.headers.getall("WWW-Authenticate", ())).lower()
            if offered.startswith("basic") or " basic" in offered:
                resp.release()
                self._basic = True
                kwargs.pop("middlewares", None)
                kwargs["auth"] = aiohttp.BasicAuth(self._username, self._password)
                resp = await self._session.get(url, **kwargs)
        return resp

    async def read(self, uuid: str, offset: int) -> AsyncIterator[bytes]:
        url = self.url(uuid)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            resp = await self._get(url, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(
                f"Cannot read the recording from TVHeadend at {self._base.host}:{self._base.port} "
                f"({type(exc).__name__})",
                code="TVH_UNREACHABLE",
            ) from exc
        async with resp:
            if resp.status == 416:
                return
            if resp.status == 404:
                raise RecordingFileMissing(
                    "TVHeadend has no file for this recording: it was deleted or never written"
                )
            if resp.status in (401, 403):
                raise UpstreamError(
                    "TVHeadend refused to hand out the recording file: TIC's TVHeadend user needs DVR rights",
                    code="TVH_FORBIDDEN",
                )
            if resp.status not in (200, 206):
                raise UpstreamError(
                    f"TVHeadend answered HTTP {resp.status} for the recording file", code="TVH_ERROR"
                )
            # A server that ignores Range sends the whole file again: skip what was already read.
            skip = offset if resp.status == 200 else 0
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamUnavailable(
                    "The connection to TVHeadend broke while reading the recording file",
                    code="TVH_CONNECTION_LOST",
                ) from exc


class TvhFileSource:
    def __init__(self, files: TvhFiles, uuid: str) -> None:
        self._files = files
        self._uuid = uuid

    def describe(self) -> str:
        return "TVHeadend dvrfile"

    def read(self, offset: int) -> AsyncIterator[bytes]:
        return self._files.read(self._uuid, offset)


class LocalFileSource:
    """A recording file TIC can read directly (a shared recordings directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return "local recordings directory"

    async def read(self, offset: int) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(self.path.open, "rb")
        except FileNotFoundError as exc:
            raise RecordingFileMissing("The recording file is missing from the recordings directory") from exc
        try:
            await asyncio.to_thread(handle.seek, offset)
            while chunk := await asyncio.to_thread(handle.read, CHUNK * 4):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)


def local_recording_path(tvh_filename: str | None, local_dir: str, tvh_dir: str) -> Path | None:
    """Where TVHeadend's file is in TIC's view of the recordings directory (never outside it)."""
    if not tvh_filename or not local_dir:
        return None
    base = Path(local_dir).resolve()
    try:
        relative = PurePosixPath(tvh_filename).relative_to(tvh_dir or local_dir)
    except ValueError:
        return None
    candidate = (base / relative).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate
