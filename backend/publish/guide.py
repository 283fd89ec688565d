"""TIC's guide into TVHeadend: XMLTV pushed into the external XMLTV socket, or the tv_grab_tic grabber."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import and_, select

from backend.channels.models import Channel
from backend.db import Database
from backend.epg.models import Programme
from backend.errors import AppError
from backend.outputs.formats import output_guide_id
from backend.outputs.service import read_xmltv_meta, xmltv_files
from backend.tasks.offload import run_blocking
from backend.tvheadend.client import TvheadendClient

log = logging.getLogger(__name__)

#: The guide window pushed to TVHeadend.
PAST = timedelta(hours=6)
FUTURE = timedelta(days=8)
_WRITE_CHUNK = 2000
_SOCKET_CHUNK = 256 * 1024


class GuideSocketUnavailable(AppError):
    status = 503
    code = "TVH_XMLTV_SOCKET_UNAVAILABLE"


# ---------------------------------------------------------------------------------------------------
# The XMLTV document
# ---------------------------------------------------------------------------------------------------


def _xmltv_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S +0000")


def _channel_xml(guide_id: str, name: str, number: int, logo: str | None) -> str:
    parts = [
        f"<channel id={quoteattr(output_guide_id(guide_id))}>",
        f"<display-name>{escape(name)}</display-name>",
    ]
    parts.append(f"<display-name>{number}</display-name>")
    if logo:
        parts.append(f"<icon src={quoteattr(logo)}/>")
    parts.append("</channel>\n")
    return "".join(parts)


def _programme_xml(guide_id: str, p: Programme, offset: timedelta) -> str:
    parts = [
        f"<programme start={quoteattr(_xmltv_time(p.start + offset))} "
        f"stop={quoteattr(_xmltv_time(p.stop + offset))} channel={quoteattr(output_guide_id(guide_id))}>",
        f"<title>{escape(p.title)}</title>",
    ]
    if p.sub_title:
        parts.append(f"<sub-title>{escape(p.sub_title)}</sub-title>")
    if p.description:
        parts.append(f"<desc>{escape(p.description)}</desc>")
    for category in p.categories or []:
        parts.append(f"<category>{escape(str(category))}</category>")
    if p.icon:
        parts.append(f"<icon src={quoteattr(p.icon)}/>")
    if p.season is not None or p.episode is not None:
        season = "" if p.season is None else str(max(0, p.season - 1))
        episode = "" if p.episode is None else str(max(0, p.episode - 1))
        parts.append(f'<episode-num system="xmltv_ns">{season}.{episode}.</episode-num>')
    elif p.episode_num:
        parts.append(f'<episode-num system="onscreen">{escape(p.episode_num)}</episode-num>')
    parts.append("</programme>\n")
    return "".join(parts)


def _append(path: Path, chunks: list[str]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(chunks))


async def write_guide(db: Database, path: Path, now: datetime | None = None) -> dict[str, Any]:
    """Write TIC's guide for the enabled channels as XMLTV to `path`: channel ids are the guide ids.

    The outputs domain builds the XMLTV clients download; this is the same guide, written for
    TVHeadend's socket with TVHeadend-friendly ids, streamed from the database in chunks.
    """
    now = now or datetime.now(UTC)
    await run_blocking(lambda: path.parent.mkdir(parents=True, exist_ok=True))
    await run_blocking(
        path.write_text, '<?xml version="1.0" encoding="UTF-8"?>\n<tv generator-info-name="TIC">\n'
    )
    async with db.session() as session:
        channels = (
            (await session.execute(select(Channel).where(Channel.enabled.is_(True)).order_by(Channel.number)))
            .scalars()
            .all()
        )
        chunks = [_channel_xml(c.guide_id, c.name, c.number, c.logo_url) for c in channels]
        await run_blocking(_append, path, chunks)
        programmes = 0
        stmt = (
            select(Channel.guide_id, Channel.guide_offset_minutes, Programme)
            .join(
                Programme,
                and_(
                    Programme.source_id == Channel.epg_source_id,
                    Programme.xmltv_channel_id == Channel.epg_channel_id,
                ),
            )
            .where(Channel.enabled.is_(True), Programme.stop > now - PAST, Programme.start < now + FUTURE)
            .order_by(Channel.number, Programme.start)
        )
        chunks = []
        result = await session.stream(stmt.execution_options(yield_per=_WRITE_CHUNK))
        async for guide_id, offset_minutes, programme in result:
            chunks.append(_programme_xml(guide_id, programme, timedelta(minutes=offset_minutes or 0)))
            programmes += 1
            if len(chunks) >= _WRITE_CHUNK:
                await run_blocking(_append, path, chunks)
                chunks = []
    chunks.append("</tv>\n")
    await run_blocking(_append, path, chunks)
    return {"channel_ids": [output_guide_id(c.guide_id) for c in channels], "programmes": programmes}


# ---------------------------------------------------------------------------------------------------
# Pushing into TVHeadend's external XMLTV socket
# ---------------------------------------------------------------------------------------------------


def _read_chunk(path: Path, offset: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(_SOCKET_CHUNK)


async def push_file(socket_path: str, path: Path, timeout: float = 120.0) -> None:
    """Write one XMLTV document into the socket and close it; TVHeadend imports it after EOF."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(socket_path), timeout)
    except (OSError, TimeoutError) as exc:
        raise GuideSocketUnavailable(
            f"Cannot connect to TVHeadend's XMLTV socket at {socket_path} ({type(exc).__name__}): check "
            "that the 'External: XMLTV' grabber is enabled in TVHeadend (the configure task does this) and "
            "that the tvh_xmltv_socket setting names the socket as TIC sees it (a volume shared with "
            "TVHeadend's configuration directory)"
        ) from exc
    try:
        offset = 0
        while True:
            chunk = await run_blocking(_read_chunk, path, offset)
            if not chunk:
                break
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), timeout)
            offset += len(chunk)
        if writer.can_write_eof():
            writer.write_eof()
        # TVHeadend closes its end once it has read everything; wait for that before returning.
        await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError) as exc:
        raise GuideSocketUnavailable(
            f"TVHeadend's XMLTV socket at {socket_path} failed while TIC was writing the guide "
            f"({type(exc).__name__}); the next push will try again"
        ) from exc
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            log.debug("XMLTV socket already closed by TVHeadend")


