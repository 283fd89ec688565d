"""Lineup export and import: a round trip rebuilds the lineup; bad or newer files change nothing."""

from __future__ import annotations

import json
from typing import Any

from tests.channels.conftest import Data, create, listing
from tests.conftest import ApiClient


def summary(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            c["guide_id"],
            c["name"],
            c["number"],
            c["enabled"],
            tuple(c["tags"]),
            c["logo_url"],
            c["epg_channel_id"],
            c["guide_offset_minutes"],
            tuple((s["stream_id"], s["url"], s["enabled"], s["missing"]) for s in c["sources"]),
        )
        for c in items
    ]


async def import_file(admin: ApiClient, document: Any, expect: int = 200) -> dict[str, Any]:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    resp = await admin.post(
        "/tic-api/channels/import", data=body, headers={"Content-Type": "application/json"}
    )
    payload = await resp.get_json()
    assert resp.status_code == expect, payload
    return dict(payload)


async def build(admin: ApiClient, data: Data) -> dict[str, Any]:
    playlist = await data.playlist("Provider")
    guide = await data.guide("Guide")
    await data.guide_channel(guide, "BBCOne.uk", "BBC One")
    one = await data.stream(playlist, "BBC One HD", tvg_id="BBCOne.uk")
    two = await data.stream(playlist, "BBC One SD", tvg_id="BBCOne.uk")
    gone = await data.stream(playlist, "Gone soon")
    await create(
        admin,
        {
            "name": 'BBC "One"',
            "number": 101,
            "tags": ["UK", "News"],
            "logo_url": "http://logos.invalid/bbc.png",
            "epg_id": guide.id,
            "epg_channel_id": "BBCOne.uk",
            "guide_offset_minutes": 30,
            "sources": [
                {"stream_id": one.id},
                {"stream_id": two.id, "enabled": False},
                {"url": "rtsp://cam.invalid/1"},
            ],
        },
    )
    await create(admin, {"name": "Gone", "number": 7, "enabled": False, "sources": [{"stream_id": gone.id}]})
    return {"playlist": playlist, "guide": guide, "streams": (one, two, gone)}


async def test_round_trip_rebuilds_the_lineup(admin: ApiClient, data: Data) -> None:
    await build(admin, data)
    before = (await listing(admin))["items"]
    resp = await admin.get("/tic-api/channels/export")
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="tic-lineup.json"'
    document = json.loads(await resp.get_data())
    assert document["format"] == "tic-lineup" and document["version"] == 1
    bbc = document["channels"][1]
    assert bbc["epg"] == {"source": "Guide", "channel_id": "BBCOne.uk", "method": "manual", "score": None}
    assert bbc["sources"][0]["playlist"] == "Provider" and bbc["sources"][0]["stream_key"].startswith("url:")
    assert "url" not in bbc["sources"][0]  # provider URLs carry credentials and are not exported
    assert bbc["sources"][2] == {"url": "rtsp://cam.invalid/1", "enabled": True}
    ids = [c["id"] for c in before]
    resp = await admin.post("/tic-api/channels/bulk/delete", json={"ids": ids})
    assert resp.status_code == 200 and (await listing(admin))["total"] == 0
    result = await import_file(admin, document)
    assert result | {"warnings": []} == {
        "channels": 2,
        "created": 2,
        "updated": 0,
        "deleted": 0,
        "tags": 2,
        "sources": 4,
        "missing_sources": 0,
        "missing_guides": 0,
        "warnings": [],
    }
    assert summary((await listing(admin))["items"]) == summary(before)


