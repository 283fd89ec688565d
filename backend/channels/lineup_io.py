"""Lineup export and import as JSON: everything needed to rebuild the lineup, validated before any write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import numbering, service
from backend.channels.models import Channel, ChannelSource, channel_tag_link
from backend.db import iso_z, utcnow
from backend.epg.models import EpgSource
from backend.errors import Invalid
from backend.playlists.models import PlaylistSource, Stream

FORMAT = "tic-lineup"
VERSION = 1
MAX_CHANNELS = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FileSource(_Strict):
    """A playlist stream (by playlist name and stream identity) or a manual URL."""

    playlist: str | None = Field(default=None, max_length=200)
    stream_key: str | None = Field(default=None, max_length=300)
    tvg_id: str | None = Field(default=None, max_length=255)
    name: str | None = Field(default=None, max_length=500)
    url: str | None = Field(default=None, max_length=4000)
    missing: bool = False
    enabled: bool = True


class FileGuide(_Strict):
    source: str = Field(max_length=200)
    channel_id: str = Field(max_length=255)
    method: str | None = Field(default=None, max_length=20)
    score: int | None = Field(default=None, ge=0, le=100)


class FileChannel(_Strict):
    guide_id: str = Field(max_length=255)
    name: str = Field(max_length=1000)
    number: int = Field(ge=numbering.MIN_NUMBER, le=numbering.MAX_NUMBER)
    enabled: bool = True
    tags: list[str] = Field(default_factory=list, max_length=50)
    logo_url: str | None = Field(default=None, max_length=4000)
    guide_offset_minutes: int = Field(default=0, ge=-1440, le=1440)
    epg: FileGuide | None = None
    sources: list[FileSource] = Field(default_factory=list, max_length=100)


class LineupFile(_Strict):
    format: str
    version: int
    exported_at: str | None = None
    channels: list[FileChannel] = Field(max_length=MAX_CHANNELS)


def _key_without_source(stream_key: str, source_id: int) -> str:
    prefix = f"{source_id}:"
    return stream_key[len(prefix) :] if stream_key.startswith(prefix) else stream_key


async def export_lineup(session: AsyncSession) -> dict[str, Any]:
    """The lineup as a versioned document. Provider stream URLs are not written (they carry credentials):
    a stream is named by its playlist and its stable identity, which is a hash of its URL or the
    provider's stream id."""
    channels = (
        await session.execute(select(Channel).order_by(Channel.number).options(*service.load_options()))
    ).scalars()
    keys = {
        sid: (key, source_id)
        for sid, key, source_id in await session.execute(
            select(Stream.id, Stream.stream_key, Stream.source_id).join(
                ChannelSource, ChannelSource.stream_id == Stream.id
            )
        )
    }
    out = []
    for channel in channels:
        sources = []
        for s in channel.sources:
            if s.url:
                sources.append({"url": s.url, "enabled": s.enabled})
                continue
            item: dict[str, Any] = {
                "playlist": s.playlist.name if s.playlist is not None else None,
                "name": s.stream.name if s.stream is not None else s.label,
                "enabled": s.enabled,
            }
            if s.stream is not None:
                key, source_id = keys[s.stream.id]
                item |= {"stream_key": _key_without_source(key, source_id), "tvg_id": s.stream.tvg_id}
            else:
                item["missing"] = True
            sources.append(item)
        epg = None
        if channel.epg_channel_id and channel.epg_source is not None:
            epg = {
                "source": channel.epg_source.name,
                "channel_id": channel.epg_channel_id,
                "method": channel.epg_match_method,
                "score": channel.epg_match_score,
            }
        out.append(
            {
                "guide_id": channel.guide_id,
                "name": channel.name,
                "number": channel.number,
                "enabled": channel.enabled,
                "tags": [t.name for t in channel.tags],
                "logo_url": channel.logo_url,
                "guide_offset_minutes": channel.guide_offset_minutes,
                "epg": epg,
                "sources": sources,
            }
        )
    return {"format": FORMAT, "version": VERSION, "exported_at": iso_z(utcnow()), "channels": out}