def _fed_by_tic(row: dict[str, Any]) -> bool:
    """Grabber channels of the two modules TIC feeds: the external XMLTV socket and tv_grab_tic."""
    modid = str(row.get("modid", ""))
    return modid == "xmltv" or modid.rsplit("/", 1)[-1] == "tv_grab_tic"


async def _grabber_channels(client: TvheadendClient) -> list[dict[str, Any]]:
    return [r for r in await client.grid("epggrab/channel/grid") if _fed_by_tic(r)]


async def _wait_for_ids(client: TvheadendClient, ids: set[str], timeout: float, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        known = {str(r.get("id")) for r in await _grabber_channels(client)}
        if ids <= known:
            return
        await asyncio.sleep(interval)
    log.info("TVHeadend did not list %d new XMLTV channel(s) within %.0f s", len(ids), timeout)


async def _guide_file(db: Database, data_dir: Path) -> tuple[Path, set[str], int | None, bool]:
    """The XMLTV to push: the guide the outputs domain built for clients, else one written here.

    Returns (path, channel ids, programme count if known, whether the file is a temporary one).
    """
    built = xmltv_files(data_dir).xml
    if await run_blocking(built.exists):
        async with db.session() as session:
            ids = (await session.execute(select(Channel.guide_id).where(Channel.enabled.is_(True)))).scalars()
            wanted = {output_guide_id(i) for i in ids}
        meta = await run_blocking(read_xmltv_meta, data_dir) or {}
        programmes = meta.get("programmes")
        return built, wanted, int(programmes) if isinstance(programmes, int) else None, False
    path = data_dir / "publish" / "tvh-guide.xml"
    written = await write_guide(db, path)
    return path, set(written["channel_ids"]), int(written["programmes"]), True


async def push_guide(
    db: Database,
    client: TvheadendClient,
    socket_path: str,
    data_dir: Path,
    *,
    link_timeout: float = 15.0,
    poll_interval: float = 0.5,
) -> dict[str, Any]:
    """Push the guide; twice when it brings channel ids TVHeadend has not seen, then check the links.

    TVHeadend creates and links grabber channels on the first push that names them but imports their
    programmes only on the next one (tvheadend-api.md §5.2), hence the second push.
    """
    path, ids, programmes, temporary = await _guide_file(db, data_dir)
    try:
        known = {str(r.get("id")) for r in await _grabber_channels(client)}
        new_ids = ids - known
        relinked = await link_guide_channels(db, client)
        await push_file(socket_path, path)
        pushes = 1
        if new_ids:
            # Link the new grabber channels before their programmes arrive, so that a channel TIC does
            # not manage, linked by TVHeadend because it shares a name, never receives TIC's programmes.
            await _wait_for_ids(client, new_ids, link_timeout, poll_interval)
            relinked += await link_guide_channels(db, client)
            await push_file(socket_path, path)
            pushes = 2
    finally:
        if temporary:
            await run_blocking(path.unlink, True)
    return {
        "pushes": pushes,
        "channels": len(ids),
        "new_channel_ids": len(new_ids),
        "programmes": programmes,
        "relinked": relinked,
        "source": "outputs" if not temporary else "publish",
    }


async def link_guide_channels(db: Database, client: TvheadendClient) -> int:
    """Link each XMLTV grabber channel named by a TIC guide id to exactly that channel's TVH channel.

    TVHeadend links by EPG id or by name; by name it could also link TIC's guide to an unmanaged
    channel that happens to share the name, and a channel with automatic EPG off is not linked at all.
    Only grabber channels carrying TIC guide ids are touched; a save happens only where links differ.
    """
    async with db.session() as session:
        rows = (
            await session.execute(
                select(Channel.guide_id, Channel.tvh_uuid).where(
                    Channel.enabled.is_(True), Channel.tvh_uuid.is_not(None)
                )
            )
        ).all()
    wanted = {output_guide_id(guide_id): uuid for guide_id, uuid in rows}
    changes = []
    for row in await _grabber_channels(client):
        target = wanted.get(str(row.get("id")))
        if target is not None and sorted(row.get("channels") or []) != [target]:
            changes.append({"uuid": row["uuid"], "channels": [target]})
    for i in range(0, len(changes), 100):
        await client.idnode_save(changes[i : i + 100])
    return len(changes)


# ---------------------------------------------------------------------------------------------------
# tv_grab_tic: for a TVHeadend that TIC cannot reach through the filesystem
# ---------------------------------------------------------------------------------------------------

TV_GRAB_TIC = r"""#!/bin/sh
# tv_grab_tic: an XMLTV grabber for TVHeadend that fetches the guide of your TIC lineup.
#
# Install it on the machine (or in the container) where TVHeadend runs, in a directory on TVHeadend's
# PATH, e.g.:  install -m 0755 tv_grab_tic /usr/local/bin/tv_grab_tic
# Restart TVHeadend; it then lists "Internal: XMLTV: tv_grab_tic ..." among its EPG grabbers, and TIC's
# configure task enables it and sets its schedule.
#
# The guide URL is TIC's XMLTV output with a stream key, e.g.
#   http://tic:9985/tic-api/epg/xmltv.xml?stream_key=...
# taken from, in order: the TIC_XMLTV_URL environment variable, the first line of
# ~/.xmltv/tv_grab_tic.conf (home of the user TVHeadend runs as), or /etc/tv_grab_tic.conf.
set -eu

case "${1:-}" in
  --description) echo "tv_grab_tic: the guide of your TIC lineup"; exit 0 ;;
  --version) echo "tv_grab_tic 1.0"; exit 0 ;;
  --capabilities) echo "baseline"; exit 0 ;;
esac

output=""
while [ $# -gt 0 ]; do
  case "$1" in
    --output) output="${2:-}"; shift ;;
  esac
  shift
done

url="${TIC_XMLTV_URL:-}"
if [ -z "$url" ]; then
  for conf in "${HOME:-/nonexistent}/.xmltv/tv_grab_tic.conf" /etc/tv_grab_tic.conf; do
    if [ -r "$conf" ]; then
      url=$(head -n 1 "$conf" | tr -d '\r')
      break
    fi
  done
fi
if [ -z "$url" ]; then
  echo "tv_grab_tic: no guide URL; set TIC_XMLTV_URL or write it into /etc/tv_grab_tic.conf" >&2
  exit 1
fi

fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --compressed --max-time 900 "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O - "$url"
  else
    python3 -c 'import shutil, sys, urllib.request; shutil.copyfileobj(urllib.request.urlopen(sys.argv[1], timeout=900), sys.stdout.buffer)' "$url"
  fi
}

if [ -n "$output" ]; then
  fetch > "$output"
else
  fetch
fi
"""


def grabber_module(modules: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """TVHeadend's internal grabber module for tv_grab_tic, once it is installed on TVHeadend's PATH."""
    for module in modules:
        if str(module.get("path", "")).rsplit("/", 1)[-1] == "tv_grab_tic":
            return module
    return None
