"""One guide import, seen from the app: fetch the file, skip it if unchanged, load it in a worker process."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend.db import utcnow
from backend.download import download_to_file, redact_url
from backend.epg import service
from backend.epg.loader import REASONS
from backend.errors import Invalid
from backend.runtime import AppServices
from backend.settings import service as settings_service
from backend.tasks.offload import run_blocking, run_in_subprocess

log = logging.getLogger(__name__)

Progress = Callable[[float, str | None], Awaitable[None]]

LOADER = "backend.epg.loader:load_guide"
# Share of the progress bar for each phase: fetching, then reading and staging, then the swap.
_DOWNLOAD = (0.0, 25.0)
_LOAD = (25.0, 95.0)
_HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What an import needs from the source row, read once at its start."""

    id: int
    name: str
    kind: str
    url: str | None
    user_agent: str | None
    past_days: int
    future_days: int
    preferred_language: str | None
    content_sha256: str | None
    last_import_status: str | None
    settings_key: str | None


def _settings_key(past_days: int, future_days: int, language: str | None) -> str:
    return f"{past_days}/{future_days}/{language or ''}"


async def _snapshot(svc: AppServices, source_id: int) -> Snapshot:
    async with svc.db.session() as session:
        source = await service.get_source(session, source_id)
        report = source.last_import_report or {}
        return Snapshot(
            id=source.id,
            name=source.name,
            kind=source.kind,
            url=source.url,
            user_agent=source.user_agent,
            past_days=source.past_days,
            future_days=source.future_days,
            preferred_language=source.preferred_language,
            content_sha256=source.content_sha256,
            last_import_status=source.last_import_status,
            settings_key=report.get("settings_key") if isinstance(report, dict) else None,
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _size_text(size: int) -> str:
    return f"{size / 1048576:.1f} MiB" if size >= 1048576 else f"{size / 1024:.0f} KiB"


async def import_epg(svc: AppServices, source_id: int, *, force: bool, progress: Progress) -> dict[str, Any]:
    """Import one source's guide and return the task result ({message, ...}).

    Raises an AppError with a user-facing message when anything fails; the guide in use is then
    untouched (the worker swaps in a complete guide in one transaction, or nothing).
    """
    snap = await _snapshot(svc, source_id)
    root = service.work_root(svc.config.data_dir)
    work = root / f"import-{source_id}-{uuid.uuid4().hex[:10]}"
    await run_blocking(lambda: _prepare(root, work, source_id))
    started = time.monotonic()
    try:
        path, size, sha, origin = await _fetch(svc, snap, work, progress)
        key = _settings_key(snap.past_days, snap.future_days, snap.preferred_language)
        if (
            not force
            and sha == snap.content_sha256
            and snap.last_import_status == "succeeded"
            and key == snap.settings_key
        ):
            async with svc.db.transaction() as session:
                await service.record_unchanged(session, source_id, {"unchanged_at": utcnow().isoformat()})
            return {
                "message": f"The guide of {snap.name} has not changed since the last import",
                "changed": False,
            }
        report = await _load(
            svc, snap, path, sha, work, progress, {"settings_key": key, "bytes": size, "origin": origin}
        )
    finally:
        await run_blocking(shutil.rmtree, work, True)
    seconds = round(time.monotonic() - started, 1)
    message = (
        f"Imported {report['programmes']:,} programmes on {report['channels']:,} channels of {snap.name} "
        f"in {seconds} s ({report['inserted']:,} new or changed, {report['deleted']:,} removed)"
    )
    warnings = _warnings(report)
    if warnings:
        message += ". " + " ".join(warnings)
    log.info("EPG %d: %s", source_id, message)
    return {
        "message": message[:500],
        "changed": bool(report["inserted"] or report["deleted"]),
        **{k: report[k] for k in ("channels", "programmes", "inserted", "deleted", "skipped", "filtered")},
    }


def _warnings(report: dict[str, Any]) -> list[str]:
    """Plain sentences about what the import left out or could not place."""
    out = []
    if report.get("skipped"):
        reasons = "; ".join(
            f"{n} {REASONS.get(r, r.replace('_', ' '))}" for r, n in sorted(report["skipped_reasons"].items())
        )
        out.append(f"{report['skipped']} unusable programme(s) were left out ({reasons}).")
    if report.get("unknown_channels"):
        ids = ", ".join(report["unknown_channel_ids"][:3])
        out.append(
            f"{report['unknown_channel_programmes']} programme(s) are for {report['unknown_channels']} channel id(s) "
            f"the guide does not declare (such as {ids}); they were kept under those ids."
        )
    if report.get("dropped_no_stop"):
        out.append(f"{report['dropped_no_stop']} last programme(s) without a stop time were left out.")
    return out


def _prepare(root: Path, work: Path, source_id: int) -> None:
    """Create this import's folder, removing what an earlier import of the source left behind
    (a process killed mid-import cannot clean up after itself)."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"import-{source_id}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work.mkdir()


async def _fetch(
    svc: AppServices, snap: Snapshot, work: Path, progress: Progress
) -> tuple[Path, int, str, str]:
    """The guide file to read: downloaded for xmltv_url, the stored upload for xmltv_file."""
    if snap.kind == "xmltv_file":
        path = service.upload_path(svc.config.data_dir, snap.id)
        if not await run_blocking(path.exists):
            raise Invalid(
                "No guide file has been uploaded for this source yet. Upload an XMLTV file first.",
                code="EPG_NO_FILE",
            )
        await progress(_DOWNLOAD[1], "Reading the uploaded guide")
        size = (await run_blocking(path.stat)).st_size
        return path, size, await run_blocking(_sha256, path), "upload"
    assert snap.url is not None
    async with svc.db.session() as session:
        values = await settings_service.get_settings(session, svc.keyring)
    low, high = _DOWNLOAD

    async def on_bytes(done: int, total: int | None) -> None:
        share = min(done / total, 1.0) if total else 0.0
        shown = f"Downloaded {_size_text(done)}" + (f" of {_size_text(total)}" if total else "")
        await progress(low + (high - low) * share, shown)

    result = await download_to_file(
        svc.http.stream,
        snap.url,
        work,
        user_agent=snap.user_agent or values["user_agent"],
        max_bytes=int(values["download_max_bytes"]),
        connect_timeout=float(values["download_connect_timeout"]),
        read_timeout=float(values["download_read_timeout"]),
        progress=on_bytes,
        limit_setting="the download_max_bytes setting",
    )
    return result.path, result.size, result.sha256, redact_url(result.final_url)


async def _load(
    svc: AppServices,
    snap: Snapshot,
    path: Path,
    sha: str,
    work: Path,
    progress: Progress,
    report: dict[str, Any],
) -> dict[str, Any]:
    async with svc.db.session() as session:
        split_mb = await settings_service.get_setting(session, svc.keyring, "epg_split_min_mb")
    now = utcnow()
    options = {
        "split_min_bytes": int(split_mb) * 1024 * 1024,
        "preferred_lang": snap.preferred_language,
        "keep_from": (now - timedelta(days=snap.past_days)).isoformat(),
        "keep_until": (now + timedelta(days=snap.future_days)).isoformat(),
        "work_dir": str(work),
        "content_sha256": sha,
        "report": report,
    }
    low, high = _LOAD

    async def on_progress(percent: float, message: str) -> None:
        await progress(low + (high - low) * min(percent, 100.0) / 100.0, message)

    result: dict[str, Any] = await run_in_subprocess(
        LOADER, str(path), svc.db.url, snap.id, options, on_progress=on_progress
    )
    return result
