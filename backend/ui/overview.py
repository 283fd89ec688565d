"""Read-only queries behind the dashboard: sources, lineup and guide coverage, recordings, publish, disk."""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels.models import Channel
from backend.db import iso_z
from backend.epg.models import EpgSource, Programme
from backend.playlists.models import PlaylistSource
from backend.tasks.models import FAILED, TaskRun

#: Programmes are rarely longer than this; it bounds the index range scanned for "on air at t".
MAX_PROGRAMME = timedelta(hours=24)


def source_out(src: PlaylistSource | EpgSource, count: int, unit: str) -> dict[str, Any]:
    return {
        "id": src.id,
        "name": src.name,
        "enabled": src.enabled,
        "kind": src.kind,
        "count": count,
        "unit": unit,
        "last_import_at": iso_z(src.last_import_at),
        "status": src.last_import_status,
        "error": src.last_import_error,
    }


async def playlist_sources(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (
        await session.execute(select(PlaylistSource).order_by(PlaylistSource.position, PlaylistSource.id))
    ).scalars()
    return [source_out(s, s.stream_count, "streams") for s in rows]


async def epg_sources(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(EpgSource).order_by(EpgSource.name))).scalars()
    return [source_out(s, s.programme_count, "programmes") for s in rows]


def _has_programmes(start: datetime, end: datetime) -> Any:
    """SQL condition: the channel's mapped guide has a programme overlapping [start, end)."""
    return exists().where(
        and_(
            Programme.source_id == Channel.epg_source_id,
            Programme.xmltv_channel_id == Channel.epg_channel_id,
            Programme.start < end,
            Programme.start > start - MAX_PROGRAMME,
            Programme.stop > start,
        )
    )


async def lineup_counts(session: AsyncSession, now: datetime) -> dict[str, Any]:
    """Channel counts and guide coverage: the share of enabled channels with programmes in the next 24 h."""
    total = int((await session.execute(select(func.count()).select_from(Channel))).scalar_one())
    enabled = int(
        (await session.execute(select(func.count()).select_from(Channel).where(Channel.enabled))).scalar_one()
    )
    mapped = int(
        (
            await session.execute(
                select(func.count())
                .select_from(Channel)
                .where(
                    Channel.enabled, Channel.epg_source_id.is_not(None), Channel.epg_channel_id.is_not(None)
                )
            )
        ).scalar_one()
    )
    covered = int(
        (
            await session.execute(
                select(func.count())
                .select_from(Channel)
                .where(Channel.enabled, _has_programmes(now, now + timedelta(hours=24)))
            )
        ).scalar_one()
    )
    return {
        "total": total,
        "enabled": enabled,
        "mapped": mapped,
        "unmapped": enabled - mapped,
        "covered": covered,
        "mapped_without_programmes": mapped - covered,
        "coverage_pct": round(100 * covered / enabled) if enabled else None,
    }


async def last_run(session: AsyncSession, name_part: str) -> dict[str, Any] | None:
    """The newest task run whose job name contains `name_part` (e.g. publish), in API shape."""
    run = (
        await session.execute(
            select(TaskRun).where(TaskRun.name.contains(name_part)).order_by(TaskRun.id.desc()).limit(1)
        )
    ).scalar_one_or_none()
    if run is None:
        return None
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "message": run.message,
        "error": run.error,
        "finished_at": iso_z(run.finished_at),
        "created_at": iso_z(run.created_at),
    }


async def last_publish(session: AsyncSession) -> dict[str, Any] | None:
    """The last publish to TVHeadend as the publish domain records it, else its newest task run."""
    try:
        module = importlib.import_module("backend.publish.service")
    except ImportError:
        module = None
    reader = getattr(module, "last_publish", None)
    if reader is None:
        return await last_run(session, "publish")
    try:
        run = await reader(session)
    except SQLAlchemyError:
        return await last_run(session, "publish")
    if run is None:
        return None
    summary = run.get("summary") or {}
    counts = [f"{summary[k]} {k}" for k in ("created", "updated", "deleted") if summary.get(k) is not None]
    problems = run.get("problems") or []
    if problems:
        counts.append(f"{len(problems)} problem(s)")
    return {
        "status": run.get("status"),
        "finished_at": run.get("finished_at") or run.get("started_at"),
        "error": run.get("error"),
        "message": ", ".join(counts),
    }


