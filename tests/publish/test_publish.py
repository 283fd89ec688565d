"""Publishing against the fake TVHeadend: create, no-op, update, delete, drift, unmanaged objects, faults."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import aiohttp
import pytest
from sqlalchemy import delete, select, update

from backend.channels.models import Channel, ChannelSource, ChannelTag
from backend.db import Database, utcnow
from backend.playlists.models import Stream
from backend.publish.models import TvhPublishRun
from backend.publish.service import last_publish, preview_plan
from backend.tvheadend.client import TvheadendClient, TvheadendError
from tests.fakes.tvheadend import FakeTvheadend
from tests.publish.conftest import add_channel, add_playlist, add_stream, make_lineup, publish


def managed_channels(tvh: FakeTvheadend) -> dict[str, dict[str, Any]]:
    marker = next(u for u, t in tvh.state.channeltags.items() if t["name"] == "TIC")
    return {u: c for u, c in tvh.state.channels.items() if marker in c["tags"]}


def by_name(rows: dict[str, dict[str, Any]], field: str = "name") -> dict[str, dict[str, Any]]:
    return {r[field]: {"uuid": u, **r} for u, r in rows.items()}


def seed_unmanaged(tvh: FakeTvheadend) -> dict[str, Any]:
    """A user's own objects: a network with a scanned mux and its channel, and a tag."""
    net = tvh.state.add_network("My IPTV")
    mux = tvh.state.add_mux(net, iptv_url="http://mine.invalid/a.ts", iptv_muxname="Mine", iptv_sname="Mine")
    svc = next(u for u, s in tvh.state.services.items() if s["multiplex_uuid"] == mux)
    tag = tvh.state.add_channeltag("Favourites")
    tvh.state.add_channel("Mine", 5, services=[svc], tags=[tag])
    tvh.state.add_channel("Two Too", 6)
    return snapshot_of(tvh)


def snapshot_of(tvh: FakeTvheadend) -> dict[str, Any]:
    return copy.deepcopy({uuid: tvh.state.row(uuid) for uuid in tvh.state.nodes})


