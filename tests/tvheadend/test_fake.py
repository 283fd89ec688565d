"""The fake TVHeadend keeps the quirks recorded in tvheadend-api.md; these tests pin them to the document."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.fakes.tvheadend import FakeTvheadend, parse_auth_params


def basic(user: str = "admin", password: str = "admin") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Api:
    """Raw HTTP against the fake: form fields are JSON-encoded unless they are strings."""

    def __init__(self, tvh: FakeTvheadend, session: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        self.tvh = tvh
        self.session = session
        self.headers = headers

    async def post(self, path: str, **form: Any) -> tuple[int, Any]:
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()}
        async with self.session.post(f"{self.tvh.url}/{path}", data=data, headers=self.headers) as resp:
            return resp.status, await _body(resp)

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        async with self.session.get(f"{self.tvh.url}/{path}", params=query, headers=self.headers) as resp:
            return resp.status, await _body(resp)


async def _body(resp: aiohttp.ClientResponse) -> Any:
    if resp.content_type == "application/json":
        return await resp.json()
    return await resp.text()


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def tvh() -> AsyncIterator[FakeTvheadend]:
    async with FakeTvheadend(auth_mode=2, comet_ws_interval=0.1) as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def api(tvh: FakeTvheadend, session: aiohttp.ClientSession) -> Api:
    return Api(tvh, session, basic())


# -- transport -----------------------------------------------------------------------------------------


async def test_json_body_and_query_on_post_are_ignored(
    tvh: FakeTvheadend, session: aiohttp.ClientSession
) -> None:
    url = f"{tvh.url}/api/config/save"
    async with session.post(url, json={"node": {"server_name": "x"}}, headers=basic()) as resp:
        assert resp.status == 400
    async with session.post(url, params={"node": '{"server_name":"x"}'}, data={}, headers=basic()) as resp:
        assert resp.status == 400
    assert tvh.state.config["server_name"] == "Tvheadend"
    # The same arguments as a form body work, and so does GET with a query string.
    async with session.post(url, data={"node": '{"server_name":"form"}'}, headers=basic()) as resp:
        assert resp.status == 200
        assert await resp.text() == "{}"
    async with session.get(url, params={"node": '{"server_name":"get"}'}, headers=basic()) as resp:
        assert resp.status == 200
    assert tvh.state.config["server_name"] == "get"


async def test_response_format(tvh: FakeTvheadend, api: Api, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{tvh.url}/api/serverinfo", headers=basic()) as resp:
        assert resp.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert resp.headers["Server"] == "HTS/tvheadend"
        text = await resp.text()
    assert ", " not in text and '": ' not in text
    info = json.loads(text)
    assert info["webroot"] == "/tic-tvh" and info["api_version"] == 19
    async with session.get(f"{tvh.url}/api/does/notexist", headers=basic()) as resp:
        assert resp.status == 404
        assert resp.content_type == "text/html"
        assert "<H1>404 Not Found</H1>" in await resp.text()


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_put_and_delete_close_the_connection(
    tvh: FakeTvheadend, session: aiohttp.ClientSession, method: str
) -> None:
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.request(method, f"{tvh.url}/api/serverinfo", headers=basic()):
            pass


async def test_post_without_content_length_is_dropped(
    tvh: FakeTvheadend, session: aiohttp.ClientSession
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"conf={}"

    headers = {**basic(), "Content-Type": "application/x-www-form-urlencoded"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.post(f"{tvh.url}/api/channel/create", data=body(), headers=headers):
            pass
    assert tvh.state.channels == {}


async def test_options_needs_no_auth(tvh: FakeTvheadend, session: aiohttp.ClientSession) -> None:
    async with session.options(f"{tvh.url}/api/config/save") as resp:
        assert resp.status == 200
        assert await resp.read() == b""


async def test_paths_outside_the_root(tvh: FakeTvheadend, session: aiohttp.ClientSession) -> None:
    base = f"http://127.0.0.1:{tvh.port}"
    async with session.get(f"{base}/api/serverinfo", headers=basic(), allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/tic-tvh/api/serverinfo"
    async with session.get(f"{base}/api/serverinfo", allow_redirects=False) as resp:
        assert resp.status == 401
    async with session.get(f"{base}/", headers=basic(), allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/tic-tvh/"
    async with session.get(f"{tvh.url}/", headers=basic(), allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "extjs.html"
    async with session.get(f"{base}//tic-tvh//api//serverinfo", headers=basic()) as resp:
        assert resp.status == 200
    async with session.get(f"{tvh.url}/ping") as resp:
        assert resp.status == 200 and await resp.text() == "PONG"


# -- authentication ------------------------------------------------------------------------------------


def digest_header(challenge: str, method: str, uri: str, user: str = "admin", password: str = "admin") -> str:
    params = parse_auth_params(challenge.partition(" ")[2])

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{user}:{params['realm']}:{password}"), md5(f"{method}:{uri}")
    response = md5(f"{ha1}:{params['nonce']}:00000001:abc:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}", '
        f'response="{response}", qop=auth, nc=00000001, cnonce="abc"'
    )


async def test_digest_only_by_default(session: aiohttp.ClientSession) -> None:
    async with FakeTvheadend() as tvh:
        url = f"{tvh.url}/api/serverinfo"
        async with session.get(url, headers=basic()) as resp:
            assert resp.status == 401
            challenges = resp.headers.getall("WWW-Authenticate")
        assert len(challenges) == 1 and challenges[0].startswith(
            'Digest realm="tvheadend", qop=auth, nonce="'
        )
        headers = {"Authorization": digest_header(challenges[0], "GET", "/tic-tvh/api/serverinfo")}
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 200
        # Replaying the same nonce and count is accepted (counts are not checked).
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 200
        bad = {"Authorization": digest_header(challenges[0], "GET", "/tic-tvh/api/serverinfo", password="no")}
        async with session.get(url, headers=bad) as resp:
            assert resp.status == 403
        tvh.expire_nonces()
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 401
            assert "stale" not in resp.headers["WWW-Authenticate"]
            assert (
                parse_auth_params(resp.headers["WWW-Authenticate"])["nonce"] not in headers["Authorization"]
            )


async def test_auth_modes(session: aiohttp.ClientSession) -> None:
    async with FakeTvheadend(auth_mode=0) as tvh:
        url = f"{tvh.url}/api/serverinfo"
        async with session.get(url) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="tvheadend"'
        async with session.get(url, headers=basic()) as resp:
            assert resp.status == 200
        async with session.get(url, headers={"Authorization": 'Digest username="admin", nonce="x"'}) as resp:
            assert resp.status == 401
        # The mode change takes effect immediately.
        async with session.post(
            f"{tvh.url}/api/config/save", data={"node": '{"digest":1}'}, headers=basic()
        ) as r:
            assert r.status == 200
        async with session.get(url, headers=basic()) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Digest ")


async def test_401_versus_403(tvh: FakeTvheadend, session: aiohttp.ClientSession) -> None:
    url = f"{tvh.url}/api/serverinfo"
    async with session.get(url) as resp:
        assert resp.status == 401
        assert "Default login" in await resp.text()
    async with session.get(url, headers=basic(password="wrong")) as resp:
        assert resp.status == 403
    async with session.get(url, headers=basic(user="nobody")) as resp:
        assert resp.status == 403


async def test_rights(session: aiohttp.ClientSession) -> None:
    users = {"admin": ("admin", {"admin", "webui", "dvr", "streaming"}), "viewer": ("pw", {"webui"})}
    async with FakeTvheadend(auth_mode=2, users=users) as tvh:
        viewer = basic("viewer", "pw")
        for path, status in [
            ("api/serverinfo", 200),
            ("api/channel/grid", 200),
            ("api/channel/list", 200),
            ("api/config/load", 403),
            ("api/mpegts/network/grid", 403),
            ("api/dvr/entry/grid", 403),
        ]:
            async with session.get(f"{tvh.url}/{path}", headers=viewer) as resp:
                assert resp.status == status, path


# -- idnodes -------------------------------------------------------------------------------------------


async def test_idnode_save_is_partial_and_lenient(tvh: FakeTvheadend, api: Api) -> None:
    _, created = await api.post("api/channel/create", conf={"name": "One", "number": 1, "epgauto": True})
    uuid = created["uuid"]
    status, body = await api.post(
        "api/idnode/save",
        node={"uuid": uuid, "number": "302", "enabled": "yes", "nonsense": 1, "bouquet": "x"},
    )
    assert (status, body) == (200, {})
    channel = tvh.state.channels[uuid]
    assert channel["number"] == 302 and channel["enabled"] is True and channel["name"] == "One"
    assert "nonsense" not in channel and channel["bouquet"] == ""
    await api.post(
        "api/idnode/save", node={"uuid": uuid, "number": "abc", "epgauto": "0", "dvr_pre_time": "7"}
    )
    assert tvh.state.channels[uuid]["number"] == 0 and tvh.state.channels[uuid]["epgauto"] is False
    assert tvh.state.channels[uuid]["dvr_pre_time"] == 7
    await api.post("api/idnode/save", node={"uuid": uuid, "dvr_pre_time": "abc", "epgauto": "on"})
    assert tvh.state.channels[uuid]["dvr_pre_time"] == 0 and tvh.state.channels[uuid]["epgauto"] is True
    await api.post("api/idnode/save", node={"uuid": uuid, "number": "5.2"})
    _, loaded = await api.get("api/idnode/load", uuid=uuid, grid="1", list="name,number")
    assert loaded == {"entries": [{"uuid": uuid, "name": "One", "number": "5.2"}]}


async def test_idnode_save_forms_and_codes(tvh: FakeTvheadend, api: Api) -> None:
    a = tvh.state.add_channel("A", 1)
    b = tvh.state.add_channel("B", 2)
    assert (await api.post("api/idnode/save", node=[{"uuid": a, "number": 11}, {"uuid": b, "number": 12}]))[
        0
    ] == 200
    assert (await api.post("api/idnode/save", node={"uuid": [a, b, "0" * 32], "epgauto": False}))[0] == 200
    assert [tvh.state.channels[u]["number"] for u in (a, b)] == [11, 12]
    assert not tvh.state.channels[a]["epgauto"] and not tvh.state.channels[b]["epgauto"]
    assert (await api.post("api/idnode/save", node={"uuid": "0" * 32, "name": "x"}))[0] == 400
    assert (await api.post("api/idnode/save", node={"name": "x"}))[0] == 400
    assert (await api.post("api/idnode/save"))[0] == 403
    assert (await api.post("api/config/save", node=[{"server_name": "x"}]))[0] == 400
    assert (await api.post("api/config/save", node="{not json"))[0] == 400


async def test_idnode_delete_codes(tvh: FakeTvheadend, api: Api) -> None:
    uuid = tvh.state.add_channeltag("Tag")
    assert await api.post("api/idnode/delete", uuid=uuid) == (200, {})
    assert (await api.post("api/idnode/delete", uuid=uuid))[0] == 404
    assert await api.post("api/idnode/delete", uuid=[uuid, "0" * 32]) == (200, {})
    assert (await api.post("api/idnode/delete"))[0] == 403


async def test_idnode_load(tvh: FakeTvheadend, api: Api) -> None:
    tag = tvh.state.add_channeltag("SDTV")
    assert await api.get("api/idnode/load", uuid="0" * 32) == (200, {"entries": []})
    assert (await api.get("api/idnode/load", **{"class": "nope"}))[0] == 400
    assert (await api.get("api/idnode/load"))[0] == 400
    assert await api.get("api/idnode/load", **{"class": "channeltag", "enum": "1"}) == (
        200,
        {"entries": [{"key": tag, "val": "SDTV"}]},
    )
    _, full = await api.get("api/idnode/load", uuid=tag)
    entry = full["entries"][0]
    assert entry["class"] == "channeltag" and entry["event"] == "channeltag"
    assert {"id": "name", "value": "SDTV"}.items() <= next(
        p for p in entry["params"] if p["id"] == "name"
    ).items()


# -- grids ---------------------------------------------------------------------------------------------


async def test_grid_parameters(tvh: FakeTvheadend, api: Api) -> None:
    for i in range(60):
        tvh.state.add_channel(f"Channel {i:02d}", i + 1, enabled=i != 0)
    _, page = await api.get("api/channel/grid")
    assert len(page["entries"]) == 50 and page["total"] == 59  # default limit; the disabled one is hidden
    _, page = await api.get("api/channel/grid", all="1", limit="5", sort="number", dir="DESC")
    assert page["total"] == 60 and [e["number"] for e in page["entries"]] == [60, 59, 58, 57, 56]
    _, page = await api.get("api/channel/grid", all="1", start="58", limit="5", sort="number")
    assert [e["number"] for e in page["entries"]] == [59, 60]
    flt: list[dict[str, Any]] = [{"field": "name", "type": "string", "value": "channel 0[12]"}]
    _, page = await api.get("api/channel/grid", filter=flt, list="name,number")
    assert page["total"] == 2 and set(page["entries"][0]) == {"uuid", "name", "number"}
    flt = [{"field": "number", "type": "numeric", "value": 55, "comparison": "gt"}]
    assert (await api.get("api/channel/grid", filter=flt))[1]["total"] == 5
    flt = [{"field": "enabled", "type": "boolean", "value": 0}]
    assert (await api.get("api/channel/grid", filter=flt, all="1"))[1]["total"] == 1
    _, page = await api.get("api/channel/grid", list="-services,-tags", limit="1")
    assert "services" not in page["entries"][0] and "name" in page["entries"][0]


async def test_disabled_channels_hidden_without_all(tvh: FakeTvheadend, api: Api) -> None:
    tvh.state.add_channel("On", 1)
    off = tvh.state.add_channel("Off", 2, enabled=False)
    assert off not in {e["uuid"] for e in (await api.get("api/channel/grid"))[1]["entries"]}
    assert off in {e["uuid"] for e in (await api.get("api/channel/grid", all="1"))[1]["entries"]}


# -- networks, scans, mapping ---------------------------------------------------------------------------


async def test_mux_scan_creates_a_service(tvh: FakeTvheadend, api: Api) -> None:
    _, net = await api.post(
        "api/mpegts/network/create",
        **{"class": "iptv_network"},
        conf={"networkname": "TIC", "skipinitscan": False},
    )
    assert (await api.post("api/mpegts/network/create", **{"class": "bogus"}, conf={}))[0] == 400
    assert tvh.state.networks[net["uuid"]]["enabled"] is True
    conf = {
        "iptv_url": "http://src/one.ts",
        "iptv_muxname": "One",
        "iptv_sname": "TIC One",
        "channel_number": 101,
    }
    _, mux = await api.post("api/mpegts/network/mux_create", uuid=net["uuid"], conf=conf)
    _, bad = await api.post(
        "api/mpegts/network/mux_create", uuid=net["uuid"], conf={"iptv_url": "http://src/404"}
    )
    assert (await api.post("api/mpegts/network/mux_create", uuid="0" * 32, conf=conf))[0] == 400
    _, grid = await api.get("api/mpegts/mux/grid")
    row = next(e for e in grid["entries"] if e["uuid"] == mux["uuid"])
    assert (row["scan_state"], row["scan_result"], row["onid"], row["enabled"]) == (1, 0, 65536, 1)
    assert (await api.get("api/mpegts/service/grid"))[1]["total"] == 0

    async def scanned() -> Any:
        _, g = await api.get("api/mpegts/mux/grid")
        return all(e["scan_state"] == 0 for e in g["entries"]) and g

    grid = await eventually(scanned)
    results = {e["uuid"]: (e["scan_result"], e["num_svc"]) for e in grid["entries"]}
    assert results == {mux["uuid"]: (1, 1), bad["uuid"]: (2, 0)}
    _, services = await api.get("api/mpegts/service/grid")
    assert [(s["svcname"], s["multiplex_uuid"]) for s in services["entries"]] == [("TIC One", mux["uuid"])]


async def test_no_initial_scan_by_default_and_hidemode(tvh: FakeTvheadend, api: Api) -> None:
    net = tvh.state.add_network("Quiet")  # skipinitscan defaults to true
    quiet = tvh.state.add_mux(net, scanned=False, iptv_url="http://src/q")
    await asyncio.sleep(tvh.scan_delay * 2)
    assert tvh.state.muxes[quiet]["scan_state"] == 0 and tvh.state.muxes[quiet]["scan_result"] == 0
    other = tvh.state.add_network("Off", enabled=False)
    tvh.state.add_mux(other, iptv_url="http://src/x", iptv_sname="X")
    assert (await api.get("api/mpegts/mux/grid"))[1]["total"] == 1
    assert (await api.get("api/mpegts/mux/grid", hidemode="none"))[1]["total"] == 2
    assert (await api.get("api/mpegts/service/grid"))[1]["total"] == 0
    assert (await api.get("api/mpegts/service/grid", hidemode="none"))[1]["total"] == 1


async def test_service_mapper_creates_channels(tvh: FakeTvheadend, api: Api) -> None:
    net = tvh.state.add_network()
    tvh.state.add_mux(net, iptv_url="http://src/1", iptv_sname="TIC One", channel_number=101, iptv_tags="TIC")
    tvh.state.add_mux(net, iptv_url="http://src/2", iptv_sname="TIC Two", channel_number=102, iptv_tags="TIC")
    services = [s["uuid"] for s in (await api.get("api/mpegts/service/grid"))[1]["entries"]]
    node = {"services": services, "type_tags": True, "provider_tags": False, "merge_same_name": False}
    assert await api.post("api/service/mapper/save", node=node) == (200, {})
    assert (await api.get("api/service/mapper/status"))[1] == {"total": 0, "ok": 0, "fail": 0, "ignore": 0}

    async def done() -> Any:
        return (await api.get("api/service/mapper/status"))[1]["ok"] == 2

    await eventually(done)
    _, channels = await api.get("api/channel/grid", sort="number")
    assert [(c["name"], c["number"]) for c in channels["entries"]] == [("TIC One", 101), ("TIC Two", 102)]
    tags = {t["key"]: t["val"] for t in (await api.get("api/channeltag/list"))[1]["entries"]}
    assert sorted(tags[t] for t in channels["entries"][0]["tags"]) == ["SDTV", "TIC", "TV channels"]
    # Mapping the same services again skips them.
    await api.post("api/service/mapper/save", node=node)

    async def ignored() -> Any:
        return (await api.get("api/service/mapper/status"))[1]["ignore"] == 2

    await eventually(ignored)
    assert len(tvh.state.channels) == 2


# -- DVR -----------------------------------------------------------------------------------------------


async def test_dvr_entry_create_quirks(tvh: FakeTvheadend, api: Api) -> None:
    net = tvh.state.add_network()
    tvh.state.add_mux(net, iptv_url="http://s/1")
    channel = tvh.state.add_channel("TIC One", 101, services=list(tvh.state.services))
    now = int(time.time())
    assert await api.post("api/dvr/entry/create", conf={"start": now + 600, "stop": now + 700}) == (200, {})
    _, by_name = await api.post(
        "api/dvr/entry/create", conf={"start": now + 600, "stop": now + 700, "channel": "TIC One"}
    )
    _, past = await api.post(
        "api/dvr/entry/create", conf={"start": now - 700, "stop": now - 600, "channel": channel}
    )
    conf = {"start": now + 600, "stop": now + 500, "channel": channel, "disp_title": "T", "comment": "tic:1"}
    _, clamped = await api.post("api/dvr/entry/create", conf=conf)
    rows = {r["uuid"]: r for r in (await api.get("api/dvr/entry/grid"))[1]["entries"]}
    assert (rows[by_name["uuid"]]["channel"], rows[by_name["uuid"]]["status"]) == ("", "Invalid")
    assert (rows[past["uuid"]]["status"], rows[past["uuid"]]["sched_status"]) == (
        "Time missed",
        "completedError",
    )
    row = rows[clamped["uuid"]]
    assert row["stop"] == row["start"] and row["status"] == "Scheduled for recording"
    assert row["comment"] == "tic:1" and row["title"] == {"eng": "T"} and row["owner"] == "admin"
    assert row["config_name"] == tvh.state.default_dvr_config and row["start_real"] == now + 600 - 30


async def test_dvr_actions(tvh: FakeTvheadend, api: Api) -> None:
    net = tvh.state.add_network()
    tvh.state.add_mux(net, iptv_url="http://s/1")
    channel = tvh.state.add_channel("One", 1, services=list(tvh.state.services))
    now = int(time.time())
    scheduled = tvh.state.add_dvr_entry(channel, now + 3600, now + 7200, "Later")
    recording = tvh.state.add_dvr_entry(channel, now - 10, now + 3600, "Now")
    aborted = tvh.state.add_dvr_entry(channel, now - 10, now + 3600, "Abort")
    upcoming = {r["uuid"] for r in (await api.get("api/dvr/entry/grid_upcoming"))[1]["entries"]}
    assert upcoming == {scheduled, recording, aborted}
    assert await api.post("api/dvr/entry/stop", uuid=scheduled) == (200, {})
    assert await api.post("api/dvr/entry/stop", uuid=recording) == (200, {})
    assert await api.post("api/dvr/entry/cancel", uuid=aborted) == (200, {})
    assert (await api.post("api/dvr/entry/stop", uuid="0" * 32))[0] == 404
    rows = {r["uuid"]: r for r in (await api.get("api/dvr/entry/grid"))[1]["entries"]}
    assert rows[scheduled]["sched_status"] == "scheduled"
    assert (rows[recording]["status"], rows[recording]["sched_status"]) == ("Completed OK", "completed")
    assert (rows[aborted]["status"], rows[aborted]["sched_status"]) == ("Aborted by user", "completedError")
    assert rows[recording]["url"] == f"dvrfile/{recording}" and rows[recording]["filesize"] > 0
    assert {r["uuid"] for r in (await api.get("api/dvr/entry/grid_finished"))[1]["entries"]} == {recording}
    assert {r["uuid"] for r in (await api.get("api/dvr/entry/grid_failed"))[1]["entries"]} == {aborted}
    await api.post("api/dvr/entry/cancel", uuid=scheduled)
    await api.post("api/dvr/entry/remove", uuid=[recording, aborted])
    assert tvh.state.dvr_entries == {}


async def test_dvr_create_by_event(tvh: FakeTvheadend, api: Api) -> None:
    channel = tvh.state.add_channel("One", 1)
    now = int(time.time())
    event = tvh.state.add_epg_event(channel, now + 100, now + 200, "Show", subtitle="Ep 1")
    status, body = await api.post(
        "api/dvr/entry/create_by_event", event_id=str(event), config_uuid="", comment="c"
    )
    assert status == 200 and isinstance(body["uuid"], list) and len(body["uuid"]) == 1
    assert await api.post("api/dvr/entry/create_by_event", event_id="999", config_uuid="") == (200, {})
    _, events = await api.get("api/epg/events/grid", channel=channel)
    assert events["totalCount"] == 1 and "total" not in events
    assert events["entries"][0]["channelNumber"] == "1"
    assert events["entries"][0]["dvrUuid"] == body["uuid"][0]
    assert (await api.get("api/epg/events/grid", title="ep 1"))[1]["totalCount"] == 0
    assert (await api.get("api/epg/events/grid", title="ep 1", fulltext="1"))[1]["totalCount"] == 1


# -- users ---------------------------------------------------------------------------------------------


async def test_access_and_password_entries(tvh: FakeTvheadend, api: Api) -> None:
    conf = {"username": "tic", "prefix": "127.0.0.1/32", "admin": True, "webui": True, "dvr": ["basic"]}
    _, access = await api.post("api/access/entry/create", conf=conf)
    _, grid = await api.get("api/access/entry/grid", sort="index")
    assert grid["entries"][0]["uuid"] == access["uuid"] and grid["entries"][0]["index"] == 0
    await api.post("api/passwd/entry/create", conf={"username": "tic", "password": "s3cret"})
    _, pw = await api.get(
        "api/passwd/entry/grid", filter=[{"field": "username", "type": "string", "value": "^tic$"}]
    )
    assert pw["entries"][0]["password"] == "s3cret"
    assert base64.b64decode(pw["entries"][0]["password2"]) == b"TVHeadend-Hide-s3cret"
    assert (await Api(tvh, api.session, basic("tic", "s3cret")).get("api/config/load"))[0] == 200


# -- comet ---------------------------------------------------------------------------------------------


async def test_comet_poll(tvh: FakeTvheadend, api: Api) -> None:
    _, first = await api.post("comet/poll")
    classes = [m["notificationClass"] for m in first["messages"]]
    assert classes == ["accessUpdate", "setServerIpPort"] and first["messages"][0]["admin"] == 1
    _, tag = await api.post("api/channeltag/create", conf={"name": "x"})
    _, nxt = await api.post("comet/poll", boxid=first["boxid"], immediate="1")
    assert nxt == {
        "boxid": first["boxid"],
        "messages": [{"create": [tag["uuid"]], "change": [tag["uuid"]], "notificationClass": "channeltag"}],
    }
    _, fresh = await api.post("comet/poll", boxid="unknown")
    assert fresh["boxid"] != first["boxid"] and fresh["messages"][0]["notificationClass"] == "accessUpdate"


async def test_comet_websocket(tvh: FakeTvheadend, api: Api) -> None:
    async with api.session.get(f"{tvh.url}/comet/ws", headers=basic()) as resp:
        assert resp.status == 415
    async with api.session.ws_connect(f"{tvh.url}/comet/ws", headers=basic()) as ws:
        assert ws._response.headers["Sec-WebSocket-Protocol"] == "tvheadend-comet"
        first = json.loads((await ws.receive(timeout=2)).data)
        assert "boxid" in first and first["messages"][0]["notificationClass"] == "accessUpdate"
        _, tag = await api.post("api/channeltag/create", conf={"name": "x"})
        await api.post("api/idnode/delete", uuid=tag["uuid"])
        later = json.loads((await ws.receive(timeout=2)).data)
    assert "boxid" not in later
    assert later["messages"] == [
        {
            "create": [tag["uuid"]],
            "change": [tag["uuid"]],
            "delete": [tag["uuid"]],
            "notificationClass": "channeltag",
        }
    ]


# -- streams, playlists, recordings -----------------------------------------------------------------------


async def test_stream_counts_open_streams(tvh: FakeTvheadend, api: Api) -> None:
    net = tvh.state.add_network()
    tvh.state.add_mux(net, iptv_url="http://s/1")
    channel = tvh.state.add_channel("One", 1, services=list(tvh.state.services))
    async with api.session.get(f"{tvh.url}/stream/channel/{channel}?profile=pass", headers=basic()) as resp:
        assert resp.status == 200 and resp.content_type == "video/mp2t"
        data = await resp.content.readexactly(188 * 20)
        assert all(data[i] == 0x47 for i in range(0, len(data), 188))
        assert tvh.open_streams == 1
        _, subs = await api.get("api/status/subscriptions")
        assert [s["title"] for s in subs["entries"]] == ["HTTP"]
    await eventually(lambda: _async(tvh.open_streams == 0))
    async with api.session.get(f"{tvh.url}/stream/channel/{'0' * 32}", headers=basic()) as resp:
        assert resp.status == 400


async def _async(value: Any) -> Any:
    return value


async def test_stream_of_channel_without_services_is_dropped(tvh: FakeTvheadend, api: Api) -> None:
    channel = tvh.state.add_channel("Empty", 1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with api.session.get(f"{tvh.url}/stream/channel/{channel}", headers=basic()):
            pass


async def test_playlists(tvh: FakeTvheadend, api: Api) -> None:
    channel = tvh.state.add_channel("TIC One", 101)
    headers = {**basic(), "Host": "tvh.example:8080"}
    async with api.session.get(f"{tvh.url}/playlist/channels", headers=headers) as resp:
        assert resp.content_type == "audio/x-mpegurl"
        lines = (await resp.text()).splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[1] == f'#EXTINF:-1 tvg-id="{channel}" tvg-chno="101",TIC One'
    assert lines[2].startswith("http://tvh.example:8080/tic-tvh/stream/channelid/")
    assert lines[2].endswith("?profile=pass")
    async with api.session.get(f"{tvh.url}/playlist", headers=basic(), allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/tic-tvh/playlist/channels"
    async with api.session.get(f"{tvh.url}/playlist/bogus", headers=basic()) as resp:
        assert resp.status == 400


async def test_dvrfile_ranges(session: aiohttp.ClientSession) -> None:
    payload = bytes(range(256)) * 10
    async with FakeTvheadend(auth_mode=2, dvr_payload=payload) as tvh:
        channel = tvh.state.add_channel("One", 1)
        now = int(time.time())
        done = tvh.state.add_dvr_entry(channel, now - 7200, now - 3600, "Old Show")
        url = f"{tvh.url}/dvrfile/{done}"
        async with session.get(url, headers=basic()) as resp:
            assert resp.status == 200 and await resp.read() == payload
            assert 'filename="Old Show.ts"' in resp.headers["Content-Disposition"]
        async with session.get(url, headers={**basic(), "Range": "bytes=0-187"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 0-187/{len(payload)}"
            assert await resp.read() == payload[:188]
        async with session.head(url, headers=basic()) as resp:
            assert resp.status == 200 and resp.headers["Content-Length"] == str(len(payload))
        async with session.get(f"{tvh.url}/dvrfile/{'0' * 32}", headers=basic()) as resp:
            assert resp.status == 404
        async with session.get(url) as resp:
            assert resp.status == 401


# -- EPG through the XMLTV socket -------------------------------------------------------------------------

XMLTV = b"""<?xml version="1.0" encoding="UTF-8"?>
<tv>
  <channel id="tic.one"><display-name>TIC One</display-name></channel>
  <programme channel="tic.one" start="20300101120000 +0000" stop="20300101130000 +0000">
    <title>Show</title><episode-num system="xmltv_ns">0.3.</episode-num>
  </programme>
