"""TvheadendClient against the fake TVHeadend: auth modes, paging, error mapping, and the typed calls."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from backend.tvheadend.client import PAGE_SIZE, TvheadendClient, TvheadendError
from tests.fakes.tvheadend import FakeTvheadend

ADMIN = {"admin": ("admin", {"admin", "dvr", "streaming", "webui"})}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def tvh() -> AsyncIterator[FakeTvheadend]:
    async with FakeTvheadend(auth_mode=2, users=ADMIN) as fake:
        yield fake


def make_client(
    tvh: FakeTvheadend,
    session: aiohttp.ClientSession,
    username: str = "admin",
    password: str = "admin",
    timeout: float = 5.0,
) -> TvheadendClient:
    return TvheadendClient(session, tvh.url, username, password, timeout)


@pytest.fixture
def client(tvh: FakeTvheadend, session: aiohttp.ClientSession) -> TvheadendClient:
    return make_client(tvh, session)


async def raises(code: str, call: Awaitable[Any]) -> TvheadendError:
    with pytest.raises(TvheadendError) as info:
        await call
    assert info.value.code == code, info.value.message
    return info.value


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- authentication --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "expected"), [(0, "basic"), (1, "digest"), (2, "basic")])
async def test_connection_in_every_auth_mode(
    session: aiohttp.ClientSession, mode: int, expected: str
) -> None:
    async with FakeTvheadend(auth_mode=mode, users=ADMIN) as tvh:
        check = await make_client(tvh, session).test_connection()
    assert check.auth_mode == expected
    assert (check.sw_version, check.api_version, check.webroot) == ("4.3-2715~g80729d2f6", 19, "/tic-tvh")
    assert check.is_admin and check.has_dvr


async def test_default_fake_is_digest_only(session: aiohttp.ClientSession) -> None:
    async with FakeTvheadend() as tvh:
        client = make_client(tvh, session)
        await client.server_info()
    assert client.auth_mode == "digest"
    # Pre-emptive Basic was refused once with a Digest challenge, then Digest succeeded.
    assert [(r.status, r.auth_scheme) for r in tvh.requests] == [(401, "basic"), (200, "digest")]


@pytest.mark.parametrize("mode", [0, 1, 2])
async def test_wrong_password_is_forbidden(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeTvheadend(auth_mode=mode, users=ADMIN) as tvh:
        error = await raises("TVH_FORBIDDEN", make_client(tvh, session, password="hunter2").server_info())
    assert error.upstream_status == 403 and not error.transient
    assert "admin" in error.message and "rights" in error.message
    assert "hunter2" not in error.message and "hunter2" not in caplog.text


@pytest.mark.parametrize("mode", [0, 1, 2])
async def test_no_credentials_asks_for_them(session: aiohttp.ClientSession, mode: int) -> None:
    async with FakeTvheadend(auth_mode=mode, users=ADMIN) as tvh:
        error = await raises("TVH_AUTH_REQUIRED", make_client(tvh, session, "", "").server_info())
    assert error.upstream_status == 401
    assert "set the TVHeadend username and password in Settings" in error.message


async def test_anonymous_access_reports_none(session: aiohttp.ClientSession) -> None:
    async with FakeTvheadend(auth_mode=1, anonymous_rights={"admin", "webui"}) as tvh:
        check = await make_client(tvh, session, "", "").test_connection()
    assert (check.auth_mode, check.is_admin, check.has_dvr) == ("none", True, False)


async def test_rights_of_a_non_admin_user(session: aiohttp.ClientSession) -> None:
    users = {**ADMIN, "viewer": ("pw", {"webui"}), "recorder": ("pw", {"webui", "dvr"})}
    async with FakeTvheadend(auth_mode=1, users=users) as tvh:
        viewer = await make_client(tvh, session, "viewer", "pw").test_connection()
        recorder = await make_client(tvh, session, "recorder", "pw").test_connection()
        error = await raises("TVH_FORBIDDEN", make_client(tvh, session, "viewer", "pw").network_grid())
    assert (viewer.is_admin, viewer.has_dvr) == (False, False)
    assert (recorder.is_admin, recorder.has_dvr) == (False, True)
    assert "viewer" in error.message


async def test_digest_nonce_is_reused(session: aiohttp.ClientSession) -> None:
    async with FakeTvheadend(auth_mode=1, users=ADMIN) as tvh:
        client = make_client(tvh, session)
        for _ in range(20):
            await client.server_info()
        assert sum(r.status == 401 for r in tvh.requests) == 1
        assert len(tvh.requests) == 21
        # An expired nonce costs exactly one more challenge, transparently.
        tvh.expire_nonces()
        await client.channel_grid()
        await client.channel_grid()
        assert sum(r.status == 401 for r in tvh.requests) == 2
        assert len(tvh.requests) == 24


async def test_concurrent_calls_share_the_digest_nonce(session: aiohttp.ClientSession) -> None:
    async with FakeTvheadend(auth_mode=1, users=ADMIN) as tvh:
        client = make_client(tvh, session)
        await client.server_info()
        results = await asyncio.gather(*(client.channel_grid() for _ in range(10)))
        assert results == [[]] * 10
        assert sum(r.status == 401 for r in tvh.requests) == 1


async def test_strongest_digest_algorithm_is_used(session: aiohttp.ClientSession) -> None:
    async with FakeTvheadend(auth_mode=1, users=ADMIN) as tvh:
        tvh.state.config["digest_algo"] = 1  # SHA-256 offered first, then MD5
        client = make_client(tvh, session)
        assert (await client.config_load())["digest_algo"] == 1
        assert client.auth_mode == "digest"
        assert [(r.status, r.algorithm) for r in tvh.requests] == [(401, ""), (200, "SHA-256")]


async def test_follows_an_auth_mode_change(session: aiohttp.ClientSession) -> None:
    async with FakeTvheadend(auth_mode=1, users=ADMIN) as tvh:
        client = make_client(tvh, session)
        assert (await client.config_load())["digest"] == 1
        assert client.auth_mode == "digest"
        await client.config_save({"digest": 0})
        assert (await client.config_load())["digest"] == 0
        assert client.auth_mode == "basic"
        await client.config_save({"digest": 1})
        await client.server_info()
        assert client.auth_mode == "digest"


async def test_credentials_in_the_url_are_used_but_not_kept(
    tvh: FakeTvheadend, session: aiohttp.ClientSession
) -> None:
    client = TvheadendClient(session, f"http://admin:admin@127.0.0.1:{tvh.port}/tic-tvh/", timeout=5)
    await client.server_info()
    assert client.base_url == tvh.url and "admin" not in client.server


# -- errors --------------------------------------------------------------------------------------------


async def test_bad_request_names_the_endpoint_and_argument_keys(client: TvheadendClient) -> None:
    conf = {"iptv_url": "http://secret.example/stream?token=abc"}
    error = await raises("TVH_BAD_REQUEST", client.mux_create("0" * 32, conf))
    assert "api/mpegts/network/mux_create" in error.message and "conf, uuid" in error.message
    assert "secret" not in error.message and "0" * 32 not in error.message
    await raises("TVH_BAD_REQUEST", client.idnode_save({"uuid": "f" * 32, "name": "x"}))


async def test_not_found(client: TvheadendClient) -> None:
    error = await raises("TVH_NOT_FOUND", client.idnode_delete("0" * 32))
    assert error.upstream_status == 404
    await client.idnode_delete(["0" * 32])  # The list form skips unknown uuids.
    await raises("TVH_NOT_FOUND", client.dvr_entry_cancel("0" * 32))


async def test_connection_refused(session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    client = TvheadendClient(session, f"http://127.0.0.1:{port}/tic-tvh", "admin", "topsecret", 2)
    error = await raises("TVH_UNREACHABLE", client.server_info())
    assert error.transient and f"127.0.0.1:{port}" in error.message
    assert "topsecret" not in error.message and "topsecret" not in caplog.text


async def test_timeout(tvh: FakeTvheadend, session: aiohttp.ClientSession) -> None:
    tvh.delay_next("api/serverinfo", 1.0)
    error = await raises("TVH_TIMEOUT", make_client(tvh, session, timeout=0.2).server_info())
    assert error.transient


async def test_html_on_200(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    tvh.fail_next("api/channel/grid", 200, body="<html><body>Please log in</body></html>")
    error = await raises("TVH_BAD_RESPONSE", client.channel_grid())
    assert "text/html" in error.message and "HTTP root" in error.message


async def test_server_error_is_transient(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    tvh.fail_next("api/mpegts/network/grid", 503)
    error = await raises("TVH_SERVER_ERROR", client.network_grid())
    assert error.transient and error.upstream_status == 503


async def test_missing_http_root_is_explained(tvh: FakeTvheadend, session: aiohttp.ClientSession) -> None:
    client = TvheadendClient(session, f"http://127.0.0.1:{tvh.port}", "admin", "admin", 5)
    error = await raises("TVH_BAD_RESPONSE", client.server_info())
    assert "HTTP root" in error.message and "/tic-tvh/api/serverinfo" in error.message


async def test_dropped_reply_on_a_write_is_not_retried(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    tvh.drop_next("api/channel/create")
    error = await raises("TVH_CONNECTION_LOST", client.channel_create({"name": "Lost reply"}))
    assert error.transient
    # The change was applied before the reply was lost, and the client did not create it twice.
    assert [c["name"] for c in tvh.state.channels.values()] == ["Lost reply"]
    assert len(tvh.calls_to("api/channel/create")) == 1


async def test_dropped_reply_on_a_read_is_retried_once(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    tvh.state.add_channel("One", 1)
    tvh.drop_next("api/channel/grid")
    assert [c["name"] for c in await client.channel_grid()] == ["One"]
    assert len(tvh.calls_to("api/channel/grid")) == 2


async def test_logs_once_when_down_and_once_when_back(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backend.tvheadend.client")
    port = free_port()
    client = TvheadendClient(session, f"http://127.0.0.1:{port}/tic-tvh", "admin", "admin", 2)
    for _ in range(3):
        await raises("TVH_UNREACHABLE", client.server_info())
    async with FakeTvheadend(auth_mode=2, users=ADMIN, port=port):
        await client.server_info()
        await client.server_info()
    records = [r for r in caplog.records if r.name == "backend.tvheadend.client"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]
    assert records[0].getMessage().startswith(f"TVHeadend at 127.0.0.1:{port} is unavailable (")
    assert records[1].getMessage() == f"TVHeadend at 127.0.0.1:{port} is reachable again"


# -- paging --------------------------------------------------------------------------------------------


async def test_grid_paging_reads_everything(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    net = tvh.state.add_network()
    for i in range(1200):
        tvh.state.add_mux(net, scanned=False, iptv_url=f"http://src/{i}.ts", iptv_muxname=f"Mux {i}")
    muxes = await client.mux_grid()
    assert len(muxes) == 1200 and len({m["uuid"] for m in muxes}) == 1200
    calls = tvh.calls_to("api/mpegts/mux/grid")
    assert [(c.args["start"], c.args["limit"]) for c in calls] == [
        ("0", "500"),
        ("500", "500"),
        ("1000", "500"),
    ]
    assert PAGE_SIZE == 500


async def test_grid_paging_with_total_count(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    channel = tvh.state.add_channel("One", 1)
    for i in range(PAGE_SIZE + 20):
        tvh.state.add_epg_event(channel, 2_000_000_000 + i * 60, 2_000_000_060 + i * 60, f"Show {i}")
    events = await client.epg_events_grid(channel=channel)
    assert len(events) == PAGE_SIZE + 20 and len(tvh.calls_to("api/epg/events/grid")) == 2
    assert events[0]["channelNumber"] == "1"


async def test_empty_grid_takes_one_request(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    assert await client.network_grid() == []
    assert len(tvh.calls_to("api/mpegts/network/grid")) == 1


# -- typed calls ---------------------------------------------------------------------------------------


async def test_publish_flow(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    net = await client.network_create("iptv_network", {"networkname": "TIC IPTV", "skipinitscan": False})
    mux = await client.mux_create(
        net,
        {
            "iptv_url": "http://src/one.ts",
            "iptv_muxname": "One",
            "iptv_sname": "TIC One",
            "channel_number": 101,
        },
    )
    tag = await client.channeltag_create({"name": "TIC", "comment": "tic-managed"})

    async def services() -> list[dict[str, Any]]:
        return await client.service_grid(hidemode="default")

    found = await eventually(services)
    assert found[0]["multiplex_uuid"] == mux and (await client.mux_grid())[0]["scan_result"] == 1
    await client.service_mapper_save([found[0]["uuid"]], type_tags=False, provider_tags=False)

    async def mapped() -> bool:
        return (await client.service_mapper_status()).ok == 1

    await eventually(mapped)
    channels = await client.channel_grid()
    assert [(c["name"], c["number"]) for c in channels] == [("TIC One", 101)]
    await client.idnode_save({"uuid": channels[0]["uuid"], "tags": [tag], "enabled": False})
    assert await client.channel_grid(all=False) == []
    assert [c["enabled"] for c in await client.channel_grid()] == [False]
    assert (await client.idnode_load(channels[0]["uuid"], ["name", "tags"])) == [
        {"uuid": channels[0]["uuid"], "name": "TIC One", "tags": [tag]}
    ]
    assert await client.idnode_load(["0" * 32]) == []
    assert [n["networkname"] for n in await client.network_grid()] == ["TIC IPTV"]
    assert [t["comment"] for t in await client.channeltag_grid()] == ["tic-managed"]
    await client.idnode_delete([tag])
    assert await client.channeltag_grid() == []
    # A second identical read pass makes no writes.
    before = len(tvh.write_calls())
    await client.network_grid(), await client.mux_grid(), await client.channel_grid()
    assert len(tvh.write_calls()) == before


async def test_epggrab_calls(client: TvheadendClient) -> None:
    modules = await client.epggrab_module_list()
    xmltv = next(m for m in modules if m["title"] == "External: XMLTV")
    assert xmltv["status"] == "epggrabmodNone"
    await client.epggrab_config_save({"epgdb_saveafterimport": True, "int_initial": False})
    config = await client.epggrab_config_load()
    assert (
        config["epgdb_saveafterimport"] is True
        and config["int_initial"] is False
        and config["ota_timeout"] == 600
    )


async def test_dvr_calls(tvh: FakeTvheadend, client: TvheadendClient) -> None:
    net = tvh.state.add_network()
    tvh.state.add_mux(net, iptv_url="http://src/1")
    channel = tvh.state.add_channel("One", 1, services=list(tvh.state.services))
    configs = await client.dvr_config_grid()
    assert [c["name"] for c in configs] == [""]
    now = int(time.time())
    later = await client.dvr_entry_create(
        {
            "start": now + 3600,
            "stop": now + 7200,
            "channel": channel,
            "disp_title": "Later",
            "comment": "tic:1",
        }
    )
    running = await client.dvr_entry_create(
        {"start": now, "stop": now + 3600, "channel": channel, "disp_title": "Now", "comment": "tic:2"}
    )
    event = tvh.state.add_epg_event(channel, now + 100, now + 200, "Event")
    by_event = await client.dvr_entry_create_by_event(event, comment="tic:3")
    await raises("TVH_NOT_FOUND", client.dvr_entry_create_by_event(99999))
    await raises(
        "TVH_BAD_REQUEST", client.dvr_entry_create({"start": now, "stop": now + 60, "channel": "One"})
    )
    assert {e["comment"] for e in await client.dvr_entry_grid("upcoming")} == {"tic:1", "tic:2", "tic:3"}
    await client.dvr_entry_stop(running)
    assert [e["uuid"] for e in await client.dvr_entry_grid("finished")] == [running]
    await client.dvr_entry_cancel([later, *by_event])
    await client.dvr_entry_remove(running)
    assert await client.dvr_entry_grid() == []
    assert len(tvh.calls_to("api/dvr/entry/create")) == 2  # the bad channel never reached TVHeadend


async def test_user_calls(
    tvh: FakeTvheadend, client: TvheadendClient, session: aiohttp.ClientSession
) -> None:
    access = await client.access_entry_create(
        {"username": "tic", "prefix": "127.0.0.1/32", "webui": True, "streaming": ["basic"]}
    )
    await client.passwd_entry_create({"username": "tic", "password": "pw"})
    assert access in {a["uuid"] for a in await client.access_entry_grid()}
    assert "tic" in {p["username"] for p in await client.passwd_entry_grid()}
    assert (await make_client(tvh, session, "tic", "pw").test_connection()).is_admin is False
