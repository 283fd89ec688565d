"""The logo cache: logos fetched once into the data dir, refreshed now and then, served by channel id."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels.models import Channel, LogoCache
from backend.db import Database, utcnow
from backend.download import download_to_file, redact_url
from backend.epg.models import EpgChannel
from backend.errors import AppError

log = logging.getLogger(__name__)

LOGO_DIR = "logos"
LOGO_PATH = "/tic-api/logos/{channel_id}"
OK = "ok"
FAILED = "failed"
#: Downloads at once; the HTTP session also limits connections per host.
CONCURRENCY = 8
#: A logo that failed is tried again after this long (a refresh job runs every few hours).
RETRY_FAILED = timedelta(hours=12)
#: Results are written to the database in batches of this many (no I/O inside a transaction).
BATCH = 50

# Image types by their first bytes. SVG is left out on purpose: it is a document that can carry
# script, and TIC serves logos from its own origin.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"BM", 0, "image/bmp"),
    (b"\x00\x00\x01\x00", 0, "image/x-icon"),
)


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def sniff_image(head: bytes) -> str | None:
    """The image type the first bytes of a file show, or None when it is not a supported image."""
    for magic, offset, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if kind == "image/webp" and not head.startswith(b"RIFF"):
                continue
            return kind
    return None


def logo_dir(data_dir: Path) -> Path:
    return data_dir / LOGO_DIR


def logo_file(data_dir: Path, content_sha256: str) -> Path:
    return logo_dir(data_dir) / content_sha256[:2] / content_sha256


async def statuses(session: AsyncSession, urls: Sequence[str]) -> dict[str, str]:
    """Cache status (ok/failed) by URL, for the URLs that have been tried."""
    hashes = {url_hash(u): u for u in dict.fromkeys(u for u in urls if u)}
    if not hashes:
        return {}
    rows = await session.execute(
        select(LogoCache.url_hash, LogoCache.status).where(LogoCache.url_hash.in_(hashes))
    )
    return {hashes[h]: status for h, status in rows}


async def cached_logo(session: AsyncSession, channel_id: int) -> LogoCache | None:
    """The cached file for a channel: its own logo, else its guide channel's icon; never a fetch."""
    row = (
        await session.execute(
            select(Channel.logo_url, EpgChannel.icon)
            .outerjoin(
                EpgChannel,
                and_(
                    EpgChannel.source_id == Channel.epg_source_id,
                    EpgChannel.xmltv_id == Channel.epg_channel_id,
                ),
            )
            .where(Channel.id == channel_id)
        )
    ).first()
    if row is None:
        return None
    for url in (row[0], row[1]):
        if url:
            cached = (
                await session.execute(select(LogoCache).where(LogoCache.url_hash == url_hash(url)))
            ).scalar_one_or_none()
            if cached is not None and cached.status == OK and cached.content_sha256:
                return cached
    return None


async def wanted_urls(session: AsyncSession) -> set[str]:
    """Every logo the lineup can show: channel logos and the icons of mapped guide channels."""
    own = (
        await session.execute(select(Channel.logo_url).where(Channel.logo_url.is_not(None)).distinct())
    ).scalars()
    icons = (
        await session.execute(
            select(EpgChannel.icon)
            .join(
                Channel,
                and_(
                    EpgChannel.source_id == Channel.epg_source_id,
                    EpgChannel.xmltv_id == Channel.epg_channel_id,
                ),
            )
            .where(EpgChannel.icon.is_not(None))
            .distinct()
        )
    ).scalars()
    return {u for u in [*own, *icons] if u and u.lower().startswith(("http://", "https://"))}


@dataclass(slots=True)
class Fetched:
    url: str
    content_sha256: str | None = None
    content_type: str | None = None
    size: int | None = None
    error: str | None = None


@dataclass(slots=True)
class CacheLimits:
    max_bytes: int
    max_total_bytes: int
    refresh: timedelta
    user_agent: str | None


