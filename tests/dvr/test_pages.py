"""The /dvr page and its live partial: sections, player, rule editor, rights."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiClient
from tests.dvr.conftest import Guide, TokenClient, insert_recording, make_user


async def test_dvr_page_shows_sections_player_and_rules(
    admin: ApiClient, guide: Guide, svc: Any, configured: Any
) -> None:
    ch = await guide.channel("One")
    await insert_recording(svc, ch, tvh_uuid="d" * 32, title="Finished Film")
    await insert_recording(svc, ch, status="failed", file_size=None, title="Broken", minutes_ago=90)
    await insert_recording(svc, ch, status="scheduled", minutes_ago=-60, file_size=None, title="Tonight")
    rule = await admin.post(
        "/tic-api/recording-rules", json={"title_pattern": "Doctor", "new_episodes_only": True}
    )
    assert rule.status_code == 201
    resp = await admin.get("/dvr")
    assert resp.status_code == 200
    html = await resp.get_data(as_text=True)
    for text in (
        "Recording now",
        "Upcoming",
        "Completed",
        "Failed, missed and cancelled",
        "Tonight",
        "Broken",
    ):
        assert text in html
    assert 'data-play="/tic-api/recordings/1/hls.m3u8"' in html
    assert "/static/vendor/hls.min.js" in html and "/static/dvr.js" in html
    assert "Doctor" in html and "new episodes only" in html
    assert 'data-version="' in html
    partial = await (await admin.get("/dvr/partial")).get_data(as_text=True)
    assert "Finished Film" in partial and "<html" not in partial


async def test_dvr_page_rights(app: Any, boss: TokenClient, guide: Guide, svc: Any) -> None:
    ch = await guide.channel("One")
    await insert_recording(svc, ch, tvh_uuid="e" * 32, title="Boss Film", owner_id=boss.user_id)
    nodvr = await make_user(app, "nodvr", "streamer", "none")
    assert (await nodvr.get("/dvr")).status_code == 403
    own = await make_user(app, "owner", "streamer", "own")
    await insert_recording(svc, ch, tvh_uuid="f" * 32, title="My Show", owner_id=own.user_id)
    html = await (await own.get("/dvr")).get_data(as_text=True)
    assert "My Show" in html and "Boss Film" not in html


async def test_static_player_script_is_served(app: Any) -> None:
    resp = await app.test_client().get("/static/dvr.js")
    assert resp.status_code == 200
    body = await resp.get_data(as_text=True)
    assert "/tic-api/recordings/poll" in body and "Hls.isSupported" in body


async def test_openapi_documents_the_dvr_routes(app: Any) -> None:
    resp = await app.test_client().get("/openapi.json")
    assert resp.status_code == 200
    paths = (await resp.get_json())["paths"]
    for path in (
        "/tic-api/recordings",
        "/tic-api/recordings/poll",
        "/tic-api/recordings/{recording_id}/hls.m3u8",
        "/tic-api/recording-rules/preview",
    ):
        assert path in paths, path
