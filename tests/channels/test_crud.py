"""Channel CRUD through the API: fields, guide ids, numbers, sources, tags, bad input."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.channels.models import Channel, ChannelSource, ChannelTag
from backend.epg.models import EpgChannel
from backend.playlists.models import Stream
from tests.channels.conftest import Data, create, listing, queued_jobs
from tests.conftest import ApiClient


async def test_create_from_a_stream_takes_its_tvg_id_logo_and_next_number(
    admin: ApiClient, data: Data, svc: Any
) -> None:
    playlist = await data.playlist("Provider A")
    stream = await data.stream(
        playlist,
        "UK: BBC One HD",
        tvg_id="BBCOne.uk",
        tvg_logo="http://logos.invalid/bbc1.png",
        group_title="UK",
    )
    first = await create(
        admin, {"name": "BBC One", "sources": [{"stream_id": stream.id}], "tags": ["UK", "News"]}
    )
    assert first["number"] == 1
    assert first["guide_id"] == "BBCOne.uk"
    assert first["logo_url"] == "http://logos.invalid/bbc1.png"
    assert first["tags"] == ["News", "UK"]
    assert first["tvh_uuid"] is None
    assert first["created_at"].endswith("Z")
    [source] = first["sources"]
    assert source | {"id": 0} == {
        "id": 0,
        "position": 0,
        "kind": "stream",
        "stream_id": stream.id,
        "url": None,
        "name": "UK: BBC One HD",
        "playlist_id": playlist.id,
        "playlist_name": "Provider A",
        "group": "UK",
        "tvg_id": "BBCOne.uk",
        "enabled": True,
        "missing": False,
    }
    second = await create(
        admin,
        {
            "name": "BBC One backup",
            "sources": [{"stream_id": stream.id}, {"url": "https://cdn.invalid/bbc1.m3u8"}],
        },
    )
    assert second["number"] == 2
    # The tvg-id is taken, so the second channel gets a slug with a short id; both stay valid ids.
    assert second["guide_id"] != "BBCOne.uk" and second["guide_id"].startswith("bbcone-uk.")
    assert [s["kind"] for s in second["sources"]] == ["stream", "url"]
    async with svc.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ChannelSource)) == 3
        assert await session.scalar(select(func.count()).select_from(ChannelTag)) == 2


async def test_guide_id_never_changes_and_is_read_only(admin: ApiClient, data: Data) -> None:
    playlist = await data.playlist()
    stream = await data.stream(playlist, "Weird", tvg_id='Bad id "with" <quotes>')
    made = await create(admin, {"name": "Weird", "sources": [{"stream_id": stream.id}]})
    # Characters that would break an M3U attribute or an XMLTV id are replaced.
    assert made["guide_id"] == "Bad-id-with-quotes"
    resp = await admin.patch(f"/tic-api/channels/{made['id']}", json={"name": "Renamed", "sources": []})
    assert resp.status_code == 200
    assert (await resp.get_json())["guide_id"] == "Bad-id-with-quotes"
    for field in ("guide_id", "tvh_uuid"):
        resp = await admin.patch(f"/tic-api/channels/{made['id']}", json={field: "x"})
        assert resp.status_code == 400
        assert (await resp.get_json())["fields"] == {field: "unknown field"}
    no_id = await create(admin, {"name": "日本 テレビ"})
    assert no_id["guide_id"].startswith("channel.")


async def test_hostile_names_are_stored_safely_and_blank_names_refused(
    admin: ApiClient, svc: Any, data: Data
) -> None:
    made = await create(admin, {"name": ' Say "hi" <b>&amp;\n\r\tnow\x00\x1b\u202e!  '})
    assert made["name"] == 'Say "hi" <b>&amp; now !'
    async with svc.db.session() as session:
        assert (await session.get(Channel, made["id"])).name == 'Say "hi" <b>&amp; now !'
    for name in ("", "   ", "\n\x00"):
        body = await create(admin, {"name": name}, expect=400)
        assert body["code"] == "NAME_REQUIRED"
        assert body["fields"] == {"name": "required"}
    body = await create(admin, {"name": "x" * 301}, expect=400)
    assert body["code"] == "NAME_TOO_LONG"
    body = await create(admin, {"name": "ok", "tags": ["  "]}, expect=400)
    assert body["fields"] == {"tags": "required"}
    body = await create(admin, {"name": "ok", "number": "5"}, expect=400)
    assert "number" in body["fields"]
    body = await create(admin, {"name": "ok", "logo_url": "javascript:alert(1)"}, expect=400)
    assert body == {"code": "URL_INVALID", "message": body["message"], "fields": {"logo_url": "invalid URL"}}


async def test_taken_number_is_rejected_or_shifts_only_the_run_in_the_way(
    admin: ApiClient, data: Data
) -> None:
    for number in (1, 2, 3, 5, 9):
        await create(admin, {"name": f"Ch {number}", "number": number})
    body = await create(admin, {"name": "New", "number": 2}, expect=409)
    assert body["code"] == "NUMBER_TAKEN"
    assert body["fields"] == {"number": "2 is taken"}
    assert "Ch 2" in body["message"]
    await create(admin, {"name": "New", "number": 2}, query="?on_conflict=shift")
    numbers = {c["name"]: c["number"] for c in (await listing(admin))["items"]}
    # 2 and 3 move down into the gap at 4; 5 and 9 keep their numbers.
    assert numbers == {"Ch 1": 1, "New": 2, "Ch 2": 3, "Ch 3": 4, "Ch 5": 5, "Ch 9": 9}
    resp = await admin.post("/tic-api/channels?on_conflict=sideways", json={"name": "x"})
    assert resp.status_code == 400


async def test_patch_number_moves_a_channel_and_shifts_others(admin: ApiClient, data: Data) -> None:
    ids = [(await create(admin, {"name": f"Ch {n}", "number": n}))["id"] for n in (1, 2, 3)]
    resp = await admin.patch(f"/tic-api/channels/{ids[2]}", json={"number": 1})
    assert resp.status_code == 409
    resp = await admin.patch(f"/tic-api/channels/{ids[2]}?on_conflict=shift", json={"number": 1})
    assert resp.status_code == 200
    numbers = {c["id"]: c["number"] for c in (await listing(admin))["items"]}
    assert numbers == {ids[2]: 1, ids[0]: 2, ids[1]: 3}
    resp = await admin.patch(f"/tic-api/channels/{ids[0]}", json={"number": None})
    assert resp.status_code == 400
    resp = await admin.patch(f"/tic-api/channels/{ids[0]}", json={"number": 0})
    assert resp.status_code == 400


async def test_source_of_a_deleted_stream_is_shown_missing(admin: ApiClient, data: Data, svc: Any) -> None:
    playlist = await data.playlist()
    gone = await data.stream(playlist, "Gone Channel")
    kept = await data.stream(playlist, "Kept Channel")
    made = await create(admin, {"name": "Ch", "sources": [{"stream_id": gone.id}, {"stream_id": kept.id}]})
    await data.delete(Stream, gone.id)
    channel = await (await admin.get(f"/tic-api/channels/{made['id']}")).get_json()
    first, second = channel["sources"]
    assert first["missing"] is True and first["stream_id"] is None and first["name"] == "Gone Channel"
    assert second["missing"] is False
    assert channel["problems"] == ["SOURCE_MISSING"]
    assert [c["id"] for c in (await listing(admin, "?problems=true"))["items"]] == [made["id"]]
    # Saving with {"id"} keeps the flagged source; reordering keeps the rows (and their TVH mux links).
    resp = await admin.patch(
        f"/tic-api/channels/{made['id']}", json={"sources": [{"stream_id": kept.id}, {"id": first["id"]}]}
    )
    body = await resp.get_json()
    assert resp.status_code == 200, body
    assert [(s["id"], s["missing"]) for s in body["sources"]] == [(second["id"], False), (first["id"], True)]
    body = await create(admin, {"name": "x", "sources": [{"stream_id": gone.id}]}, expect=400)
    assert body["code"] == "STREAM_NOT_FOUND"
    assert body["fields"] == {"sources.0.stream_id": "no such stream"}
    body = await create(
        admin, {"name": "x", "sources": [{"stream_id": kept.id, "url": "http://a.invalid/"}]}, expect=400
    )
    assert body["code"] == "INVALID"
    body = await create(
        admin,
        {"name": "x", "sources": [{"url": "http://a.invalid/x"}, {"url": "http://a.invalid/x"}]},
        expect=400,
    )
    assert body["code"] == "SOURCE_DUPLICATE"
    body = await create(admin, {"name": "x", "sources": [{"url": "file:///etc/passwd"}]}, expect=400)
    assert body["fields"] == {"sources.0.url": "invalid URL"}


async def test_guide_mapping_that_vanished_is_flagged(admin: ApiClient, data: Data) -> None:
    guide = await data.guide("XMLTV A")
    gone = await data.guide_channel(guide, "Gone.uk", "Gone TV", icon="http://icons.invalid/gone.png")
    await data.guide_channel(guide, "Stays.uk", "Stays TV")
    one = await create(
        admin, {"name": "One", "epg_id": guide.id, "epg_channel_id": "Gone.uk", "guide_offset_minutes": -60}
    )
    assert one["epg"] == {
        "source_name": "XMLTV A",
        "display_name": "Gone TV",
        "icon": "http://icons.invalid/gone.png",
        "programme_count": 1,
        "missing": False,
        "method": "manual",
        "score": None,
    }
    assert one["guide_offset_minutes"] == -60
    two = await create(admin, {"name": "Two", "epg_id": guide.id, "epg_channel_id": "Stays.uk"})
    await data.delete(EpgChannel, gone.id)
    after = await (await admin.get(f"/tic-api/channels/{one['id']}")).get_json()
    assert after["epg"]["missing"] is True and after["epg_channel_id"] == "Gone.uk"
    assert "EPG_MISSING" in after["problems"]
    unmapped = await listing(admin, "?unmapped=true")
    assert [c["id"] for c in unmapped["items"]] == [one["id"]]
    assert [c["id"] for c in (await listing(admin, "?unmapped=false"))["items"]] == [two["id"]]
    body = await create(admin, {"name": "x", "epg_id": guide.id, "epg_channel_id": "Nope"}, expect=400)
    assert body["code"] == "EPG_CHANNEL_NOT_FOUND"
    body = await create(admin, {"name": "x", "epg_id": guide.id}, expect=400)
    assert body["code"] == "EPG_MAPPING_INCOMPLETE"
    resp = await admin.patch(f"/tic-api/channels/{one['id']}", json={"epg_id": None, "epg_channel_id": None})
    assert (await resp.get_json())["epg"] is None


async def test_list_filters_sort_and_pages(admin: ApiClient, data: Data) -> None:
    for n, (name, tags, enabled) in enumerate(
        [
            ("Alpha News", ["News"], True),
            ("beta Sport", ["Sport"], False),
            ("Gamma News 100%", ["News"], True),
        ],
        start=1,
    ):
        await create(admin, {"name": name, "tags": tags, "enabled": enabled, "number": n * 10})
    assert [c["name"] for c in (await listing(admin, "?tag=News"))["items"]] == [
        "Alpha News",
        "Gamma News 100%",
    ]
    assert [c["name"] for c in (await listing(admin, "?enabled=false"))["items"]] == ["beta Sport"]
    assert [c["name"] for c in (await listing(admin, "?q=NEWS"))["items"]] == [
        "Alpha News",
        "Gamma News 100%",
    ]
    assert [c["name"] for c in (await listing(admin, "?q=100%25"))["items"]] == ["Gamma News 100%"]
    # A number finds that channel (guide ids, random in part, may hold the digits too).
    assert "beta Sport" in [c["name"] for c in (await listing(admin, "?q=20"))["items"]]
    assert next(c["name"] for c in (await listing(admin, "?sort=-number"))["items"]) == "Gamma News 100%"
    page = await listing(admin, "?limit=1&offset=1&sort=name")
    assert page["total"] == 3 and [c["name"] for c in page["items"]] == ["beta Sport"]
    assert (await admin.get("/tic-api/channels?enabled=maybe")).status_code == 400
    assert (await admin.get("/tic-api/channels?sort=colour")).status_code == 400
    tags = await (await admin.get("/tic-api/channels/tags")).get_json()
    assert [(t["name"], t["channel_count"]) for t in tags["items"]] == [("News", 2), ("Sport", 1)]


async def test_delete_removes_sources_and_unused_tags(admin: ApiClient, data: Data, svc: Any) -> None:
    made = await create(
        admin, {"name": "Temp", "tags": ["Only here"], "sources": [{"url": "http://x.invalid/a"}]}
    )
    resp = await admin.delete(f"/tic-api/channels/{made['id']}")
    assert resp.status_code == 204
    assert (await admin.get(f"/tic-api/channels/{made['id']}")).status_code == 404
    assert (await admin.delete(f"/tic-api/channels/{made['id']}")).status_code == 404
    async with svc.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ChannelSource)) == 0
        assert await session.scalar(select(func.count()).select_from(ChannelTag)) == 0


async def test_lineup_change_queues_the_follow_up_jobs(admin: ApiClient, data: Data, svc: Any) -> None:
    await create(admin, {"name": "Signal"})
    expected = {
        name for name in ("build_xmltv", "publish_tvheadend", "cache_logos") if name in svc.broker.jobs
    }
    assert "cache_logos" in expected
    assert set(await queued_jobs(svc)) == expected
    # Deduplicated by key: a second change does not queue them twice.
    await create(admin, {"name": "Signal 2"})
    assert sorted(await queued_jobs(svc)) == sorted(expected)
