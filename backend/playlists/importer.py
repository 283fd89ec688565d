"""One playlist import: fetch -> parse in a child process -> stage in chunks -> swap in one transaction."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.db import utcnow
from backend.download import open_decompressed, redact_url
from backend.errors import AppError, Invalid
from backend.playlists import client, service, worker
from backend.playlists.m3u import SkippedEntry, why_not_m3u
from backend.playlists.store import StreamStage
from backend.playlists.worker import ChunkReader
from backend.runtime import AppServices
from backend.settings import service as settings_service
from backend.tasks.offload import run_blocking, run_in_subprocess

log = logging.getLogger(__name__)

Progress = Callable[[float, str], Awaitable[None]]

#: Worker processes that parse one big plain M3U file in parts, and the size from which it is split.
#: Two fit the 2-core target machine: the parent's staging needs some CPU too.
PARSE_PROCESSES = 2
SPLIT_MIN_BYTES = 4 * 1024 * 1024
# Share of the progress bar for each phase; parsing and staging overlap, so they share one band.
_DOWNLOAD = (0.0, 30.0)
_PARSE = (30.0, 90.0)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What an import needs from the source row, read once at the start (password decrypted)."""

    id: int
    name: str
    kind: str
    url: str | None
    xc_server: str | None
    xc_username: str | None
    xc_password: str | None
    user_agent: str | None
    headers: dict[str, str]
    upload_name: str | None
    content_sha256: str | None
    last_import_status: str | None


@dataclass(frozen=True, slots=True)
class Fetched:
    """The fetched input and the worker call that turns it into rows."""

    target: str
    job: dict[str, Any]
    size: int
    sha256: str | None
    source_label: str


async def load_snapshot(svc: AppServices, source_id: int) -> Snapshot:
    async with svc.db.session() as session:
        source = await service.get_source(session, source_id)
        password = svc.keyring.decrypt(source.xc_password_enc) if source.xc_password_enc else None
        return Snapshot(
            id=source.id,
            name=source.name,
            kind=source.kind,
            url=source.url,
            xc_server=source.xc_server,
            xc_username=source.xc_username,
            xc_password=password,
            user_agent=source.user_agent,
            headers=dict(source.headers or {}),
            upload_name=source.upload_name,
            content_sha256=source.content_sha256,
            last_import_status=source.last_import_status,
        )


async def fetch_limits(
    svc: AppServices, snap_user_agent: str | None, headers: dict[str, str]
) -> client.FetchLimits:
    async with svc.db.session() as session:
        values = await settings_service.get_settings(session, svc.keyring)
    return client.FetchLimits(
        max_bytes=int(values["download_max_bytes"]),
        connect_timeout=float(values["download_connect_timeout"]),
        read_timeout=float(values["download_read_timeout"]),
        user_agent=snap_user_agent or values["user_agent"] or None,
        headers=headers,
    )


async def import_playlist(
    svc: AppServices, source_id: int, *, force: bool, progress: Progress
) -> dict[str, Any]:
    """Import one source and return its report; raise an AppError (old streams untouched) on failure."""
    started = time.monotonic()
    snap = await load_snapshot(svc, source_id)
    workdir = svc.config.data_dir / "tmp" / f"playlist-{source_id}-{uuid.uuid4().hex[:10]}"
    await run_blocking(lambda: workdir.mkdir(parents=True, exist_ok=True))
    try:
        await progress(1, "Fetching the playlist")
        fetched = await _fetch(svc, snap, workdir, progress)
        if not force and fetched.sha256 is not None and fetched.sha256 == snap.content_sha256:
            if snap.last_import_status == "succeeded":
                report: dict[str, Any] = {
                    "content_unchanged": True,
                    "bytes": fetched.size,
                    "seconds": round(time.monotonic() - started, 2),
                }
                async with svc.db.transaction() as session:
                    await service.record_unchanged(session, source_id, report)
                return {
                    **report,
                    "message": f"{snap.name}: the playlist has not changed since the last import",
                }
        fetched_at = time.monotonic()
        report = await _parse_and_swap(svc, snap, fetched, workdir, progress)
        report["timings"] = {"fetch": round(fetched_at - started, 2), **report["timings"]}
    finally:
        await run_blocking(shutil.rmtree, workdir, True)
        await run_blocking(_release_memory)
    report["seconds"] = round(time.monotonic() - started, 2)
    log.info("Import of playlist %d took %.2f s: %s", source_id, report["seconds"], report.get("timings"))
    return report


