"""Recordings API: scheduling from the guide or a time range, validation, DVR rights, overlap warnings, actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backend.dvr.models import Recording
from tests.conftest import ApiClient
from tests.dvr.conftest import (
    Guide,
    TokenClient,
    all_recordings,
    insert_recording,
    make_user,
    set_settings,
    soon,
)


async def body_of(resp: Any, status: int) -> Any:
    body = await resp.get_json()
    assert resp.status_code == status, body
    return body


def span(start: datetime, minutes: int = 30) -> dict[str, str]:
    return {"start": start.isoformat(), "stop": (start + timedelta(minutes=minutes)).isoformat()}


async def test_schedule_channel_and_time_range(admin: ApiClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    start = soon(30)
    body = await body_of(
        await admin.post(
            "/tic-api/recordings",
            json={"channel_id": ch.id, **span(start), "title": "Match", "padding_after": 15},
        ),
        201,
    )
    assert body["status"] == "scheduled" and body["title"] == "Match" and body["channel_name"] == "One"
    assert body["start"] == start.isoformat().replace("+00:00", "Z")
    assert body["padding_before"] == 2 and body["padding_after"] == 15  # default before, explicit after
    assert body["tvh_uuid"] is None and body["playable"] is False and body["warnings"] == []
    listed = await body_of(await admin.get("/tic-api/recordings"), 200)
    assert listed["total"] == 1 and listed["items"][0]["id"] == body["id"]
    assert isinstance(listed["version"], int)
    got = await body_of(await admin.get(f"/tic-api/recordings/{body['id']}"), 200)
    assert got["owner"] == "admin"


async def test_schedule_from_programme_applies_guide_offset(
    boss: TokenClient, guide: Guide, svc: Any
) -> None:
    admin = boss
    await svc.broker.pause()
    ch = await guide.channel("Two", offset=60)
    start = soon(120)
    p = await guide.programme(ch, start, 45, "Quiz Night", sub_title="The Final", season=2, episode=5)
    body = await body_of(await admin.post("/tic-api/recordings", json={"programme_id": p.id}), 201)
    assert body["title"] == "Quiz Night" and body["sub_title"] == "The Final" and body["episode"] == "S02E05"
    assert body["start"] == (start + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert body["programme_id"] == p.id and body["channel_id"] == ch.id
    # Pressing "record" twice does not make a second recording of the same airing.
    again = await body_of(await admin.post("/tic-api/recordings", json={"programme_id": p.id}), 409)
    assert again["code"] == "RECORDING_EXISTS"


async def test_validation(boss: TokenClient, guide: Guide, svc: Any) -> None:
    admin = boss
    await svc.broker.pause()
    ch = await guide.channel("One")
    hidden = await guide.channel("Unpublished", published=False)
    cases = [
        ({"channel_id": 999, **span(soon())}, 400, "CHANNEL_NOT_FOUND"),
        ({"channel_id": hidden.id, **span(soon())}, 409, "CHANNEL_NOT_PUBLISHED"),
        (
            {"channel_id": ch.id, "start": soon(30).isoformat(), "stop": soon(20).isoformat()},
            400,
            "INVALID_TIME_RANGE",
        ),
        ({"channel_id": ch.id, **span(soon(-120), 60)}, 400, "RECORDING_IN_PAST"),
        ({"channel_id": ch.id, **span(soon(), 25 * 60)}, 400, "INVALID_TIME_RANGE"),
        (
            {"channel_id": ch.id, "start": "2030-01-01T10:00:00", "stop": "2030-01-01T11:00:00"},
            400,
            "INVALID",
        ),
        ({"channel_id": ch.id}, 400, "INVALID"),
        ({"programme_id": 424242}, 400, "PROGRAMME_NOT_FOUND"),
        ({"channel_id": ch.id, **span(soon()), "padding_before": -1}, 400, "INVALID"),
        ({"channel_id": ch.id, **span(soon()), "colour": "red"}, 400, "INVALID"),
    ]
    for payload, status, code in cases:
        body = await body_of(await admin.post("/tic-api/recordings", json=payload), status)
        assert body["code"] == code, (payload, body)
    assert await all_recordings(svc) == []


async def test_a_recording_that_already_started_is_accepted(
    boss: TokenClient, guide: Guide, svc: Any
) -> None:
    admin = boss
    await svc.broker.pause()
    ch = await guide.channel("One")
    body = await body_of(
        await admin.post("/tic-api/recordings", json={"channel_id": ch.id, **span(soon(-10))}), 201
    )
    assert body["status"] == "scheduled"


async def test_dvr_rights(app: Any, boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    admin = boss
    ch = await guide.channel("One")
    none = await make_user(app, "nodvr", "streamer", "none")
    own = await make_user(app, "owndvr", "streamer", "own")
    every = await make_user(app, "alldvr", "streamer", "all")
    admins = await body_of(
        await admin.post("/tic-api/recordings", json={"channel_id": ch.id, **span(soon(60))}), 201
    )

    for path in (
        "/tic-api/recordings",
        "/tic-api/recordings/poll?timeout=0",
        "/tic-api/recording-rules",
        "/dvr",
    ):
        resp = await none.get(path)
        assert resp.status_code == 403, path
    denied = await body_of(
        await none.post("/tic-api/recordings", json={"channel_id": ch.id, **span(soon())}), 403
    )
    assert denied["code"] == "DVR_FORBIDDEN"

    mine = await body_of(
        await own.post("/tic-api/recordings", json={"channel_id": ch.id, **span(soon(200))}), 201
    )
    assert mine["owner"] == "owndvr"
    listed = await body_of(await own.get("/tic-api/recordings"), 200)
    assert [r["id"] for r in listed["items"]] == [mine["id"]]
    assert (await own.get(f"/tic-api/recordings/{admins['id']}")).status_code == 404
    assert (await own.post(f"/tic-api/recordings/{admins['id']}/cancel")).status_code == 404
    assert (await own.delete(f"/tic-api/recordings/{admins['id']}")).status_code == 404

    seen = await body_of(await every.get("/tic-api/recordings"), 200)
    assert {r["id"] for r in seen["items"]} == {admins["id"], mine["id"]}
    assert (await every.post(f"/tic-api/recordings/{mine['id']}/cancel")).status_code == 200
    everything = await body_of(await admin.get("/tic-api/recordings"), 200)
    assert everything["total"] == 2


async def test_overlap_beyond_the_limit_is_warned_about(boss: TokenClient, guide: Guide, svc: Any) -> None:
    admin = boss
    await svc.broker.pause()
    await set_settings(svc, dvr_max_parallel_recordings=2)
    channels = [await guide.channel(n) for n in ("A", "B", "C")]
    start = soon(60)
    first = await body_of(
        await admin.post("/tic-api/recordings", json={"channel_id": channels[0].id, **span(start)}), 201
    )
    second = await body_of(
        await admin.post(
            "/tic-api/recordings", json={"channel_id": channels[1].id, **span(start + timedelta(minutes=10))}
        ),
        201,
    )
    assert first["warnings"] == [] and second["warnings"] == []
    third = await body_of(
        await admin.post(
            "/tic-api/recordings", json={"channel_id": channels[2].id, **span(start + timedelta(minutes=20))}
        ),
        201,
    )
    assert len(third["warnings"]) == 1 and "3 recordings overlap" in third["warnings"][0]
    # Padding counts: one that ends before the others start but whose padding reaches in does not.
    later = start + timedelta(hours=3)
    clear = await body_of(
        await admin.post("/tic-api/recordings", json={"channel_id": channels[0].id, **span(later)}), 201
    )
    assert clear["warnings"] == []


async def test_cancel_stop_delete_follow_the_status(boss: TokenClient, guide: Guide, svc: Any) -> None:
    admin = boss
    await svc.broker.pause()
    ch = await guide.channel("One")
    rec = await body_of(
        await admin.post("/tic-api/recordings", json={"channel_id": ch.id, **span(soon(60))}), 201
    )
    assert (await body_of(await admin.post(f"/tic-api/recordings/{rec['id']}/stop"), 409))[
        "code"
    ] == "RECORDING_NOT_RUNNING"
    patched = await body_of(
        await admin.patch(f"/tic-api/recordings/{rec['id']}", json={"title": "Renamed", "padding_before": 0}),
        200,
    )
    assert patched["title"] == "Renamed" and patched["padding_before"] == 0
    cancelled = await body_of(await admin.post(f"/tic-api/recordings/{rec['id']}/cancel"), 200)
    assert cancelled["status"] == "cancelled" and cancelled["status_reason"] == "Cancelled by boss"
    assert (await body_of(await admin.post(f"/tic-api/recordings/{rec['id']}/cancel"), 409))[
        "code"
    ] == "RECORDING_NOT_SCHEDULED"
    assert (await admin.patch(f"/tic-api/recordings/{rec['id']}", json={"title": "x"})).status_code == 409

    running = await insert_recording(svc, ch, tvh_uuid="a" * 32, status="recording", minutes_ago=5, length=60)
    assert (await body_of(await admin.post(f"/tic-api/recordings/{running}/cancel"), 409))[
        "code"
    ] == "RECORDING_RUNNING"
    stopping = await body_of(await admin.post(f"/tic-api/recordings/{running}/stop"), 200)
    assert stopping["pending_action"] == "stop"

    done = await insert_recording(svc, ch, tvh_uuid="b" * 32)
    assert (await admin.delete(f"/tic-api/recordings/{done}")).status_code == 204
    assert (await admin.get(f"/tic-api/recordings/{done}")).status_code == 404
    # Hidden at once; the row stays until reconcile has removed the TVHeadend entry and file.
    async with svc.db.session() as session:
        row = await session.get(Recording, done)
        assert row is not None and row.deleted is True
    never_sent = await insert_recording(svc, ch, status="missed", file_size=None)
    assert (await admin.delete(f"/tic-api/recordings/{never_sent}")).status_code == 204
    async with svc.db.session() as session:
        assert await session.get(Recording, never_sent) is None


async def test_list_filters_by_status(boss: TokenClient, guide: Guide, svc: Any) -> None:
    admin = boss
    await svc.broker.pause()
    ch = await guide.channel("One")
    await insert_recording(svc, ch, tvh_uuid="c" * 32)
    await insert_recording(svc, ch, status="failed", file_size=None)
    done = await body_of(await admin.get("/tic-api/recordings?status=completed"), 200)
    assert [r["status"] for r in done["items"]] == ["completed"] and done["items"][0]["playable"] is True
    both = await body_of(await admin.get("/tic-api/recordings?status=completed,failed"), 200)
    assert both["total"] == 2
    bad = await body_of(await admin.get("/tic-api/recordings?status=bogus"), 400)
    assert bad["fields"] == {"status": "unknown status"}


async def test_times_are_utc_with_z(boss: TokenClient, guide: Guide, svc: Any) -> None:
    admin = boss
    await svc.broker.pause()
    ch = await guide.channel("One")
    local = (
        (datetime.now(UTC) + timedelta(hours=5))
        .astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
        .replace(microsecond=0)
    )
    body = await body_of(
        await admin.post("/tic-api/recordings", json={"channel_id": ch.id, **span(local)}), 201
    )
    assert body["start"].endswith("Z")
    assert datetime.fromisoformat(body["start"].replace("Z", "+00:00")) == local
