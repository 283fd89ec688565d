"""Reconcile against the fake TVHeadend: creation, status copy-back, idempotence, faults, crash recovery."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from backend.dvr.models import Recording
from backend.dvr.reconcile import MARKER_RE
from tests.conftest import make_app
from tests.dvr.conftest import (
    Guide,
    TokenClient,
    all_recordings,
    eventually,
    free_port_url,
    random_uuid,
    reconcile,
    recording,
    set_settings,
    soon,
)
from tests.fakes.tvheadend import FakeTvheadend


async def schedule(
    client: TokenClient, channel_id: int, start_minutes: float = 10, minutes: int = 30, **extra: Any
) -> int:
    start = soon(start_minutes)
    resp = await client.post(
        "/tic-api/recordings",
        json={
            "channel_id": channel_id,
            "start": start.isoformat(),
            "stop": (start + timedelta(minutes=minutes)).isoformat(),
            **extra,
        },
    )
    body = await resp.get_json()
    assert resp.status_code == 201, body
    return int(body["id"])


def entries_for(tvh: FakeTvheadend, marker: str) -> list[dict[str, Any]]:
    return [f for f in tvh.state.dvr_entries.values() if marker in f["comment"]]


async def test_created_in_tvh_and_status_follows_tvh(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(
        boss, ch.id, start_minutes=10, minutes=30, padding_before=1, padding_after=4, title="News"
    )
    report = await reconcile(svc)
    assert report.created == 1 and report.tvh_down is None
    rec = await recording(svc, rid)
    assert rec.tvh_uuid is not None and MARKER_RE.fullmatch(rec.marker)
    entry = tvh.state.dvr_entries[rec.tvh_uuid]
    assert entry["channel"] == ch.tvh_uuid and entry["comment"] == rec.marker
    assert entry["start"] == int(rec.start.timestamp()) and entry["stop"] == int(rec.stop.timestamp())
    assert (entry["start_extra"], entry["stop_extra"]) == (1, 4)
    assert rec.status == "scheduled" and rec.status_reason == "Scheduled for recording"

    tvh.state.advance(15 * 60)
    await reconcile(svc)
    rec = await recording(svc, rid)
    assert rec.status == "recording" and rec.file_size and rec.real_start is not None
    tvh.state.advance(60 * 60)
    await reconcile(svc)
    rec = await recording(svc, rid)
    assert rec.status == "completed" and rec.status_reason == "Completed OK"
    assert (
        rec.file_size == len(tvh.state.dvr_payload)
        and rec.tvh_filename
        and rec.tvh_filename.endswith("News.ts")
    )
    # Nothing left to do: a further pass writes nothing to TVHeadend.
    tvh.clear_calls()
    await reconcile(svc)
    assert tvh.write_calls() == []


async def test_reconcile_twice_makes_one_entry(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    await schedule(boss, ch.id)
    await reconcile(svc)
    await reconcile(svc)
    assert len(tvh.calls_to("api/dvr/entry/create")) == 1
    assert len(tvh.state.dvr_entries) == 1


async def test_concurrent_reconciles_make_one_entry(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rids = [await schedule(boss, ch.id, start_minutes=10 + 60 * i) for i in range(3)]
    # A slow TVHeadend widens the window in which two runs could both decide to create.
    tvh.delay_next("api/dvr/entry/create", 0.3)
    await asyncio.gather(reconcile(svc), reconcile(svc), reconcile(svc))
    assert len(tvh.calls_to("api/dvr/entry/create")) == 3
    for rid in rids:
        rec = await recording(svc, rid)
        assert len(entries_for(tvh, rec.marker)) == 1 and rec.tvh_uuid is not None


async def test_lost_reply_is_matched_back_by_marker(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(boss, ch.id)
    tvh.drop_next("api/dvr/entry/create")  # TVHeadend creates the entry, but the reply never arrives.
    report = await reconcile(svc)
    assert report.tvh_down == "TVH_CONNECTION_LOST"
    rec = await recording(svc, rid)
    assert rec.tvh_uuid is None and rec.status == "scheduled"
    assert rec.status_reason is not None and rec.status_reason.startswith("Waiting for TVHeadend")
    assert len(entries_for(tvh, rec.marker)) == 1
    await reconcile(svc)
    rec = await recording(svc, rid)
    assert len(tvh.calls_to("api/dvr/entry/create")) == 1
    assert rec.tvh_uuid == next(iter(tvh.state.dvr_entries)) and rec.status == "scheduled"


async def test_duplicate_entries_from_a_race_are_removed(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(boss, ch.id)
    await reconcile(svc)
    rec = await recording(svc, rid)
    # Another TIC process (or a retried create) made a second entry carrying the same marker.
    now = int(tvh.state.now())
    assert ch.tvh_uuid is not None
    tvh.state.add_dvr_entry(ch.tvh_uuid, now + 600, now + 2400, "dup", comment=rec.marker)
    report = await reconcile(svc)
    assert report.duplicates == 1
    assert list(tvh.state.dvr_entries) == [rec.tvh_uuid]


async def test_tvh_down_keeps_recordings_scheduled_and_catches_up(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    await set_settings(svc, tvh_url=free_port_url())
    rid = await schedule(boss, ch.id)
    late = await schedule(boss, ch.id, start_minutes=-20, minutes=21)
    async with svc.db.transaction() as session:
        # Its end passes while TVHeadend is still down.
        await session.execute(
            update(Recording).where(Recording.id == late).values(stop=soon(-1), padding_after=0)
        )
    report = await reconcile(svc)
    assert report.tvh_down == "TVH_UNREACHABLE"
    rec = await recording(svc, rid)
    assert rec.status == "scheduled" and rec.tvh_uuid is None
    assert rec.status_reason is not None and "Waiting for TVHeadend" in rec.status_reason
    missed = await recording(svc, late)
    assert missed.status == "missed" and "unavailable" in (missed.status_reason or "")

    await set_settings(svc, tvh_url=tvh.url)
    report = await reconcile(svc)
    assert report.created == 1
    rec = await recording(svc, rid)
    assert rec.tvh_uuid in tvh.state.dvr_entries and rec.status == "scheduled"
    assert rec.status_reason == "Scheduled for recording"


async def test_tvh_server_error_is_transient(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(boss, ch.id)
    tvh.fail_next("api/dvr/entry/grid", 500)
    report = await reconcile(svc)
    assert report.tvh_down == "TVH_SERVER_ERROR" and (await recording(svc, rid)).status == "scheduled"
    await reconcile(svc)
    assert (await recording(svc, rid)).tvh_uuid is not None


async def test_tvh_rejecting_an_entry_fails_it_with_the_reason(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rejected = await schedule(boss, ch.id)
    tvh.fail_next("api/dvr/entry/create", 400)
    await reconcile(svc)
    rec = await recording(svc, rejected)
    assert rec.status == "failed" and "TVHeadend rejected the recording" in (rec.status_reason or "")
    assert tvh.state.dvr_entries == {}

    # TVHeadend answers 200 for a channel uuid it does not know, and marks the entry Invalid.
    async with svc.db.transaction() as session:
        from backend.channels.models import Channel

        stale = await session.get(Channel, ch.id)
        assert stale is not None
        stale.tvh_uuid = random_uuid()
    invalid = await schedule(boss, ch.id, start_minutes=120)
    await reconcile(svc)
    rec = await recording(svc, invalid)
    assert rec.status == "failed" and "invalid" in (rec.status_reason or "").lower()
    assert "publish the lineup again" in (rec.status_reason or "")


async def test_entry_deleted_by_hand(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(boss, ch.id)
    await reconcile(svc)
    rec = await recording(svc, rid)
    assert rec.tvh_uuid is not None
    tvh.state.delete(tvh.state.nodes[rec.tvh_uuid])
    await reconcile(svc)
    rec = await recording(svc, rid)
    assert rec.status == "cancelled" and rec.status_reason == "The TVHeadend entry was deleted outside TIC"
    await reconcile(svc)
    assert tvh.state.dvr_entries == {}  # not recreated


async def test_cancel_stop_and_delete_reach_tvh(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    to_cancel = await schedule(boss, ch.id, start_minutes=120)
    to_stop = await schedule(boss, ch.id, start_minutes=1, minutes=60)
    await reconcile(svc)
    stop_uuid = (await recording(svc, to_stop)).tvh_uuid
    assert stop_uuid is not None
    assert len(tvh.state.dvr_entries) == 2

    assert (await boss.post(f"/tic-api/recordings/{to_cancel}/cancel")).status_code == 200
    await reconcile(svc)
    assert len(tvh.calls_to("api/dvr/entry/cancel")) == 1
    rec = await recording(svc, to_cancel)
    assert rec.status == "cancelled" and rec.pending_action is None and rec.tvh_uuid is None
    assert list(tvh.state.dvr_entries) == [stop_uuid]

    tvh.state.advance(5 * 60)
    await reconcile(svc)
    assert (await recording(svc, to_stop)).status == "recording"
    assert (await boss.post(f"/tic-api/recordings/{to_stop}/stop")).status_code == 200
    await reconcile(svc)
    rec = await recording(svc, to_stop)
    assert rec.status == "completed" and rec.pending_action is None and rec.file_size
    assert len(tvh.calls_to("api/dvr/entry/stop")) == 1

    assert (await boss.delete(f"/tic-api/recordings/{to_stop}")).status_code == 204
    await reconcile(svc)
    assert tvh.state.dvr_entries == {} and len(tvh.calls_to("api/dvr/entry/remove")) == 1
    assert [r.id for r in await all_recordings(svc)] == [to_cancel]


async def test_deleting_a_running_recording_aborts_then_removes(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(boss, ch.id, start_minutes=1, minutes=60)
    await reconcile(svc)
    tvh.state.advance(3 * 60)
    await reconcile(svc)
    assert (await recording(svc, rid)).status == "recording"
    assert (await boss.delete(f"/tic-api/recordings/{rid}")).status_code == 204
    await reconcile(svc)
    assert [c.path for c in tvh.write_calls()][-2:] == ["api/dvr/entry/cancel", "api/dvr/entry/remove"]
    assert tvh.state.dvr_entries == {} and await all_recordings(svc) == []


async def test_times_changed_after_creation_are_pushed(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(boss, ch.id, start_minutes=60)
    await reconcile(svc)
    new_start = soon(90)
    resp = await boss.patch(
        f"/tic-api/recordings/{rid}",
        json={
            "start": new_start.isoformat(),
            "stop": (new_start + timedelta(minutes=10)).isoformat(),
            "padding_after": 9,
        },
    )
    assert resp.status_code == 200
    report = await reconcile(svc)
    assert report.updated == 1
    rec = await recording(svc, rid)
    assert rec.tvh_uuid is not None and rec.needs_update is False
    entry = tvh.state.dvr_entries[rec.tvh_uuid]
    assert entry["start"] == int(new_start.timestamp()) and entry["stop_extra"] == 9


async def test_grid_is_read_past_one_page(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(boss, ch.id)
    await reconcile(svc)
    uuid = (await recording(svc, rid)).tvh_uuid
    now = int(tvh.state.now())
    assert ch.tvh_uuid is not None
    for i in range(620):
        tvh.state.add_dvr_entry(ch.tvh_uuid, now - 86400 - i * 60, now - 86400 - i * 60 + 30, f"old {i}")
    # TIC's entry sorts last; a capped read would think it was deleted by hand.
    tvh.state.nodes[uuid].fields["start"] = now + 10**6
    tvh.state.nodes[uuid].fields["stop"] = now + 10**6 + 60
    tvh.clear_calls()
    await reconcile(svc)
    assert len(tvh.calls_to("api/dvr/entry/grid")) >= 2
    assert (await recording(svc, rid)).status == "scheduled"


async def test_crash_left_recording_is_reconciled_at_start_up(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any, tmp_path: Path, database_url: str
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    rid = await schedule(boss, ch.id, start_minutes=1, minutes=20)
    await reconcile(svc)
    tvh.state.advance(5 * 60)
    await reconcile(svc)
    assert (await recording(svc, rid)).status == "recording"
    # TIC dies here; TVHeadend finishes the recording meanwhile.
    tvh.state.advance(60 * 60)
    second = make_app(tmp_path / "data", database_url)
    async with second.test_app():
        other = second.extensions["tic"]

        async def completed() -> bool:
            async with other.db.session() as session:
                row = await session.get(Recording, rid)
                return row is not None and row.status == "completed"

        await eventually(completed, timeout=15)


async def test_no_tvh_calls_without_work(configured: FakeTvheadend, svc: Any) -> None:
    await reconcile(svc)
    assert configured.calls == []