async def _fetch(svc: AppServices, snap: Snapshot, workdir: Path, progress: Progress) -> Fetched:
    limits = await fetch_limits(svc, snap.user_agent, snap.headers)

    async def on_bytes(done: int, total: int | None) -> None:
        low, high = _DOWNLOAD
        share = done / total if total else 0.5
        await progress(low + (high - low) * min(1.0, share), f"Downloaded {done / 1048576:.1f} MiB")

    if snap.kind == "m3u_url":
        assert snap.url is not None
        download = await client.download_playlist(svc.http.stream, snap.url, workdir, limits, on_bytes)
        job: dict[str, Any] = {"path": str(download.path), "base_url": download.final_url, "what": "download"}
        return Fetched(
            "backend.playlists.worker:build_m3u_rows", job, download.size, download.sha256, snap.url
        )
    if snap.kind == "m3u_file":
        path = service.upload_path(svc.config.data_dir, snap.id)
        if snap.upload_name is None or not await run_blocking(path.is_file):
            raise Invalid(
                "No file has been uploaded for this playlist yet; upload one first.", code="PLAYLIST_NO_FILE"
            )
        size, digest = await run_blocking(_file_digest, path)
        job = {"path": str(path), "base_url": snap.url, "what": "uploaded file"}
        return Fetched("backend.playlists.worker:build_m3u_rows", job, size, digest, snap.upload_name)
    assert snap.xc_server and snap.xc_username and snap.xc_password is not None
    files = await client.fetch_xtream(
        svc.http.stream, snap.xc_server, snap.xc_username, snap.xc_password, workdir, limits, on_bytes
    )
    async with svc.db.session() as session:
        ext = await settings_service.get_setting(session, svc.keyring, "xtream_stream_format")
    job = {
        "streams": str(files.streams),
        "categories": str(files.categories),
        "server": snap.xc_server,
        "username": snap.xc_username,
        "password": snap.xc_password,
        "ext": ext,
    }
    # The format is part of every stream URL, so a changed setting must not look "unchanged".
    digest = hashlib.sha256(f"{files.sha256}:{ext}".encode()).hexdigest()
    return Fetched("backend.playlists.worker:build_xtream_rows", job, files.size, digest, snap.xc_server)


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


async def _plan(fetched: Fetched, workdir: Path) -> list[dict[str, Any]]:
    """The worker jobs for an input: one, or one per part of a big M3U file to use every core."""
    if not fetched.target.endswith(":build_m3u_rows"):
        return [fetched.job]
    path = Path(fetched.job["path"])
    if fetched.size >= SPLIT_MIN_BYTES // 8 and await run_blocking(_is_compressed, path):
        # A compressed file cannot be cut; unpacking it first (zlib works outside the GIL) is cheaper
        # than parsing it on one core.
        path = await run_blocking(worker.decompress_to, path, workdir / "content.m3u", fetched.job["what"])
    parts = await run_blocking(worker.plan_parts, path, PARSE_PROCESSES, SPLIT_MIN_BYTES)
    if not parts:
        return [fetched.job]
    return [{**fetched.job, "path": str(path), **part} for part in parts]


