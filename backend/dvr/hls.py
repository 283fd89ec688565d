"""HLS playback: one ffmpeg remux per recording into a cache of keyframe-aligned segments, capped and reaped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.dvr.state import dvr_state
from backend.dvr.tvh import ByteSource
from backend.errors import AppError, NotFound, ServiceUnavailable, UpstreamError

log = logging.getLogger(__name__)

PLAYLIST = "index.m3u8"
SEGMENT_RE = re.compile(r"^seg_\d{5,7}\.ts$")
#: A failed conversion answers with its error for this long before a new ffmpeg is tried.
FAILURE_MEMORY = 10.0
#: How long a playlist request waits for the first segment.
READY_TIMEOUT = 30.0
#: While a recording is still being recorded, how often the relay looks for new bytes.
LIVE_POLL_SECONDS = 2.0


class FfmpegMissing(ServiceUnavailable):
    code = "FFMPEG_MISSING"


class HlsBusy(ServiceUnavailable):
    code = "HLS_BUSY"


class HlsFailed(UpstreamError):
    code = "HLS_FAILED"


class HlsNotReady(AppError):
    status = 504
    code = "HLS_NOT_READY"


@dataclass(frozen=True)
class HlsLimits:
    max_jobs: int = 2
    cache_max_bytes: int = 4096 * 1024 * 1024
    idle_seconds: float = 600.0
    segment_seconds: int = 6


@dataclass
class HlsRequest:
    """What to convert: `key` identifies the file (a new key replaces an old cache)."""

    recording_id: int
    key: str
    live: bool
    # A completed file TIC can open itself: ffmpeg reads it directly (fastest).
    path: Path | None = None
    # Otherwise the bytes are relayed to ffmpeg's stdin from here.
    source: ByteSource | None = None
    # For a recording in progress: is it still recording? The relay follows the file until not.
    still_live: Callable[[], Awaitable[bool]] | None = None


@dataclass
class HlsJob:
    recording_id: int
    key: str
    live: bool
    dir: Path
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    error: AppError | None = None
    failed_at: float = 0.0
    stopping: bool = False
    last_access: float = field(default_factory=time.monotonic)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def touch(self) -> None:
        self.last_access = time.monotonic()

    def fail(self, error: AppError) -> None:
        if self.error is None:
            self.error = error
            self.failed_at = time.monotonic()
        self.ready.set()


class HlsManager:
    """All playback conversions of one app: at most `max_jobs` ffmpeg processes, reaped and cleaned."""

    def __init__(self, root: Path, ffmpeg: str = "ffmpeg") -> None:
        self.root = root
        self.ffmpeg = ffmpeg
        self.jobs: dict[int, HlsJob] = {}
        self.limits = HlsLimits()
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Empty the cache: files left by a previous run belong to no job."""
        await asyncio.to_thread(shutil.rmtree, self.root, True)
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    # -- requests --------------------------------------------------------------------------------

    async def playlist(self, request: HlsRequest, limits: HlsLimits, segment_query: str = "") -> str:
        """The playlist for `request`, once at least one segment exists; starts ffmpeg when needed."""
        self.limits = limits
        job = await self._ensure(request)
        try:
            await asyncio.wait_for(job.ready.wait(), READY_TIMEOUT)
        except TimeoutError as exc:
            raise HlsNotReady(
                "The recording is still being prepared for playback; try again in a few seconds",
                headers={"Retry-After": "5"},
            ) from exc
        if job.error is not None:
            # Answer once ffmpeg is gone, so a failed conversion never outlives its error reply.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.finished.wait(), 5.0)
            raise job.error
        job.touch()
        text = await asyncio.to_thread(_read_text, job.dir / PLAYLIST)
        if text is None:
            raise HlsNotReady("The playlist is not written yet", headers={"Retry-After": "2"})
        return rewrite_playlist(text, segment_query, vod=not job.live)

    async def segment(self, recording_id: int, name: str) -> Path:
        """The file of segment `name`; only names ffmpeg writes are accepted (no paths)."""
        if not SEGMENT_RE.fullmatch(name):
            raise NotFound("No such segment", code="SEGMENT_NOT_FOUND")
        job = self.jobs.get(recording_id)
        if job is None:
            raise NotFound(
                "Playback of this recording has not started: open hls.m3u8 first", code="SEGMENT_NOT_FOUND"
            )
        path = job.dir / name
        if not await asyncio.to_thread(path.is_file):
            raise NotFound("No such segment", code="SEGMENT_NOT_FOUND")
        job.touch()
        return path

    async def discard(self, recording_id: int) -> None:
        """Stop the conversion of a recording and delete its cache (the recording was deleted)."""
        async with self._lock:
            job = self.jobs.pop(recording_id, None)
            if job is not None:
                await self._stop(job, remove=True)

    async def shutdown(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        async with self._lock:
            for job in list(self.jobs.values()):
                await self._stop(job, remove=True)
            self.jobs.clear()
        await asyncio.to_thread(shutil.rmtree, self.root, True)

    # -- housekeeping ----------------------------------------------------------------------------

    async def sweep(self, now: float | None = None) -> list[int]:
        """Remove idle caches, then the least recently used ones while the cache is over its cap."""
        now = time.monotonic() if now is None else now
        removed: list[int] = []
        async with self._lock:
            for rid, job in list(self.jobs.items()):
                if now - job.last_access > self.limits.idle_seconds:
                    log.info("Removing the idle playback cache of recording %s", rid)
                    await self._stop(job, remove=True)
                    del self.jobs[rid]
                    removed.append(rid)
            sizes = {rid: await asyncio.to_thread(_dir_size, job.dir) for rid, job in self.jobs.items()}
            total = sum(sizes.values())
            # Finished conversions go first, then the least recently watched.
            for rid, job in sorted(self.jobs.items(), key=lambda kv: (kv[1].running, kv[1].last_access)):
                if total <= self.limits.cache_max_bytes:
                    break
                log.warning(
                    "Playback cache over its cap (%d MiB): removing recording %s",
                    self.limits.cache_max_bytes // (1024 * 1024),
                    rid,
                )
                await self._stop(job, remove=True)
                del self.jobs[rid]
                total -= sizes[rid]
                removed.append(rid)
        return removed

    def cache_bytes(self) -> int:
        return _dir_size(self.root)

    async def _sweep_loop(self) -> None:
        while not self._closed and self.jobs:
            busy = any(j.running for j in self.jobs.values())
            await asyncio.sleep(5.0 if busy else min(30.0, max(1.0, self.limits.idle_seconds / 4)))
            try:
                await self.sweep()
            except OSError:
                log.exception("Could not clean the playback cache")

    # -- jobs ------------------------------------------------------------------------------------

    async def _ensure(self, request: HlsRequest) -> HlsJob:
        if self._closed:
            raise ServiceUnavailable("TIC is shutting down")
        async with self._lock:
            job = self.jobs.get(request.recording_id)
            if job is not None:
                recent_failure = job.error is not None and time.monotonic() - job.failed_at < FAILURE_MEMORY
                # A conversion that started while recording follows the file to its end: keep it.
                if (job.error is None and job.key == request.key) or recent_failure:
                    job.touch()
                    return job
                await self._stop(job, remove=True)
                del self.jobs[request.recording_id]
            running = sum(1 for j in self.jobs.values() if j.running)
            if running >= self.limits.max_jobs:
                raise HlsBusy(
                    f"{running} recordings are being prepared for playback already (the limit is "
                    f"{self.limits.max_jobs}); try again shortly",
                    headers={"Retry-After": "10"},
                )
            try:
                job = await self._start(request)
            except OSError as exc:
                raise HlsFailed(
                    f"Could not start ffmpeg: {exc.strerror or exc}", code="FFMPEG_FAILED"
                ) from exc
            self.jobs[request.recording_id] = job
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = asyncio.get_running_loop().create_task(
                    self._sweep_loop(), name="tic-hls-sweep"
                )
            return job

    async def _start(self, request: HlsRequest) -> HlsJob:
        ffmpeg = shutil.which(self.ffmpeg)
        if ffmpeg is None:
            raise FfmpegMissing(
                "ffmpeg is not installed (or not on TIC's PATH), so recordings cannot be played in the "
                "browser: install the ffmpeg package"
            )
        if request.path is None and request.source is None:
            raise ValueError("an HlsRequest needs a path or a source")
        directory = self.root / f"{request.recording_id}-{secrets.token_hex(4)}"
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        job = HlsJob(recording_id=request.recording_id, key=request.key, live=request.live, dir=directory)
        relay = request.path is None
        args = ffmpeg_args(
            ffmpeg,
            "pipe:0" if relay else str(request.path),
            directory,
            segment_seconds=self.limits.segment_seconds,
        )
        log.info(
            "Starting ffmpeg for recording %s (%s, %s)",
            request.recording_id,
            "in progress" if request.live else "completed",
            request.source.describe() if request.source is not None else "local file",
        )
        try:
            job.proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE if relay else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        loop = asyncio.get_running_loop()
        job.tasks.append(loop.create_task(self._read_stderr(job)))
        if relay:
            job.tasks.append(loop.create_task(self._relay(job, request)))
        job.tasks.append(loop.create_task(self._watch(job)))
        return job

    async def _stop(self, job: HlsJob, *, remove: bool) -> None:
        """Kill ffmpeg if it runs, always reap it (no zombies), and optionally delete the cache."""
        job.stopping = True
        for task in job.tasks:
            task.cancel()
        if job.proc is not None:
            if job.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    job.proc.kill()
            await job.proc.wait()
        await asyncio.gather(*job.tasks, return_exceptions=True)
        job.fail(HlsFailed("Playback of this recording was stopped", code="HLS_STOPPED"))
        job.finished.set()
        if remove:
            await asyncio.to_thread(shutil.rmtree, job.dir, True)

    async def _read_stderr(self, job: HlsJob) -> None:
        assert job.proc is not None and job.proc.stderr is not None
        async for raw in job.proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                job.stderr_tail.append(line[:300])

    async def _relay(self, job: HlsJob, request: HlsRequest) -> None:
        """Feed the recording to ffmpeg; while it is still recording, follow the growing file."""
        assert job.proc is not None and job.proc.stdin is not None and request.source is not None
        stdin = job.proc.stdin
        offset = 0
        try:
            while True:
                async for chunk in request.source.read(offset):
                    stdin.write(chunk)
                    await stdin.drain()
                    offset += len(chunk)
                    # Buffered reads and a drained pipe complete without suspending: let others run.
                    await asyncio.sleep(0)
                if request.still_live is None or not await request.still_live():
                    # One more pass picks up what was written between the last read and the end.
                    if request.still_live is not None:
                        async for chunk in request.source.read(offset):
                            stdin.write(chunk)
                            await stdin.drain()
                            offset += len(chunk)
                    break
                await asyncio.sleep(LIVE_POLL_SECONDS)
        except (BrokenPipeError, ConnectionResetError):
            # ffmpeg died; _watch reports why.
            return
        except AppError as exc:
            log.warning("Reading recording %s for playback failed: %s", job.recording_id, exc.message)
            job.fail(exc)
            if job.proc.returncode is None:
                job.proc.kill()
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()
            await stdin.wait_closed()
        log.debug("Relayed %d bytes of recording %s to ffmpeg", offset, job.recording_id)

    async def _watch(self, job: HlsJob) -> None:
        """Signal readiness at the first segment, then reap ffmpeg and record how it ended."""
        assert job.proc is not None
        playlist = job.dir / PLAYLIST
        wait = asyncio.ensure_future(job.proc.wait())
        try:
            while not job.ready.is_set():
                done, _ = await asyncio.wait({wait}, timeout=0.05)
                if await asyncio.to_thread(_has_segment, playlist):
                    job.ready.set()
                if done:
                    break
            code = await wait
        finally:
            if not wait.done():
                wait.cancel()
        if not job.stopping and job.error is None:
            if code != 0:
                detail = job.stderr_tail[-1] if job.stderr_tail else "no message"
                log.warning("ffmpeg for recording %s exited with %s: %s", job.recording_id, code, detail)
                job.fail(
                    HlsFailed(
                        f"ffmpeg could not convert the recording (exit {code}): {detail}. The file may "
                        "be damaged, truncated or not an MPEG-TS recording"
                    )
                )
            elif not await asyncio.to_thread(_has_segment, playlist):
                job.fail(
                    HlsFailed(
                        "The recording file holds no playable audio or video (it is empty or truncated)",
                        code="RECORDING_FILE_EMPTY",
                    )
                )
        job.ready.set()
        job.finished.set()


def ffmpeg_args(ffmpeg: str, source: str, directory: Path, *, segment_seconds: int) -> list[str]:
    """Remux (no transcoding) into HLS; segments are cut on key frames, so each starts with one."""
    return [
        ffmpeg,
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-fflags",
        "+genpts",
        *(["-f", "mpegts"] if source == "pipe:0" else []),
        "-i",
        source,
        "-map",
        "0:v?",
        "-map",
        "0:a?",
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        str(segment_seconds),
        "-hls_list_size",
        "0",
        # ffmpeg rewrites an EVENT playlist after every segment, but a VOD one only at the very end;
        # TIC relabels a finished conversion of a completed recording as VOD (see rewrite_playlist).
        "-hls_playlist_type",
        "event",
        "-hls_flags",
        "independent_segments+temp_file",
        "-hls_segment_type",
        "mpegts",
        "-hls_segment_filename",
        str(directory / "seg_%05d.ts"),
        str(directory / PLAYLIST),
    ]


def rewrite_playlist(text: str, segment_query: str = "", *, vod: bool = False) -> str:
    """Point segment lines at TIC's segment route; anything that is not a known segment name is dropped.

    With `vod`, a finished playlist (ENDLIST) is labelled VOD: it will never change again.
    """
    finished = "#EXT-X-ENDLIST" in text
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if vod and finished and stripped == "#EXT-X-PLAYLIST-TYPE:EVENT":
            line = "#EXT-X-PLAYLIST-TYPE:VOD"
        if stripped and not stripped.startswith("#"):
            name = stripped.rsplit("/", 1)[-1]
            if not SEGMENT_RE.fullmatch(name):
                continue
            line = f"hls/{name}{segment_query}"
        out.append(line)
    return "\n".join(out) + "\n"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        return None


def _has_segment(playlist: Path) -> bool:
    text = _read_text(playlist)
    return text is not None and "#EXTINF" in text


def _dir_size(path: Path) -> int:
    total = 0
    try:
        for dirpath, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(dirpath, name)).st_size
    except FileNotFoundError:
        return 0
    return total


def hls_manager(svc: Any) -> HlsManager:
    """The app's playback manager; its cache lives in the data directory (never a configurable path,
    since the cache directory is emptied at start-up)."""
    state = dvr_state(svc)
    if state.hls is None:
        state.hls = HlsManager(Path(svc.config.data_dir) / "hls")
    return state.hls