</tv>"""


async def test_xmltv_socket_imports_on_second_push(tvh: FakeTvheadend, api: Api) -> None:
    net = tvh.state.add_network()
    tvh.state.add_mux(net, iptv_url="http://s/1", iptv_epgid="tic.one", iptv_sname="Renamed")
    channel = tvh.state.add_channel("Something else", 1, services=list(tvh.state.services))
    modules = (await api.get("api/epggrab/module/list"))[1]["entries"]
    xmltv = next(m for m in modules if m["title"] == "External: XMLTV")
    assert xmltv["status"] == "epggrabmodNone"
    await api.post("api/idnode/save", node={"uuid": xmltv["uuid"], "enabled": True})

    async def push() -> None:
        _, writer = await asyncio.open_unix_connection(tvh.xmltv_socket_path)
        writer.write(XMLTV)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    await push()
    grabbed = await eventually(lambda: _async(list(tvh.state.epggrab_channels.values())))
    assert grabbed[0]["channels"] == [channel]
    await asyncio.sleep(0.1)
    assert (await api.get("api/epg/events/grid"))[1]["totalCount"] == 0
    await push()

    async def imported() -> Any:
        return (await api.get("api/epg/events/grid"))[1]["entries"]

    events = await eventually(imported)
    assert (events[0]["title"], events[0]["seasonNumber"], events[0]["episodeNumber"]) == ("Show", 1, 4)
    assert (await api.get("api/channel/grid"))[1]["entries"][0]["epggrab"] == [
        next(iter(tvh.state.epggrab_channels))
    ]


# -- fault injection and the call log ---------------------------------------------------------------------


async def test_fault_injection_and_write_calls(tvh: FakeTvheadend, api: Api) -> None:
    tvh.fail_next("api/channel/grid", 500)
    assert (await api.get("api/channel/grid"))[0] == 500
    assert (await api.get("api/channel/grid"))[0] == 200
    tvh.drop_next("/tic-tvh/api/channeltag/create")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.post("api/channeltag/create", conf={"name": "lost reply"})
    assert [t["name"] for t in tvh.state.channeltags.values()] == ["lost reply"]
    await api.get("api/channeltag/grid")
    assert [(c.method, c.path) for c in tvh.write_calls()] == [("POST", "api/channeltag/create")]
    assert tvh.write_calls()[0].json_arg("conf") == {"name": "lost reply"}
    assert tvh.requests[-2].status == 0  # the dropped one