def _release_memory() -> None:
    """Hand the heap an import freed back to the system.

    The staging and swap caches are allocated by SQLite in the database threads; glibc keeps what they
    free in per-thread arenas, so without a trim every big import leaves the process tens of MiB larger.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        # Not glibc (musl, macOS): nothing to trim, or the allocator does it by itself.
        return


def _is_compressed(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(6).startswith((b"\x1f\x8b", b"\xfd7zXZ\x00"))


class _KeyCounts:
    """Counts stream key bases per worker part, to number duplicates across parts afterwards.

    Each part numbers its own duplicates ("key", "key#2", ...); the n-th copy in part p is really copy
    (copies in parts before p + n). Parts are staged as they come, in any order, and offsets() says
    by how much each part's copies of earlier keys must be shifted.
    """

    def __init__(self, parts: int) -> None:
        self.counts: list[dict[str, int]] = [{} for _ in range(parts)]

    def see(self, part: int, rows: list[tuple[Any, ...]]) -> None:
        counts = self.counts[part]
        for row in rows:
            base = row[0].partition("#")[0]
            counts[base] = counts.get(base, 0) + 1

    def offsets(self, part: int) -> dict[str, int]:
        earlier: dict[str, int] = {}
        for counts in self.counts[:part]:
            for base, count in counts.items():
                earlier[base] = earlier.get(base, 0) + count
        return {base: earlier[base] for base in self.counts[part] if base in earlier}


async def _parse_and_swap(
    svc: AppServices, snap: Snapshot, fetched: Fetched, workdir: Path, progress: Progress
) -> dict[str, Any]:
    began = time.monotonic()
    cpu0 = time.process_time()
    jobs = await _plan(fetched, workdir)
    planned_at = time.monotonic()
    workers_at = planned_at
    ready = asyncio.Event()
    percents = [0.0] * len(jobs)
    parsed = [0] * len(jobs)

    def on_progress(part: int) -> Callable[[float, str], None]:
        def report(percent: float, message: str) -> None:
            # Called for every chunk a worker finishes ("<n> entries parsed").
            percents[part] = percent
            count = message.partition(" ")[0]
            if count.isdigit():
                parsed[part] = int(count)
            ready.set()

        return report

    files = svc.db.dialect == "sqlite"
    if files:
        # Each worker writes a stage file of its own; the swap attaches them.
        outputs = [workdir / f"stage-{i}.db" for i in range(len(jobs))]
        extra: list[dict[str, Any]] = [{"stage": "sqlite"} for _ in jobs]
    else:
        # The workers append rows in chunks that this process copies into temporary tables as they come.
        outputs = [workdir / f"rows-{i}.bin" for i in range(len(jobs))]
        extra = [{} for _ in jobs]
        for out in outputs:
            await run_blocking(out.touch)
    children = [
        asyncio.ensure_future(
            run_in_subprocess(
                fetched.target,
                {**job, **more, "source_id": snap.id, "out": str(out)},
                on_progress=on_progress(i),
            )
        )
        for i, (job, more, out) in enumerate(zip(jobs, extra, outputs, strict=True))
    ]

    async def show_progress(what: str) -> None:
        low, high = _PARSE
        share = sum(percents) / len(percents) / 100
        await progress(low + (high - low) * share, f"{sum(parsed)} entries {what}")

    readers: list[ChunkReader] = []
    try:
        if files:
            # Parsing and staging happen in the workers; show their progress until all have ended.
            await _wait_for_workers(children, ready, lambda: show_progress("parsed and staged"))
            workers_at = time.monotonic()
            stage = StreamStage(svc.db, snap.id, files=outputs)
        else:
            readers = [ChunkReader(out) for out in outputs]
            stage = StreamStage(svc.db, snap.id, parts=len(jobs))
        async with stage:
            if files:
                summaries: list[dict[str, Any]] = [child.result() for child in children]
                stage.rows = sum(s["entries"] for s in summaries)
                across = 0
                for part in range(1, len(jobs)):
                    across += await stage.renumber_from_files(part)
            else:
                across = await _stage_chunks(stage, children, readers, ready, show_progress)
                summaries = [child.result() for child in children]
            summary = _merge(summaries)
            # Each key a later part shares with earlier parts: its first copy there is a duplicate too.
            summary["duplicates"] += across
            if len(jobs) > 1:
                worker.require_entries(
                    summary["entries"],
                    summary["skipped"],
                    [SkippedEntry(line, reason) for line, reason in summary["skipped_lines"]],
                    fetched.job.get("what", "download"),
                )
            parsed_at = time.monotonic()
            cpu1 = time.process_time()
            await progress(_PARSE[1], f"Saving {stage.rows} streams")
            report = {
                "entries": summary["entries"],
                "skipped": summary["skipped"],
                "skipped_lines": summary["skipped_lines"],
                "duplicates": summary["duplicates"],
                # Guide URLs often carry the account's credentials; the report is shown in the UI.
                "epg_urls": [redact_url(u) for u in summary["epg_urls"]],
                "bytes": fetched.size,
                "source": redact_url(fetched.source_label),
            }
            counts = await stage.swap(
                utcnow(), {"last_import_report": report, "content_sha256": fetched.sha256}
            )
    finally:
        for child in children:
            if not child.done():
                # Cancelling the call kills the worker process.
                child.cancel()
        await asyncio.gather(*children, return_exceptions=True)
        for reader in readers:
            await run_blocking(reader.close)
    swapped_at = time.monotonic()
    message = (
        f"Imported {counts.total} streams into {snap.name}: {counts.added} added, {counts.updated} updated, "
        f"{counts.removed} removed, {summary['skipped']} skipped"
    )
    log.info("%s", message)
    return {
        "message": message,
        **report,
        "added": counts.added,
        "updated": counts.updated,
        "removed": counts.removed,
        "unchanged": counts.unchanged,
        "total": counts.total,
        "timings": {
            "parse_and_stage": round(parsed_at - began, 2),
            # Within it: cutting the file into parts, and (SQLite) the workers' run until the last ended.
            "plan": round(planned_at - began, 2),
            "workers_wall": round(workers_at - planned_at, 2),
            "swap": round(swapped_at - parsed_at, 2),
            "workers": len(jobs),
            "worker_cpu": [s.get("cpu_seconds") for s in summaries],
            "app_cpu": [round(cpu1 - cpu0, 2), round(time.process_time() - cpu1, 2)],
        },
    }


async def _wait_for_workers(
    children: Sequence[asyncio.Future[Any]],
    ready: asyncio.Event,
    show_progress: Callable[[], Awaitable[None]],
) -> None:
    """Wait until every worker has ended, showing progress each time one reports (sets `ready`) or
    ends; the first failed worker's error is raised."""
    while running := {child for child in children if not child.done()}:
        ready.clear()
        waiter = asyncio.ensure_future(ready.wait())
        try:
            # Only the workers still running: a finished one would end every wait at once, and this
            # loop would spin on the event loop, taking a core from the workers, until the last ended.
            await asyncio.wait({waiter, *running}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        for child in children:
            if child.done():
                child.result()  # A failed worker fails the import here.
        await show_progress()


async def _stage_chunks(
    stage: StreamStage,
    children: Sequence[asyncio.Future[Any]],
    readers: list[ChunkReader],
    ready: asyncio.Event,
    show_progress: Callable[[str], Awaitable[None]],
) -> int:
    """Copy the workers' row chunks into the stage as they come (PostgreSQL); returns how many keys of
    later parts earlier parts also had."""
    parts = len(readers)
    keys = _KeyCounts(parts)
    pending = list(range(parts))
    while pending:
        ready.clear()
        staged = False
        for part in list(pending):
            child, reader = children[part], readers[part]
            rows = await run_blocking(reader.read_next)
            if rows is None and child.done():
                child.result()  # A failed worker fails the import here; the stage is dropped.
                # The worker has ended: whatever it wrote is complete now.
                rows = await run_blocking(reader.read_next)
                if rows is None:
                    pending.remove(part)
                    continue
            if rows is None:
                continue
            if parts > 1:
                keys.see(part, rows)
            await stage.add(rows, part)
            staged = True
            await show_progress("parsed and staged")
        if pending and not staged:
            waiter = asyncio.ensure_future(ready.wait())
            try:
                await asyncio.wait(
                    {waiter, *(children[p] for p in pending)}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
    across = 0
    for part in range(1, parts):
        offsets = keys.offsets(part)
        if offsets:
            across += await stage.renumber(part, offsets)
    return across


def _merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    skipped_lines = [line for s in summaries for line in s["skipped_lines"]][: worker.REPORT_SKIPPED]
    return {
        "entries": sum(s["entries"] for s in summaries),
        "skipped": sum(s["skipped"] for s in summaries),
        "skipped_lines": skipped_lines,
        "duplicates": sum(s["duplicates"] for s in summaries),
        "epg_urls": summaries[0]["epg_urls"],
    }


def sniff_playlist(path: Path) -> str | None:
    """Why a file (gzip or not) is not an M3U playlist, or None if it looks like one. Blocking."""
    try:
        with open_decompressed(path) as f:
            head = f.read(64 * 1024)
    except (EOFError, OSError):
        return "the file is a damaged compressed file"
    return why_not_m3u(head)


async def test_connection(
    svc: AppServices, values: dict[str, Any], stored_password: str | None
) -> dict[str, Any]:
    """Try a source's settings without saving them: reach it, and check that it answers a playlist."""
    kind = values.get("kind")
    workdir = svc.config.data_dir / "tmp" / f"test-{uuid.uuid4().hex[:10]}"
    await run_blocking(lambda: workdir.mkdir(parents=True, exist_ok=True))
    try:
        limits = await fetch_limits(svc, values.get("user_agent"), dict(values.get("headers") or {}))
        if kind == "xtream":
            password = values.get("xc_password") or stored_password
            if not (values.get("xc_server") and values.get("xc_username") and password):
                return _test_result(
                    False, "PLAYLIST_INVALID", "Enter the server, username and password first."
                )
            account = await client.xtream_account(
                svc.http.stream, values["xc_server"], values["xc_username"], password, workdir, limits
            )
            details = client.account_summary(account)
            expires = details["expires_at"] or "never"
            return _test_result(
                True, None, f"Logged in: account {details['status']}, expires {expires}.", details
            )
        if kind == "m3u_url":
            if not values.get("url"):
                return _test_result(False, "PLAYLIST_INVALID", "Enter the playlist's URL first.")
            download = await client.download_playlist(svc.http.stream, values["url"], workdir, limits, None)
            reason = await run_blocking(sniff_playlist, download.path)
            details = {"bytes": download.size, "compression": download.compression}
            if reason is not None:
                return _test_result(False, "PLAYLIST_INVALID", f"Reached the URL, but {reason}.", details)
            size = (
                f"{download.size / 1048576:.1f} MiB" if download.size >= 1048576 else f"{download.size} bytes"
            )
            packed = f", {download.compression}-compressed" if download.compression else ""
            return _test_result(
                True, None, f"Reached the playlist ({size}{packed}); it looks like an M3U playlist.", details
            )
        return _test_result(
            False,
            "PLAYLIST_NO_FILE",
            "An uploaded playlist has nothing to connect to; upload the file instead.",
        )
    except AppError as exc:
        return _test_result(False, exc.code, exc.message)
    finally:
        await run_blocking(shutil.rmtree, workdir, True)


def _test_result(
    ok: bool, code: str | None, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"ok": ok, "code": code, "message": message, "details": details or {}}