def parse_file(document: Any) -> LineupFile:
    """Check the document's shape and version; a newer version or a wrong shape is a 400 naming the problem."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise Invalid(
            f'This is not a TIC lineup file (expected "format": "{FORMAT}")',
            code="LINEUP_INVALID",
            fields={"format": "not a TIC lineup"},
        )
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Invalid(
            "The lineup file has no valid format version",
            code="LINEUP_INVALID",
            fields={"version": "invalid"},
        )
    if version > VERSION:
        raise Invalid(
            f"This lineup was exported by a newer TIC (format version {version}); this TIC reads version {VERSION}. "
            "Update TIC, then import it again.",
            code="LINEUP_VERSION_UNSUPPORTED",
            fields={"version": f"newer than {VERSION}"},
        )
    try:
        return LineupFile.model_validate(document)
    except ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]): str(e["msg"]) for e in exc.errors()[:20]}
        first = next(iter(fields))
        raise Invalid(
            f"The lineup file is not valid: {first}: {fields[first]}", code="LINEUP_INVALID", fields=fields
        ) from None


def _check(lineup: LineupFile) -> list[dict[str, Any]]:
    """Clean and cross-check every channel before anything is written."""
    seen: dict[tuple[str, Any], int] = {}
    cleaned = []
    for index, ch in enumerate(lineup.channels):
        where = f"channels.{index}"
        if not service.valid_guide_id(ch.guide_id):
            raise Invalid(
                f"Channel {index + 1} has an invalid guide id",
                code="LINEUP_INVALID",
                fields={f"{where}.guide_id": "invalid"},
            )
        for key in (("guide_id", ch.guide_id.casefold()), ("number", ch.number)):
            if key in seen:
                raise Invalid(
                    f"Channels {seen[key] + 1} and {index + 1} have the same {key[0].replace('_', ' ')}",
                    code="LINEUP_INVALID",
                    fields={f"{where}.{key[0]}": "duplicate"},
                )
            seen[key] = index
        sources = []
        for n, src in enumerate(ch.sources):
            if src.url is not None:
                sources.append(
                    {
                        "url": service.clean_source_url(src.url, f"{where}.sources.{n}.url"),
                        "enabled": src.enabled,
                    }
                )
            elif src.playlist:
                sources.append(src.model_dump())
            else:
                raise Invalid(
                    "A source needs a playlist or a url",
                    code="LINEUP_INVALID",
                    fields={f"{where}.sources.{n}": "empty"},
                )
        cleaned.append(
            {
                "guide_id": ch.guide_id,
                "name": service.clean_name(ch.name, f"{where}.name"),
                "number": ch.number,
                "enabled": ch.enabled,
                "tags": service.clean_tags(ch.tags, f"{where}.tags"),
                "logo_url": service.clean_logo_url(ch.logo_url, f"{where}.logo_url"),
                "guide_offset_minutes": ch.guide_offset_minutes,
                "epg": ch.epg,
                "sources": sources,
            }
        )
    return cleaned


class _Resolver:
    """Finds streams by playlist name and identity: stream key, then tvg-id and name, then a unique name."""

    def __init__(self, playlists: dict[str, int]) -> None:
        self.playlists = playlists
        self.by_key: dict[tuple[int, str], Any] = {}
        self.by_name: dict[tuple[int, str], list[Any]] = {}

    async def load(self, session: AsyncSession, sources: Sequence[dict[str, Any]]) -> None:
        """Read only the streams the file can refer to: by key first, then by name for the rest."""
        wanted = [
            s for s in sources if "playlist" in s and s["playlist"] in self.playlists and not s.get("missing")
        ]
        keys: set[str] = set()
        for src in wanted:
            if src.get("stream_key"):
                pid = self.playlists[src["playlist"]]
                keys.update((f"{pid}:{src['stream_key']}", src["stream_key"]))
        columns = (Stream.id, Stream.source_id, Stream.stream_key, Stream.tvg_id, Stream.name)
        for part in service.chunks(sorted(keys)):
            for row in await session.execute(select(*columns).where(Stream.stream_key.in_(part))):
                self.by_key.setdefault((row.source_id, row.stream_key), row)
        names = sorted({src.get("name") or "" for src in wanted if self._by_key(src) is None} - {""})
        for part in service.chunks(names):
            stmt = select(*columns).where(
                Stream.name.in_(part), Stream.source_id.in_(list(self.playlists.values()))
            )
            for row in await session.execute(stmt.order_by(Stream.id)):
                self.by_name.setdefault((row.source_id, row.name), []).append(row)

    def _by_key(self, src: dict[str, Any]) -> Any:
        pid = self.playlists[src["playlist"]]
        key = src.get("stream_key")
        if not key:
            return None
        return self.by_key.get((pid, f"{pid}:{key}")) or self.by_key.get((pid, key))

    def find(self, src: dict[str, Any]) -> tuple[int | None, Any]:
        playlist_id = self.playlists.get(src["playlist"])
        if playlist_id is None or src.get("missing"):
            return playlist_id, None
        found = self._by_key(src)
        if found is not None:
            return playlist_id, found
        same_name = self.by_name.get((playlist_id, src.get("name") or ""), [])
        tvg_id = (src.get("tvg_id") or "").casefold()
        same_id = [s for s in same_name if (s.tvg_id or "").casefold() == tvg_id]
        if len(same_id) == 1:
            return playlist_id, same_id[0]
        return playlist_id, same_name[0] if len(same_name) == 1 else None


async def _write_channels(
    session: AsyncSession, rows: list[dict[str, Any]], guides: dict[str, int], warnings: list[str]
) -> tuple[dict[str, int], int, int]:
    """Delete channels not in the file, update the ones that are (by guide id), insert the new ones."""
    existing = {g.casefold(): cid for cid, g in await session.execute(select(Channel.id, Channel.guide_id))}
    in_file = {r["guide_id"].casefold() for r in rows}
    deleted = await service.delete_channels(session, [cid for g, cid in existing.items() if g not in in_file])
    kept = [existing[r["guide_id"].casefold()] for r in rows if r["guide_id"].casefold() in existing]
    for part in service.chunks(kept):
        stmt = update(Channel).where(Channel.id.in_(part)).values(number=-Channel.id)
        await session.execute(stmt.execution_options(synchronize_session=False))
    now = utcnow()
    values = []
    missing_guides = 0
    for r in rows:
        epg = r["epg"]
        epg_id = guides.get(epg.source) if epg is not None else None
        if epg is not None and epg_id is None:
            missing_guides += 1
        values.append(
            {
                "name": r["name"],
                "number": r["number"],
                "enabled": r["enabled"],
                "logo_url": r["logo_url"],
                "guide_offset_minutes": r["guide_offset_minutes"],
                "epg_source_id": epg_id,
                "epg_channel_id": epg.channel_id if epg_id is not None else None,
                "epg_match_method": (epg.method or "import") if epg_id is not None else None,
                "epg_match_score": epg.score if epg_id is not None else None,
                "updated_at": now,
            }
        )
    if missing_guides:
        warnings.append(
            f"{missing_guides} channels name a guide that does not exist here; they are left without a guide"
        )
    ids: dict[str, int] = {}
    table = cast(Table, Channel.__table__)
    updates = [
        {"b_id": existing[r["guide_id"].casefold()], **{f"b_{k}": v for k, v in v_.items()}}
        for r, v_ in zip(rows, values, strict=True)
        if r["guide_id"].casefold() in existing
    ]
    if updates:
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({k: bindparam(f"b_{k}") for k in values[0]})
        )
        for part in service.chunks(updates, 1000):
            await session.execute(stmt, list(part))
    for r in rows:
        if r["guide_id"].casefold() in existing:
            ids[r["guide_id"]] = existing[r["guide_id"].casefold()]
    new = [(r, v_) for r, v_ in zip(rows, values, strict=True) if r["guide_id"].casefold() not in existing]
    for part in service.chunks(new, 1000):
        params = [v_ | {"guide_id": r["guide_id"], "created_at": now} for r, v_ in part]
        created = (
            await session.execute(insert(Channel).returning(Channel.id, sort_by_parameter_order=True), params)
        ).scalars()
        for (r, _v), cid in zip(part, created, strict=True):
            ids[r["guide_id"]] = cid
    return ids, deleted, missing_guides


async def _write_tags(session: AsyncSession, rows: list[dict[str, Any]], ids: dict[str, int]) -> int:
    await service.unlink_tags(session, list(ids.values()), [])
    names = list(dict.fromkeys(t for r in rows for t in r["tags"]))
    tag_ids = await service.ensure_tags(session, names)
    links = [
        {"channel_id": ids[r["guide_id"]], "tag_id": tag_ids[t.casefold()]} for r in rows for t in r["tags"]
    ]
    for part in service.chunks(links, 1000):
        await session.execute(insert(channel_tag_link), list(part))
    await service.delete_unused_tags(session)
    return len(names)


async def _write_sources(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    ids: dict[str, int],
    resolver: _Resolver,
    warnings: list[str],
) -> tuple[int, int]:
    """Sources in file order; rows that already link the same stream or URL are kept (their TVH mux too)."""
    current: dict[int, list[Any]] = {}
    for part in service.chunks(list(ids.values())):
        for row in await session.execute(
            select(
                ChannelSource.id, ChannelSource.channel_id, ChannelSource.stream_id, ChannelSource.url
            ).where(ChannelSource.channel_id.in_(part))
        ):
            current.setdefault(row.channel_id, []).append(row)
    now = utcnow()
    moves: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    keep: set[int] = set()
    missing = 0
    for r in rows:
        cid = ids[r["guide_id"]]
        reusable = {
            (s.stream_id, s.url): s.id for s in current.get(cid, []) if s.stream_id is not None or s.url
        }
        for position, src in enumerate(r["sources"]):
            if "url" in src and src.get("url"):
                values = {"stream_id": None, "url": src["url"], "label": None, "playlist_source_id": None}
            else:
                playlist_id, stream = resolver.find(src)
                if stream is None:
                    missing += 1
                values = {
                    "stream_id": stream.id if stream is not None else None,
                    "url": None,
                    "label": ((stream.name if stream is not None else src.get("name")) or "")[:500] or None,
                    "playlist_source_id": playlist_id,
                }
            reuse = (
                reusable.pop((values["stream_id"], values["url"]), None)
                if values["stream_id"] or values["url"]
                else None
            )
            if reuse is not None:
                keep.add(reuse)
                moves.append({"b_id": reuse, "b_position": position, "b_enabled": src["enabled"]})
            else:
                inserts.append(
                    values
                    | {"channel_id": cid, "position": position, "enabled": src["enabled"], "created_at": now}
                )
    drop = [s.id for group in current.values() for s in group if s.id not in keep]
    for part in service.chunks(drop):
        await session.execute(delete(ChannelSource).where(ChannelSource.id.in_(part)))
    for part in service.chunks(sorted(keep)):
        stmt = update(ChannelSource).where(ChannelSource.id.in_(part)).values(position=-ChannelSource.id - 1)
        await session.execute(stmt.execution_options(synchronize_session=False))
    if moves:
        table = cast(Table, ChannelSource.__table__)
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(position=bindparam("b_position"), enabled=bindparam("b_enabled"))
        )
        await session.execute(stmt, moves)
    for part in service.chunks(inserts, 1000):
        await session.execute(insert(ChannelSource), list(part))
    if missing:
        warnings.append(
            f"{missing} sources name streams that are not in your playlists now; they are kept and flagged missing"
        )
    return len(moves) + len(inserts), missing


async def import_lineup(session: AsyncSession, document: Any) -> dict[str, Any]:
    """Make the lineup what the file says. Channels are matched by guide id, so ids and TVH links survive.

    Everything is validated before the first write and the caller's transaction covers all writes,
    so a bad file changes nothing.
    """
    rows = _check(parse_file(document))
    playlists = {n: i for i, n in await session.execute(select(PlaylistSource.id, PlaylistSource.name))}
    guides = {n: i for i, n in await session.execute(select(EpgSource.id, EpgSource.name))}
    warnings: list[str] = []
    unknown = sorted(
        {
            s["playlist"]
            for r in rows
            for s in r["sources"]
            if s.get("playlist") and s["playlist"] not in playlists
        }
    )
    if unknown:
        warnings.append(
            f"Playlists not found here: {', '.join(unknown[:10])}; their streams are flagged missing"
        )
    resolver = _Resolver(playlists)
    await resolver.load(session, [s for r in rows for s in r["sources"]])
    existing = len((await session.execute(select(Channel.id))).all())
    ids, deleted, missing_guides = await _write_channels(session, rows, guides, warnings)
    tags = await _write_tags(session, rows, ids)
    sources, missing_sources = await _write_sources(session, rows, ids, resolver, warnings)
    updated = existing - deleted
    return {
        "channels": len(rows),
        "created": len(rows) - updated,
        "updated": updated,
        "deleted": deleted,
        "tags": tags,
        "sources": sources,
        "missing_sources": missing_sources,
        "missing_guides": missing_guides,
        "warnings": warnings[:20],
    }