async def recent_failures(session: AsyncSession, since: datetime, limit: int = 5) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(TaskRun)
            .where(TaskRun.status == FAILED, TaskRun.finished_at >= since)
            .order_by(TaskRun.id.desc())
            .limit(limit)
        )
    ).scalars()
    return [
        {"id": r.id, "name": r.name, "error": r.error or r.message, "finished_at": iso_z(r.finished_at)}
        for r in rows
    ]


def dvr_model() -> Any | None:
    """The DVR's recording table when that domain is installed, else None (the dashboard degrades)."""
    try:
        module = importlib.import_module("backend.dvr.models")
    except ImportError:
        return None
    model = getattr(module, "Recording", None)
    needed = ("status", "start", "stop", "channel_id", "title")
    if model is None or not all(hasattr(model, n) for n in needed):
        return None
    return model


async def recordings(session: AsyncSession, now: datetime, limit: int = 8) -> dict[str, Any] | None:
    """Active and upcoming recordings (and failures of the last day), or None without the DVR domain."""
    model = dvr_model()
    if model is None:
        return None
    try:
        active = (
            await session.execute(
                select(model)
                .where(model.status.in_(("scheduled", "recording")))
                .order_by(model.start)
                .limit(limit)
            )
        ).scalars()
        items = list(active)
        failed = int(
            (
                await session.execute(
                    select(func.count())
                    .select_from(model)
                    .where(model.status.in_(("failed", "missed")), model.stop >= now - timedelta(days=1))
                )
            ).scalar_one()
        )
    except SQLAlchemyError:
        # The DVR tables may be mid-migration while that domain lands; the dashboard must still render.
        return None
    ids = {r.channel_id for r in items if r.channel_id is not None}
    names: dict[int, str] = {}
    if ids:
        names = dict(
            (await session.execute(select(Channel.id, Channel.name).where(Channel.id.in_(ids)))).all()
        )
    return {
        "items": [
            {
                "id": r.id,
                "title": r.title,
                "status": r.status,
                "start": iso_z(r.start),
                "stop": iso_z(r.stop),
                "channel": names.get(r.channel_id, "") or getattr(r, "channel_name", ""),
            }
            for r in items
        ],
        "failed_recently": failed,
    }


@dataclass
class DiskUse:
    data_dir: str
    total_bytes: int = 0
    parts: list[tuple[str, int]] = field(default_factory=list)
    hls_dir: str | None = None
    hls_bytes: int | None = None
    free_bytes: int | None = None
    fs_bytes: int | None = None


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def disk_use(data_dir: Path, hls_dir: Path | None) -> DiskUse:
    """Sizes of the data directory (by top-level entry) and the HLS cache; blocking, run it in a thread."""
    use = DiskUse(data_dir=str(data_dir.resolve()))
    if data_dir.exists():
        for entry in sorted(data_dir.iterdir()):
            try:
                size = _tree_size(entry)
            except OSError:
                continue
            use.parts.append((entry.name, size))
            use.total_bytes += size
        use.parts.sort(key=lambda p: p[1], reverse=True)
        usage = shutil.disk_usage(data_dir)
        use.free_bytes, use.fs_bytes = usage.free, usage.total
    if hls_dir is not None:
        use.hls_dir = str(hls_dir)
        use.hls_bytes = _tree_size(hls_dir) if hls_dir.exists() else None
    return use


def human_size(num: int | None) -> str:
    if num is None:
        return "—"
    size = float(num)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def hls_cache_dir(data_dir: Path, settings: dict[str, Any]) -> Path:
    """Where the DVR keeps HLS segments: its setting when it defines one, else the data dir's hls folder."""
    for key, value in settings.items():
        if "hls" in key and key.endswith(("_dir", "_path")) and isinstance(value, str) and value:
            return Path(value)
    return data_dir / "hls"
