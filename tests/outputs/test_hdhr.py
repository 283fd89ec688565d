"""HDHomeRun emulation: discover, lineup, lineup status and device.xml for the combined lineup and per playlist."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from backend.outputs.formats import hdhr_checksum, hdhr_device_id
from backend.playlists.m3u import M3uParser
from backend.settings import service as settings_service
from tests.outputs.conftest import Lineup


def device_path(key: str, target: str, name: str) -> str:
    return f"/tic-api/hdhr_device/{key}/{target}/{name}"


@pytest.mark.parametrize("seed", ["0" * 64, "f" * 64, "123456789abcdef0" * 4, "deadbeef" * 8])
def test_device_ids_pass_libhdhomeruns_checksum(seed: str) -> None:
    device_id = hdhr_device_id(seed)
    assert len(device_id) == 8 and device_id[0] == "1"
    value = int(device_id, 16)
    assert hdhr_checksum(value) == 0
    # Any single changed digit is detected, as libhdhomerun's check promises.
    for shift in range(0, 32, 4):
        flipped = value ^ (0x1 << shift)
        assert hdhr_checksum(flipped) != 0


async def test_discover_describes_a_stable_tuner(
    client: Any, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    a = await lineup.playlist("A", connection_limit=2)
    await lineup.playlist("B", connection_limit=3)
    await lineup.playlist("C")  # no limit: counts as the default (4)
    await lineup.playlist("Off", connection_limit=50, enabled=False)

    resp = await client.get(device_path(stream_key, "combined", "discover.json"))
    assert resp.status_code == 200
    combined = await resp.get_json()
    base = f"http://localhost/tic-api/hdhr_device/{stream_key}/combined"
    assert combined["BaseURL"] == base and combined["LineupURL"] == f"{base}/lineup.json"
    assert combined["TunerCount"] == 2 + 3 + 4
    assert hdhr_checksum(int(combined["DeviceID"], 16)) == 0
    assert combined["FriendlyName"] == "TIC" and combined["Manufacturer"] == "Silicondust"

    again = await (await client.get(device_path(stream_key, "combined", "discover.json"))).get_json()
    assert again["DeviceID"] == combined["DeviceID"] and again["DeviceAuth"] == combined["DeviceAuth"]
    single = await (await client.get(device_path(stream_key, str(a.id), "discover.json"))).get_json()
    assert single["DeviceID"] != combined["DeviceID"]
    assert single["TunerCount"] == 2 and single["FriendlyName"] == "TIC A"

    async with svc.db.transaction() as session:
        await settings_service.update_settings(session, svc.keyring, {"hdhr_default_tuner_count": 1})
    fewer = await (await client.get(device_path(stream_key, "combined", "discover.json"))).get_json()
    assert fewer["TunerCount"] == 2 + 3 + 1

    xml = await client.get(device_path(stream_key, "combined", "device.xml"))
    root = etree.fromstring(await xml.get_data())
    ns = {"u": "urn:schemas-upnp-org:device-1-0"}
    assert root.findtext("u:device/u:serialNumber", namespaces=ns) == combined["DeviceID"]
    assert root.findtext("u:URLBase", namespaces=ns) == base
    assert root.findtext("u:device/u:UDN", namespaces=ns).startswith("uuid:")


async def test_lineup_matches_the_m3u(client: Any, lineup: Lineup, stream_key: str) -> None:
    provider = await lineup.playlist("P", connection_limit=1)
    s1 = await lineup.stream(provider, "S1", "http://p.invalid/1")
    await lineup.channel(101, 'Quote " and \n newline', sources=[s1])
    await lineup.channel(7, "Seven", sources=["http://m.invalid/7"])
    await lineup.channel(8, "Nothing playable")

    resp = await client.get(device_path(stream_key, "combined", "lineup.json"))
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    listing = await resp.get_json()
    m3u = await client.get(f"/tic-api/playlist/combined.m3u?stream_key={stream_key}")
    entries = list(M3uParser().feed_bytes([await m3u.get_data()]))
    assert [(c["GuideNumber"], c["GuideName"], c["URL"]) for c in listing] == [
        (e.tvg_chno, e.name, e.url) for e in entries
    ]
    assert [c["GuideNumber"] for c in listing] == ["7", "101"]
    assert listing[1]["GuideName"] == 'Quote " and newline'

    only_p = await (await client.get(device_path(stream_key, str(provider.id), "lineup.json"))).get_json()
    assert [c["GuideNumber"] for c in only_p] == ["101"]
    status = await (await client.get(device_path(stream_key, "combined", "lineup_status.json"))).get_json()
    assert status["ScanInProgress"] == 0 and status["ScanPossible"] == 1
    assert (await client.post(device_path(stream_key, "combined", "lineup.post"))).status_code == 200


@pytest.mark.parametrize("target", ["999", "nonsense", "-1", "12345678901"])
async def test_unknown_devices_are_404(client: Any, stream_key: str, target: str) -> None:
    resp = await client.get(device_path(stream_key, target, "discover.json"))
    assert resp.status_code == 404
    assert (await resp.get_json())["code"] in {"PLAYLIST_NOT_FOUND", "DEVICE_NOT_FOUND"}


async def test_long_lineups_stay_valid_across_streamed_pieces(
    client: Any, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    """More channels than one streamed piece holds, every third one left out ('tvheadend' mode lists
    only published channels): lineup.json must stay one valid array, cold and when served again."""
    async with svc.db.transaction() as session:
        await settings_service.update_settings(
            session, svc.keyring, {"output_stream_mode": "tvheadend", "tvh_url": "http://tvh.invalid/"}
        )
    for number in range(1, 601):
        uuid = None if number % 3 == 0 else f"{number:032x}"
        await lineup.channel(
            number, f"Channel {number}", sources=[f"http://p.invalid/{number}"], tvh_uuid=uuid
        )
    expected = [str(n) for n in range(1, 601) if n % 3]
    for _ in range(2):
        resp = await client.get(device_path(stream_key, "combined", "lineup.json"))
        assert [entry["GuideNumber"] for entry in await resp.get_json()] == expected
        m3u = await client.get(f"/tic-api/playlist/combined.m3u?stream_key={stream_key}")
        entries = list(M3uParser().feed_bytes([await m3u.get_data()]))
        assert [e.tvg_chno for e in entries] == expected
