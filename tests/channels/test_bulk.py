"""Bulk lineup work through the API: from streams and groups, select-and-act, renumber, reorder, merge."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.channels.models import Channel, ChannelSource
from tests.channels.conftest import Data, create, listing
from tests.conftest import ApiClient


async def post(admin: ApiClient, path: str, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    resp = await admin.post(f"/tic-api/channels/{path}", json=body)
    payload = await resp.get_json()
    assert resp.status_code == expect, payload
    return dict(payload)


async def numbers(admin: ApiClient) -> dict[str, int]:
    return {c["name"]: c["number"] for c in (await listing(admin, "?limit=1000"))["items"]}


async def test_from_groups_numbers_skip_taken_tags_by_group_and_skips_existing(
    admin: ApiClient, data: Data
) -> None:
    playlist = await data.playlist("P1")
    rows = [
        data.stream_row(playlist, "News A", group_title="UK | News", tvg_id="NewsA.uk"),
        data.stream_row(playlist, "Sport A", group_title="Sport"),
        data.stream_row(playlist, "News B", group_title="UK | News"),
        data.stream_row(playlist, "Loose", group_title=None),
        data.stream_row(playlist, "A Movie", group_title="UK | News", is_vod=True),
        data.stream_row(playlist, "News C", group_title="UK | News"),
    ]
    await data.streams(rows)
    await create(admin, {"name": "Existing", "number": 2})
    body = {"playlist_id": playlist.id, "groups": ["", "UK | News"], "start_number": 1}
    result = await post(admin, "bulk/from-groups", body, 201)
    assert result | {"channel_ids": []} == {
        "created": 4,
        "skipped_existing": 0,
        "merged": 0,
        "first_number": 1,
        "last_number": 5,
        "channel_ids": [],
    }
    # Group by group in the order asked, each in playlist order; number 2 was taken.
    assert await numbers(admin) == {"Loose": 1, "Existing": 2, "News A": 3, "News B": 4, "News C": 5}
    news = await listing(admin, "?tag=UK | News")
    assert [c["name"] for c in news["items"]] == ["News A", "News B", "News C"]
    assert news["items"][0]["guide_id"] == "NewsA.uk"
    again = await post(admin, "from-groups", body, 201)  # the path the first-run wizard calls
    assert (again["created"], again["skipped_existing"]) == (0, 4)
    groups = await (await admin.get(f"/tic-api/channels/groups?playlist_id={playlist.id}")).get_json()
    assert [(g["group"], g["count"], g["in_lineup"]) for g in groups["items"]] == [
        ("UK | News", 3, 3),
        ("Sport", 1, 0),
        ("", 1, 1),
    ]
    bad = await post(admin, "bulk/from-groups", {"playlist_id": 999, "groups": ["x"]}, 404)
    assert bad["code"] == "PLAYLIST_NOT_FOUND"


async def test_from_streams_merges_duplicates_across_playlists(
    admin: ApiClient, data: Data, svc: Any
) -> None:
    first = await data.playlist("First", position=0)
    second = await data.playlist("Second", position=1)
    ids = await data.streams(
        [
            data.stream_row(second, "Sky News", tvg_id="SkyNews.uk"),
            data.stream_row(first, "UK: Sky News HD", tvg_id="skynews.uk"),
            data.stream_row(first, "Film4"),
            data.stream_row(second, "FILM4 ᴴᴰ"),
            data.stream_row(first, "Film4 +1"),
        ]
    )
    result = await post(
        admin, "bulk/from-streams", {"stream_ids": ids, "merge_duplicates": True, "start_number": 100}, 201
    )
    assert (result["created"], result["merged"]) == (3, 2)
    channels = (await listing(admin))["items"]
    assert [(c["name"], c["number"]) for c in channels] == [
        ("Sky News", 100),
        ("Film4", 101),
        ("Film4 +1", 102),
    ]
    assert [s["stream_id"] for s in channels[0]["sources"]] == [ids[0], ids[1]]
    assert [s["stream_id"] for s in channels[1]["sources"]] == [ids[2], ids[3]]
    missing = await post(admin, "bulk/from-streams", {"stream_ids": [ids[0], 123456]}, 400)
    assert missing["code"] == "STREAM_NOT_FOUND"
    async with svc.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Channel)) == 3


async def test_thousands_of_channels_from_groups_in_one_request(
    admin: ApiClient, data: Data, svc: Any
) -> None:
    playlist = await data.playlist("Big")
    rows = [
        data.stream_row(playlist, f"Channel {i}", group_title=f"Group {i % 20}", tvg_id=f"C{i}.xx")
        for i in range(3000)
    ]
    await data.streams(rows)
    await create(admin, {"name": "In the way", "number": 1500})
    groups = [f"Group {g}" for g in range(20)]
    result = await post(
        admin, "bulk/from-groups", {"playlist_id": playlist.id, "groups": groups, "start_number": 1}, 201
    )
    assert result["created"] == 3000 and result["last_number"] == 3001
    async with svc.db.session() as session:
        taken = list((await session.execute(select(Channel.number).order_by(Channel.number))).scalars())
        assert taken == list(range(1, 3002))
        assert await session.scalar(select(func.count()).select_from(ChannelSource)) == 3000
    page = await listing(admin, "?limit=1000&tag=Group 7")
    assert page["total"] == 150 and len(page["items"]) == 150
    deleted = await post(admin, "bulk/delete", {"ids": result["channel_ids"]})
    assert deleted == {"changed": 3000}
    assert (await listing(admin))["total"] == 1


async def test_select_and_act_enable_tag_delete(admin: ApiClient, data: Data) -> None:
    ids = [(await create(admin, {"name": f"C{n}", "tags": ["Old"]}))["id"] for n in range(4)]
    assert await post(admin, "bulk/disable", {"ids": ids[:3]}) == {"changed": 3}
    assert await post(admin, "bulk/disable", {"ids": ids[:3]}) == {"changed": 0}
    assert [c["id"] for c in (await listing(admin, "?enabled=true"))["items"]] == [ids[3]]
    assert await post(admin, "bulk/enable", {"ids": [ids[0]]}) == {"changed": 1}
    await post(admin, "bulk/tag", {"ids": ids[:2], "add": ["Fav", "fav "], "remove": ["old"]})
    tagged = {c["name"]: c["tags"] for c in (await listing(admin))["items"]}
    assert tagged == {"C0": ["Fav"], "C1": ["Fav"], "C2": ["Old"], "C3": ["Old"]}
    # An unknown id fails the whole request: nothing is deleted.
    missing = await post(admin, "bulk/delete", {"ids": [ids[0], 987654]}, 404)
    assert missing["code"] == "CHANNEL_NOT_FOUND"
    assert (await listing(admin))["total"] == 4
    assert await post(admin, "bulk/delete", {"ids": ids[:2]}) == {"changed": 2}
    assert [t["name"] for t in (await (await admin.get("/tic-api/channels/tags")).get_json())["items"]] == [
        "Old"
    ]
    bad = await post(admin, "bulk/enable", {"ids": []}, 400)
    assert "ids" in bad["fields"]


async def test_renumber_and_reorder(admin: ApiClient, data: Data) -> None:
    made = {n: (await create(admin, {"name": f"C{n}", "number": n}))["id"] for n in (1, 2, 3, 10, 11)}
    await post(admin, "bulk/renumber", {"ids": [made[3], made[1]], "start_number": 20})
    assert await numbers(admin) == {"C2": 2, "C10": 10, "C11": 11, "C3": 20, "C1": 21}
    taken = await post(admin, "bulk/renumber", {"ids": [made[2]], "start_number": 11}, 409)
    assert taken["code"] == "NUMBER_TAKEN" and taken["fields"] == {"start_number": "11 is taken"}
    resp = await admin.post(
        "/tic-api/channels/bulk/renumber?on_conflict=shift",
        json={"ids": [made[3], made[2]], "start_number": 10},
    )
    assert resp.status_code == 200
    assert await numbers(admin) == {"C3": 10, "C2": 11, "C10": 12, "C11": 13, "C1": 21}
    # Drag and drop: the same numbers, a new order.
    await post(admin, "bulk/reorder", {"ids": [made[1], made[11], made[3]]})
    assert await numbers(admin) == {"C1": 10, "C2": 11, "C10": 12, "C11": 13, "C3": 21}


async def test_merge_duplicates_keeps_lowest_number_and_moves_sources(
    admin: ApiClient, data: Data, svc: Any
) -> None:
    first = await data.playlist("First", position=0)
    second = await data.playlist("Second", position=1)
    guide = await data.guide()
    await data.guide_channel(guide, "Discovery.uk", "Discovery")
    s = await data.streams(
        [
            data.stream_row(second, "Discovery", tvg_id="Discovery.uk"),
            data.stream_row(first, "UK | Discovery HD", tvg_id="discovery.uk"),
            data.stream_row(first, "US: Discovery"),
            data.stream_row(first, "UK: Discovery"),
            data.stream_row(first, "Dave"),
            data.stream_row(second, "DAVE"),
        ]
    )
    a = await create(
        admin, {"name": "Discovery", "number": 5, "sources": [{"stream_id": s[0]}], "tags": ["A"]}
    )
    b = await create(
        admin,
        {
            "name": "UK | Discovery HD",
            "number": 3,
            "sources": [{"stream_id": s[1]}],
            "tags": ["B"],
            "epg_id": guide.id,
            "epg_channel_id": "Discovery.uk",
        },
    )
    us = await create(admin, {"name": "US: Discovery", "number": 4, "sources": [{"stream_id": s[2]}]})
    await create(
        admin,
        {"name": "Dave", "number": 6, "sources": [{"stream_id": s[4]}, {"url": "http://x.invalid/dave"}]},
    )
    await create(admin, {"name": "DAVE", "number": 7, "sources": [{"stream_id": s[5]}]})
    preview = await post(admin, "bulk/merge-duplicates", {"dry_run": True})
    assert preview["merged"] == 0 and preview["dry_run"] is True
    assert [(g["keep_name"], g["merge_names"]) for g in preview["groups"]] == [
        ("UK | Discovery HD", ["Discovery"]),
        ("Dave", ["DAVE"]),
    ]
    assert (await listing(admin))["total"] == 5
    done = await post(admin, "bulk/merge-duplicates", {})
    assert done["merged"] == 2
    channels = {c["name"]: c for c in (await listing(admin))["items"]}
    assert set(channels) == {"UK | Discovery HD", "US: Discovery", "Dave"}
    kept = channels["UK | Discovery HD"]
    assert kept["id"] == b["id"] and kept["number"] == 3 and kept["tags"] == ["A", "B"]
    # Failover order follows playlist priority: First's stream, then Second's.
    assert [src["stream_id"] for src in kept["sources"]] == [s[1], s[0]]
    assert [src["stream_id"] for src in channels["Dave"]["sources"]] == [s[4], s[5], None]
    assert channels["US: Discovery"]["id"] == us["id"]
    assert (await admin.get(f"/tic-api/channels/{a['id']}")).status_code == 404