async def test_import_updates_by_guide_id_and_flags_what_is_missing(admin: ApiClient, data: Data) -> None:
    made = await build(admin, data)
    document = json.loads(await (await admin.get("/tic-api/channels/export")).get_data())
    before = {c["guide_id"]: c["id"] for c in (await listing(admin))["items"]}
    bbc = document["channels"][1]
    bbc["name"], bbc["number"] = "BBC One", 1
    bbc["sources"].append({"playlist": "Other provider", "name": "Elsewhere", "stream_key": "url:abc"})
    document["channels"] = [
        bbc,
        {
            "guide_id": "new.one",
            "name": "New",
            "number": 2,
            "epg": {"source": "No such guide", "channel_id": "x"},
        },
    ]
    result = await import_file(admin, document)
    assert (
        result["created"],
        result["updated"],
        result["deleted"],
        result["missing_sources"],
        result["missing_guides"],
    ) == (1, 1, 1, 1, 1)
    assert any("Other provider" in w for w in result["warnings"])
    after = (await listing(admin))["items"]
    assert [(c["guide_id"], c["name"], c["number"]) for c in after] == [
        (bbc["guide_id"], "BBC One", 1),
        ("new.one", "New", 2),
    ]
    assert after[0]["id"] == before[bbc["guide_id"]]  # same channel: TVHeadend links survive
    assert [s["missing"] for s in after[0]["sources"]] == [False, False, False, True]
    assert after[0]["sources"][0]["stream_id"] == made["streams"][0].id
    assert after[1]["epg"] is None


async def test_bad_or_newer_files_change_nothing(admin: ApiClient, data: Data) -> None:
    await build(admin, data)
    before = summary((await listing(admin))["items"])
    document = json.loads(await (await admin.get("/tic-api/channels/export")).get_data())
    cases: list[tuple[Any, str, str]] = [
        (b"{not json", "LINEUP_INVALID", "body"),
        ([1, 2], "LINEUP_INVALID", "format"),
        ({"format": "m3u", "version": 1, "channels": []}, "LINEUP_INVALID", "format"),
        (document | {"version": 2}, "LINEUP_VERSION_UNSUPPORTED", "version"),
        (document | {"version": "1"}, "LINEUP_INVALID", "version"),
        (
            document | {"channels": [*document["channels"], document["channels"][0]]},
            "LINEUP_INVALID",
            "channels.2.guide_id",
        ),
        (
            document | {"channels": [*document["channels"], document["channels"][0] | {"guide_id": "other"}]},
            "LINEUP_INVALID",
            "channels.2.number",
        ),
        (
            document | {"channels": [*document["channels"], {"guide_id": "x", "name": " \n", "number": 50}]},
            "NAME_REQUIRED",
            "channels.2.name",
        ),
        (
            document | {"channels": [{"guide_id": "bad id", "name": "x", "number": 3}]},
            "LINEUP_INVALID",
            "channels.0.guide_id",
        ),
        (
            document | {"channels": [{"guide_id": "y", "name": "x", "number": 3, "colour": "red"}]},
            "LINEUP_INVALID",
            "channels.0.colour",
        ),
        (
            document
            | {
                "channels": [
                    {"guide_id": "y", "name": "x", "number": 3, "sources": [{"url": "javascript:x"}]}
                ]
            },
            "URL_INVALID",
            "channels.0.sources.0.url",
        ),
    ]
    for document_case, code, field in cases:
        body = await import_file(admin, document_case, expect=400)
        assert body["code"] == code, (document_case, body)
        assert field in body["fields"], body
        assert summary((await listing(admin))["items"]) == before
    assert "newer TIC" in (await import_file(admin, document | {"version": 2}, expect=400))["message"]


async def test_a_large_lineup_imports_in_one_request(admin: ApiClient, data: Data) -> None:
    channels = [
        {
            "guide_id": f"ch{n}.big",
            "name": f"Channel {n} " + "x" * 280,
            "number": n + 1,
            "tags": [f"Group {n % 10}"],
        }
        for n in range(3000)
    ]
    body = json.dumps({"format": "tic-lineup", "version": 1, "channels": channels}).encode()
    assert len(body) > 1024 * 1024
    result = await import_file(admin, body)
    assert result["created"] == 3000 and result["tags"] == 10
    assert (await listing(admin, "?tag=Group 3&limit=1"))["total"] == 300