async def test_publish_from_empty_creates_the_lineup(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    ids = await make_lineup(db)
    result = await publish(db, client)

    assert result["status"] == "succeeded", result
    networks = by_name(tvh.state.networks, "networkname")
    assert set(networks) == {"TIC: Alpha", "TIC: Beta", "TIC: Manual"}
    assert networks["TIC: Alpha"]["max_streams"] == 2 and networks["TIC: Beta"]["max_streams"] == 0
    muxes = by_name(tvh.state.muxes, "iptv_sname")
    assert len(tvh.state.muxes) == 4
    two = muxes["Two"]
    assert two["iptv_url"] == "http://manual.invalid/two.ts"
    assert two["iptv_hdr"] == "User-Agent: Kodi/21\nReferer: x\n"
    assert two["network_uuid"] == networks["TIC: Manual"]["uuid"]
    assert muxes["Three"]["iptv_hdr"] == "Referer: http://r.invalid/\n"
    one_muxes = sorted(
        (m for m in tvh.state.muxes.values() if m["iptv_sname"] == "One"), key=lambda m: -m["priority"]
    )
    assert [m["priority"] for m in one_muxes] == [2, 1]
    assert one_muxes[0]["network_uuid"] == networks["TIC: Alpha"]["uuid"]
    assert one_muxes[1]["iptv_hdr"] == "User-Agent: BetaAgent/1.0\n"
    assert {m["iptv_epgid"] for m in one_muxes} == {"one.tic"}

    channels = by_name(managed_channels(tvh))
    assert set(channels) == {"One", "Two", "Three"}
    one = channels["One"]
    assert one["number"] == 101 and one["icon"] == "http://logos.invalid/one.png"
    assert len(one["services"]) == 2, "both sources are services of one TVH channel"
    tags = by_name(tvh.state.channeltags)
    assert tags["News"]["uuid"] in one["tags"] and tags["News"]["comment"] == "Managed by TIC"
    assert len(tvh.state.channels) == 3, "no extra channels from a service mapper"

    async with db.session() as session:
        rows = {c.name: c for c in (await session.execute(select(Channel))).scalars()}
        sources = (await session.execute(select(ChannelSource))).scalars().all()
        tag = await session.get(ChannelTag, ids.tags["news"])
    assert rows["One"].tvh_uuid == one["uuid"]
    assert {s.tvh_mux_uuid for s in sources} == set(tvh.state.muxes)
    assert tag is not None and tag.tvh_uuid == tags["News"]["uuid"]


async def test_second_publish_makes_no_write_calls(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    await make_lineup(db)
    first = await publish(db, client)
    assert first["write_calls"] > 0
    tvh.clear_calls()
    second = await publish(db, client)
    assert tvh.write_calls() == []
    assert second["write_calls"] == 0 and second["summary"]["created"] == 0 and second["drift"] == []
    preview = await preview_plan(db, client)
    assert preview["total_operations"] == 0 and preview["summary"]["create"] == 0


async def test_changing_one_channel_writes_only_its_objects(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    ids = await make_lineup(db)
    await publish(db, client)
    async with db.transaction() as session:
        await session.execute(
            update(Channel)
            .where(Channel.id == ids.channels["one"])
            .values(name="Uno", number=111, updated_at=utcnow())
        )
        source_muxes = {
            s.tvh_mux_uuid
            for s in (
                await session.execute(
                    select(ChannelSource).where(ChannelSource.channel_id == ids.channels["one"])
                )
            ).scalars()
        }
        channel_uuid = (await session.get(Channel, ids.channels["one"])).tvh_uuid  # type: ignore[union-attr]
    preview = await preview_plan(db, client)
    assert {(op["action"], op["kind"]) for op in preview["operations"]} == {
        ("update", "channel"),
        ("update", "mux"),
    }
    tvh.clear_calls()
    result = await publish(db, client)

    touched: set[str] = set()
    for call in tvh.write_calls():
        assert call.path == "api/idnode/save", call
        node = call.json_arg("node")
        touched |= {n["uuid"] for n in (node if isinstance(node, list) else [node])}
    assert touched == source_muxes | {channel_uuid}
    assert (
        tvh.state.channels[channel_uuid]["name"] == "Uno"
        and tvh.state.channels[channel_uuid]["number"] == 111
    )
    assert {tvh.state.muxes[m]["iptv_sname"] for m in source_muxes} == {"Uno"}
    assert result["summary"]["updated"] == 3 and result["drift"] == []


async def test_updates_are_verified_by_reading_back_only_what_was_written(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    ids = await make_lineup(db)
    await publish(db, client)
    async with db.transaction() as session:
        await session.execute(update(Channel).where(Channel.id == ids.channels["one"]).values(name="Uno"))
    # TVHeadend answers the first save with success but does not apply it (as it does for read-only
    # fields): the read-back sees that, and the same run tries again.
    tvh.fail_next("api/idnode/save", 200, body="{}", content_type="application/json")
    tvh.clear_calls()
    result = await publish(db, client)
    assert result["status"] == "succeeded" and result["problems"] == []
    assert {m["iptv_sname"] for m in tvh.state.muxes.values()} == {"Uno", "Two", "Three"}
    assert "Uno" in by_name(managed_channels(tvh))
    assert len(tvh.calls_to("api/idnode/save")) == 3
    for grid in ("mpegts/network", "mpegts/mux", "mpegts/service", "channel", "channeltag"):
        assert len(tvh.calls_to(f"api/{grid}/grid")) == 1, "grids are read once, at the start"
    loaded = {u for c in tvh.calls_to("api/idnode/load") for u in c.json_arg("uuid")}
    assert loaded == {
        u for c in tvh.calls_to("api/idnode/save") for n in c.json_arg("node") for u in [n["uuid"]]
    }
    tvh.clear_calls()
    await publish(db, client)
    assert tvh.write_calls() == []


async def test_a_new_stream_url_updates_only_the_mux(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    await make_lineup(db)
    await publish(db, client)
    async with db.transaction() as session:
        await session.execute(
            update(Stream)
            .where(Stream.url == "http://alpha.invalid/three.ts")
            .values(url="http://alpha.invalid/3.ts")
        )
    tvh.clear_calls()
    result = await publish(db, client)
    assert [c.path for c in tvh.write_calls()] == ["api/idnode/save"]
    assert result["summary"]["updated"] == 1 and result["problems"] == []
    assert by_name(tvh.state.muxes, "iptv_sname")["Three"]["iptv_url"] == "http://alpha.invalid/3.ts"
    tvh.clear_calls()
    await publish(db, client)
    assert tvh.write_calls() == []


async def test_removed_channel_is_deleted_and_unmanaged_objects_stay(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    before = seed_unmanaged(tvh)
    ids = await make_lineup(db)
    await publish(db, client)
    async with db.transaction() as session:
        await session.execute(delete(Channel).where(Channel.id == ids.channels["two"]))
    result = await publish(db, client)

    assert set(by_name(managed_channels(tvh))) == {"One", "Three"}
    assert "TIC: Manual" not in by_name(tvh.state.networks, "networkname"), (
        "the manual network went with its mux"
    )
    assert result["summary"]["deleted"] == 3  # channel, mux, network
    after = snapshot_of(tvh)
    for uuid, row in before.items():
        assert after.get(uuid) == row, f"unmanaged {uuid} changed"


async def test_drift_is_listed_and_put_back(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    await make_lineup(db)
    await publish(db, client)
    channels = by_name(managed_channels(tvh))
    tvh.state.nodes[channels["One"]["uuid"]].fields["name"] = "Changed in the TVH UI"
    three_mux = next(u for u, m in tvh.state.muxes.items() if m["iptv_sname"] == "Three")
    tvh.state.delete(tvh.state.nodes[three_mux])

    preview = await preview_plan(db, client)
    assert {(d["kind"], d["what"]) for d in preview["drift"]} == {
        ("channel", "changed in TVHeadend"),
        ("mux", "deleted in TVHeadend"),
    }
    result = await publish(db, client)
    assert {(d["kind"], d["name"]) for d in result["drift"]} == {
        ("channel", "One"),
        ("mux", "Three (TIC #4)"),
    }
    assert set(by_name(managed_channels(tvh))) == {"One", "Two", "Three"}
    three = by_name(managed_channels(tvh))["Three"]
    assert len(three["services"]) == 1, "the new mux's service is linked to the existing channel"
    async with db.session() as session:
        last = await last_publish(session)
    assert last is not None and last["drift"] == result["drift"]
    tvh.clear_calls()
    await publish(db, client)
    assert tvh.write_calls() == []


async def test_a_field_tic_changed_then_changed_in_tvheadend_is_drift(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    """What TIC wrote is recorded on every publish, so later hand edits of it are told apart as drift."""
    ids = await make_lineup(db)
    await publish(db, client)
    async with db.transaction() as session:
        await session.execute(update(Channel).where(Channel.id == ids.channels["one"]).values(name="Uno"))
    changed = await publish(db, client)
    assert changed["drift"] == [] and changed["summary"]["updated"] == 3
    uno = by_name(managed_channels(tvh))["Uno"]["uuid"]
    tvh.state.nodes[uno].fields["name"] = "Changed in the TVH UI"
    preview = await preview_plan(db, client)
    assert [(d["kind"], d["what"], d["fields"]) for d in preview["drift"]] == [
        ("channel", "changed in TVHeadend", ["name"])
    ]


async def test_objects_deleted_by_hand_between_preview_and_apply(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    ids = await make_lineup(db)
    await publish(db, client)
    async with db.transaction() as session:
        await session.execute(update(Channel).where(Channel.id == ids.channels["two"]).values(name="Deux"))
    preview = await preview_plan(db, client)
    assert [op["name"] for op in preview["operations"] if op["kind"] == "channel"] == ["Deux"]
    # Between preview and apply, someone deletes that very channel and a network in TVHeadend's UI.
    channel = by_name(managed_channels(tvh))["Two"]["uuid"]
    tvh.state.delete(tvh.state.nodes[channel])
    beta = by_name(tvh.state.networks, "networkname")["TIC: Beta"]["uuid"]
    tvh.state.delete(tvh.state.nodes[beta])
    result = await publish(db, client)
    assert result["status"] == "succeeded"
    channels = by_name(managed_channels(tvh))
    assert set(channels) == {"One", "Deux", "Three"}
    assert len(channels["One"]["services"]) == 2 and len(channels["Deux"]["services"]) == 1
    tvh.clear_calls()
    await publish(db, client)
    assert tvh.write_calls() == []


async def test_channel_renamed_to_an_unmanaged_channels_name(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    before = seed_unmanaged(tvh)
    ids = await make_lineup(db)
    await publish(db, client)
    async with db.transaction() as session:
        await session.execute(update(Channel).where(Channel.id == ids.channels["three"]).values(name="Mine"))
    result = await publish(db, client)
    assert any(w["kind"] == "channel" and w["name"] == "Mine" for w in result["summary"]["warnings"])
    names = sorted(c["name"] for c in tvh.state.channels.values())
    assert names.count("Mine") == 2
    after = snapshot_of(tvh)
    for uuid, row in before.items():
        assert after.get(uuid) == row


async def test_failure_mid_apply_then_the_next_run_converges(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    await make_lineup(db)
    tvh.fail_next("api/channel/create", 500)
    with pytest.raises(TvheadendError) as info:
        await publish(db, client)
    assert info.value.code == "TVH_SERVER_ERROR"
    async with db.session() as session:
        run = (await session.execute(select(TvhPublishRun))).scalar_one()
    assert run.status == "failed" and "TVH_SERVER_ERROR" in (run.error or "")
    result = await publish(db, client)
    assert result["status"] == "succeeded"
    assert len(tvh.state.networks) == 3 and len(tvh.state.muxes) == 4 and len(tvh.state.channels) == 3
    assert len(tvh.state.channeltags) == 2
    tvh.clear_calls()
    await publish(db, client)
    assert tvh.write_calls() == []


async def test_tvheadend_restarted_mid_publish_duplicates_nothing(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    await make_lineup(db)
    # The object is created, then the connection drops before TIC hears its uuid: once for a tag,
    # then (next run) for a mux.
    for path in ("api/channeltag/create", "api/mpegts/network/mux_create"):
        tvh.drop_next(path)
        with pytest.raises(TvheadendError) as info:
            await publish(db, client)
        assert info.value.code == "TVH_CONNECTION_LOST"
    result = await publish(db, client)
    assert result["status"] == "succeeded"
    assert len(tvh.state.muxes) == 4 and len(tvh.state.channels) == 3
    assert sorted(t["name"] for t in tvh.state.channeltags.values()) == ["News", "TIC"]
    tvh.clear_calls()
    await publish(db, client)
    assert tvh.write_calls() == []


async def test_tvheadend_down_during_publish(
    db: Database, http: aiohttp.ClientSession, tvh: FakeTvheadend
) -> None:
    """TVHeadend stops after a few writes, comes back with its state, and the next run converges."""
    await make_lineup(db)
    client = TvheadendClient(http, tvh.url, "admin", "admin", timeout=2.0)
    tvh.delay_next("api/mpegts/network/mux_create", 0.3)
    task = asyncio.ensure_future(publish(db, client))
    while not tvh.calls_to("api/mpegts/network/mux_create"):
        await asyncio.sleep(0.01)
    state, port = tvh.state, tvh.port
    assert tvh._runner is not None
    await tvh._runner.cleanup()
    with pytest.raises(TvheadendError) as info:
        await task
    assert info.value.code in ("TVH_UNREACHABLE", "TVH_CONNECTION_LOST", "TVH_TIMEOUT")
    async with db.session() as session:
        last = await last_publish(session)
    assert last is not None and last["status"] == "failed" and last["error"]

    async with FakeTvheadend(auth_mode=2, port=port, scan_delay=0.02) as back:
        back.state = state
        result = await publish(db, TvheadendClient(http, back.url, "admin", "admin", timeout=5.0))
        assert result["status"] == "succeeded"
        assert len(back.state.networks) == 3 and len(back.state.muxes) == 4 and len(back.state.channels) == 3


async def test_unreachable_wrong_password_and_missing_rights(
    db: Database, http: aiohttp.ClientSession, tvh: FakeTvheadend
) -> None:
    await make_lineup(db)
    tvh.state.add_user("viewer", "pw", {"webui"})
    cases = [
        (TvheadendClient(http, "http://127.0.0.1:9", "admin", "admin", timeout=2.0), "TVH_UNREACHABLE"),
        (TvheadendClient(http, tvh.url, "admin", "wrong", timeout=2.0), "TVH_FORBIDDEN"),
        (TvheadendClient(http, tvh.url, "viewer", "pw", timeout=2.0), "TVH_FORBIDDEN"),
    ]
    for client, code in cases:
        with pytest.raises(TvheadendError) as info:
            await publish(db, client)
        assert info.value.code == code
        async with db.session() as session:
            last = await last_publish(session)
        assert last is not None and last["status"] == "failed" and code in (last["error"] or "")
        assert last["finished_at"] is not None
    assert tvh.write_calls() == []
    assert tvh.state.networks == {}


async def test_an_edit_made_while_publishing_is_published_by_the_same_run(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    ids = await make_lineup(db)
    await publish(db, client)
    async with db.transaction() as session:
        await session.execute(update(Channel).where(Channel.id == ids.channels["one"]).values(name="Uno"))
    tvh.delay_next("api/idnode/save", 0.5)
    task = asyncio.ensure_future(publish(db, client))
    while not tvh.calls_to("api/idnode/save"):
        await asyncio.sleep(0.01)
    # The run is applying "Uno" when the admin renames another channel.
    async with db.transaction() as session:
        await session.execute(update(Channel).where(Channel.id == ids.channels["two"]).values(name="Deux"))
    result = await task
    assert result["status"] == "succeeded" and result["problems"] == []
    assert set(by_name(managed_channels(tvh))) == {"Uno", "Deux", "Three"}
    assert result["drift"] == [], "the run's own changes are not mistaken for changes made in TVHeadend"
    tvh.clear_calls()
    again = await publish(db, client)
    assert tvh.write_calls() == [] and again["drift"] == []


async def test_a_mux_that_never_produces_a_service_is_reported(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    playlist = await add_playlist(db, "Broken")
    dead = await add_stream(db, playlist, "Dead", "http://broken.invalid/404/dead.ts")
    good = await add_stream(db, playlist, "Good", "http://broken.invalid/good.ts")
    await add_channel(db, "Dead", 1, streams=[(playlist, dead)])
    await add_channel(db, "Mixed", 2, streams=[(playlist, dead), (playlist, good)])
    result = await publish(db, client)
    assert result["status"] == "succeeded"
    reasons = sorted(p["reason"] for p in result["problems"])
    assert reasons == ["the scan failed: TVHeadend could not play this stream"] * 2
    channels = by_name(managed_channels(tvh))
    assert channels["Dead"]["services"] == [] and len(channels["Mixed"]["services"]) == 1
    tvh.clear_calls()
    await publish(db, client)
    assert tvh.write_calls() == [], "a failed scan is reported, not retried on every publish"


async def test_a_scan_that_never_finishes_is_not_waited_on_forever(
    db: Database, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    tvh.scan_delay = 60.0
    await make_lineup(db)
    result = await asyncio.wait_for(publish(db, client, scan_timeout=0.5), 20)
    assert result["status"] == "succeeded"
    assert {p["reason"] for p in result["problems"]} == {"waiting for TVHeadend to scan it"}
    assert len(tvh.state.channels) == 3, "channels exist and get their services on a later publish"
    tvh.scan_delay = 0.02
    for mux in tvh.state.of("iptv_mux"):
        tvh.state.finish_scan(mux)
    result = await publish(db, client)
    assert result["problems"] == [] and result["summary"]["updated"] == 3
    assert len(by_name(managed_channels(tvh))["One"]["services"]) == 2
