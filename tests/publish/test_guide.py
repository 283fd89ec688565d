"""TIC's guide into TVHeadend: the XMLTV socket push (twice for new ids), links, and tv_grab_tic."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from sqlalchemy import insert

from backend.db import Database, utcnow
from backend.epg.models import EpgSource, Programme
from backend.outputs.service import xmltv_files
from backend.publish.configure import ConfigureOptions, configure_tvheadend
from backend.publish.guide import TV_GRAB_TIC, push_guide
from backend.tvheadend.client import TvheadendClient
from tests.fakes.tvheadend import FakeTvheadend
from tests.publish.conftest import add_channel, add_playlist, add_stream, publish

REPO = Path(__file__).resolve().parents[2]


async def guide_lineup(db: Database) -> None:
    now = utcnow()
    async with db.transaction() as session:
        result = await session.execute(
            insert(EpgSource).values(name="Guide", kind="xmltv_url", created_at=now, updated_at=now)
        )
        source = int(result.inserted_primary_key[0])  # type: ignore[index]
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        for i in range(3):
            await session.execute(
                insert(Programme).values(
                    source_id=source,
                    xmltv_channel_id="one.src",
                    start=start + timedelta(hours=i),
                    stop=start + timedelta(hours=i + 1),
                    title=f"Show {i} & more",
                    description="About <it>",
                    season=2,
                    episode=5,
                )
            )
    playlist = await add_playlist(db, "P")
    stream = await add_stream(db, playlist, "One", "http://p.invalid/one.ts")
    await add_channel(db, "One", 1, streams=[(playlist, stream)], epg=(source, "one.src"), guide_id="one.tic")


async def test_push_links_and_imports_the_guide(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend, tmp_path: Path
) -> None:
    await guide_lineup(db)
    # A channel TIC does not manage shares the name: TVHeadend would link TIC's guide to it by name.
    other = tvh.state.add_channel("One", 900)
    await publish(db, client)
    await configure_tvheadend(client, ConfigureOptions(epg_mode="socket", xmltv_socket=tvh.xmltv_socket_path))
    ours = next(u for u, c in tvh.state.channels.items() if u != other)

    first = await push_guide(db, client, tvh.xmltv_socket_path, tmp_path, poll_interval=0.05)
    assert first["pushes"] == 2 and first["new_channel_ids"] == 1 and first["programmes"] == 3
    assert first["source"] == "publish" and not (tmp_path / "publish" / "tvh-guide.xml").exists()
    events = [e for e in tvh.state.epg_events.values() if e["channelUuid"] == ours]
    assert sorted(e["title"] for e in events) == ["Show 0 & more", "Show 1 & more", "Show 2 & more"]
    assert events[0]["seasonNumber"] == 2 and events[0]["episodeNumber"] == 5
    assert not [e for e in tvh.state.epg_events.values() if e["channelUuid"] == other]
    grab = next(iter(tvh.state.epggrab_channels.values()))
    assert grab["id"] == "one.tic" and grab["channels"] == [ours]

    tvh.clear_calls()
    second = await push_guide(db, client, tvh.xmltv_socket_path, tmp_path)
    assert second["pushes"] == 1 and second["relinked"] == 0
    assert tvh.write_calls() == []
    assert len(tvh.state.epg_events) == 3, "a re-push updates, it does not duplicate"


async def test_push_without_the_socket_says_what_to_fix(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend, tmp_path: Path
) -> None:
    await guide_lineup(db)
    try:
        await push_guide(db, client, str(tmp_path / "missing.sock"), tmp_path)
    except Exception as exc:
        assert getattr(exc, "code", "") == "TVH_XMLTV_SOCKET_UNAVAILABLE"
        assert "External: XMLTV" in str(exc)
    else:
        raise AssertionError("pushing into a missing socket must fail")


async def test_the_guide_built_for_clients_is_pushed_when_there_is_one(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend, tmp_path: Path
) -> None:
    await guide_lineup(db)
    await publish(db, client)
    await configure_tvheadend(client, ConfigureOptions(epg_mode="socket", xmltv_socket=tvh.xmltv_socket_path))
    built = xmltv_files(tmp_path).xml
    built.parent.mkdir(parents=True)
    start = datetime.now(UTC).strftime("%Y%m%d%H0000 +0000")
    stop = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y%m%d%H0000 +0000")
    built.write_text(
        '<?xml version="1.0"?><tv><channel id="one.tic"><display-name>One</display-name></channel>'
        f'<programme start="{start}" stop="{stop}" channel="one.tic"><title>From outputs</title></programme></tv>'
    )
    result = await push_guide(db, client, tvh.xmltv_socket_path, tmp_path, poll_interval=0.05)
    assert result["source"] == "outputs" and result["pushes"] == 2
    assert [e["title"] for e in tvh.state.epg_events.values()] == ["From outputs"]
    assert built.exists()


def test_docker_tv_grab_tic_is_the_served_script() -> None:
    assert (REPO / "docker" / "tv_grab_tic").read_text() == TV_GRAB_TIC
    assert os.access(REPO / "docker" / "tv_grab_tic", os.X_OK)


async def test_tv_grab_tic_fetches_the_guide(tmp_path: Path) -> None:
    body = '<?xml version="1.0"?><tv><channel id="a"/></tv>\n'

    async def xmltv(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/xml")

    app = web.Application()
    app.router.add_get("/tic-api/epg/xmltv.xml", xmltv)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    script = str(REPO / "docker" / "tv_grab_tic")
    try:
        env = {**os.environ, "TIC_XMLTV_URL": f"http://127.0.0.1:{port}/tic-api/epg/xmltv.xml?stream_key=k"}
        proc = await asyncio.create_subprocess_exec(
            "sh", script, "--quiet", stdout=asyncio.subprocess.PIPE, env=env
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0 and out.decode() == body
        desc = await asyncio.create_subprocess_exec(
            "sh", script, "--description", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await desc.communicate()
        assert out.decode().startswith("tv_grab_tic")
        missing = {k: v for k, v in os.environ.items() if k != "TIC_XMLTV_URL"}
        missing["HOME"] = str(tmp_path)
        proc = await asyncio.create_subprocess_exec("sh", script, stderr=asyncio.subprocess.PIPE, env=missing)
        _, err = await proc.communicate()
        assert proc.returncode == 1 and b"no guide URL" in err
    finally:
        await runner.cleanup()