def _store(part: Path, digest: str, data_dir: Path, declared: str) -> str:
    """Check a downloaded file is a raster image and move it to its content-addressed place (in a thread)."""
    try:
        with part.open("rb") as f:
            kind = sniff_image(f.read(32))
        if kind is None:
            raise ValueError(f"the file is not a PNG, JPEG, GIF, WebP, BMP or ICO image (sent as {declared})")
        target = logo_file(data_dir, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
        return kind
    finally:
        part.unlink(missing_ok=True)


async def fetch_logo(http: aiohttp.ClientSession, url: str, data_dir: Path, limits: CacheLimits) -> Fetched:
    """Download one logo; any failure is recorded on the result, never raised."""
    safe = redact_url(url)
    try:
        download = await download_to_file(
            http,
            url,
            logo_dir(data_dir) / "tmp",
            user_agent=limits.user_agent,
            max_bytes=limits.max_bytes,
            connect_timeout=10,
            read_timeout=20,
            limit_setting="logo_max_bytes",
        )
    except AppError as exc:
        return Fetched(url, error=exc.message[:500])
    declared = (download.content_type or "").lower()
    if not declared.startswith("image/") or "svg" in declared:
        download.path.unlink(missing_ok=True)
        return Fetched(url, error=f"{safe} answered with {declared or 'no content type'}, not a raster image")
    try:
        kind = await asyncio.to_thread(_store, download.path, download.sha256, data_dir, declared)
    except (OSError, ValueError) as exc:
        return Fetched(url, error=f"{safe}: {exc}"[:500])
    return Fetched(url, content_sha256=download.sha256, content_type=kind, size=download.size)


def _due(row: LogoCache | None, now: Any, limits: CacheLimits, force: bool) -> bool:
    if row is None or force:
        return True
    if row.status == OK:
        return row.fetched_at is None or now - row.fetched_at >= limits.refresh
    return now - row.checked_at >= RETRY_FAILED


@dataclass(slots=True)
class _Budget:
    """Disk the cache uses, counted once per distinct file."""

    cap: int
    sizes: dict[str, int]
    used: int = 0

    def admit(self, digest: str, size: int) -> bool:
        if digest in self.sizes:
            return True
        if self.used + size > self.cap:
            return False
        self.sizes[digest] = size
        self.used += size
        return True


async def _record(db: Database, results: Sequence[Fetched], budget: _Budget) -> int:
    """Write a batch of results; a new file that would overflow the cache is refused. Returns ok count."""
    now = utcnow()
    stored = 0
    async with db.transaction() as session:
        rows = {
            r.url_hash: r
            for r in (
                await session.execute(
                    select(LogoCache).where(LogoCache.url_hash.in_([url_hash(f.url) for f in results]))
                )
            ).scalars()
        }
        for fetched in results:
            key = url_hash(fetched.url)
            row = rows.get(key)
            if row is None:
                row = LogoCache(url_hash=key, url=fetched.url, status=FAILED, failures=0, checked_at=now)
                session.add(row)
            row.checked_at = now
            digest = fetched.content_sha256
            if digest is not None and not budget.admit(digest, fetched.size or 0):
                fetched.error = "the logo cache is full (setting logo_cache_max_mb)"
                digest = None
            if digest is None:
                # A logo that worked before keeps its old file; only a logo never fetched is "failed".
                row.failures += 1
                row.error = fetched.error
                if row.status != OK:
                    row.status = FAILED
                continue
            row.status, row.error, row.failures = OK, None, 0
            row.content_sha256, row.content_type, row.size = digest, fetched.content_type, fetched.size
            row.fetched_at = now
            stored += 1
    return stored


def _remove_unreferenced(data_dir: Path, keep: set[str]) -> int:
    removed = 0
    root = logo_dir(data_dir)
    if not root.exists():
        return 0
    for path in root.glob("*/*"):
        if path.is_file() and path.name not in keep and path.parent.name != "tmp":
            path.unlink(missing_ok=True)
            removed += 1
    return removed


async def refresh_cache(
    db: Database,
    http: aiohttp.ClientSession,
    data_dir: Path,
    limits: CacheLimits,
    *,
    force: bool = False,
    progress: Callable[[float, str], Awaitable[None]] | None = None,
) -> dict[str, int]:
    """Fetch the logos that are new or due, forget the ones no channel uses, and delete orphan files."""
    async with db.session() as session:
        wanted = await wanted_urls(session)
        rows = {r.url: r for r in (await session.execute(select(LogoCache))).scalars()}
    now = utcnow()
    due = sorted(u for u in wanted if _due(rows.get(u), now, limits, force))
    sizes = {
        r.content_sha256: r.size or 0
        for r in rows.values()
        if r.status == OK and r.content_sha256 and r.url in wanted
    }
    budget = _Budget(limits.max_total_bytes, sizes, sum(sizes.values()))
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(url: str) -> Fetched:
        async with semaphore:
            return await fetch_logo(http, url, data_dir, limits)

    stored = 0
    for start in range(0, len(due), BATCH):
        results = await asyncio.gather(*(one(u) for u in due[start : start + BATCH]))
        stored += await _record(db, results, budget)
        if progress is not None:
            done = min(len(due), start + BATCH)
            await progress(100.0 * done / max(1, len(due)), f"Fetched {done} of {len(due)} logos")
    async with db.transaction() as session:
        gone = [u for u in rows if u not in wanted]
        for start in range(0, len(gone), 1000):
            part = [url_hash(u) for u in gone[start : start + 1000]]
            await session.execute(delete(LogoCache).where(LogoCache.url_hash.in_(part)))
        keep = set(
            (await session.execute(select(LogoCache.content_sha256).where(LogoCache.status == OK))).scalars()
        )
    removed = await asyncio.to_thread(_remove_unreferenced, data_dir, {k for k in keep if k})
    failed = len(due) - stored
    log.info(
        "Logo cache: %d fetched, %d failed, %d forgotten, %d files removed",
        stored,
        failed,
        len(gone),
        removed,
    )
    return {
        "wanted": len(wanted),
        "fetched": stored,
        "failed": failed,
        "forgotten": len(gone),
        "files_removed": removed,
    }
