"""The configure task against the fake TVHeadend: what it sets, idempotence, opt-in, settings hook."""

from __future__ import annotations

import asyncio
from typing import Any

from backend.publish.configure import ConfigureOptions, configure_tvheadend
from backend.tvheadend.client import TvheadendClient
from tests.conftest import ApiClient
from tests.fakes.tvheadend import FakeTvheadend


def modules(tvh: FakeTvheadend) -> dict[str, bool]:
    return {
        n.extra["title"]: n.fields["enabled"]
        for n in tvh.state.of("epggrab_mod_ext_xmltv", "epggrab_mod_int_xmltv", "epggrab_mod_ota")
    }


def add_tv_grab_tic(tvh: FakeTvheadend) -> str:
    node = tvh.state.create(
        "epggrab_mod_int_xmltv",
        {"enabled": False},
        raw={"name": "XMLTV: tv_grab_tic", "type": "Internal", "path": "/usr/local/bin/tv_grab_tic"},
        notify=False,
    )
    node.extra["title"] = "Internal: XMLTV: tv_grab_tic: the guide of your TIC lineup"
    return node.uuid


async def test_socket_mode_configures_once_then_writes_nothing(
    client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    options = ConfigureOptions(server_name="TIC Home", epg_mode="socket", xmltv_socket=tvh.xmltv_socket_path)
    before = modules(tvh)
    result = await configure_tvheadend(client, options)

    assert tvh.state.config["server_name"] == "TIC Home"
    assert modules(tvh)["External: XMLTV"] is True
    # Over-the-air grabbers are the user's business unless they opt in.
    assert {k: v for k, v in modules(tvh).items() if k != "External: XMLTV"} == {
        k: v for k, v in before.items() if k != "External: XMLTV"
    }
    epg = tvh.state.epggrab_config
    assert epg["epgdb_saveafterimport"] is True and epg["channel_rename"] is False
    pass_profile = next(k for k, v in tvh.state.profiles.items() if v == "pass")
    default = next(c for c in tvh.state.dvr_configs.values() if c["name"] == "")
    assert default["profile"] == pass_profile
    assert result["warnings"] == []

    tvh.clear_calls()
    again = await configure_tvheadend(client, options)
    assert tvh.write_calls() == [] and again["changes"] == []
    assert again["message"] == "TVHeadend already configured"


async def test_dvr_profile_is_set_when_it_differs(client: TvheadendClient, tvh: FakeTvheadend) -> None:
    matroska = next(k for k, v in tvh.state.profiles.items() if v == "matroska")
    default = next(n for n in tvh.state.of("dvrconfig") if n.fields["name"] == "")
    default.fields["profile"] = matroska
    await configure_tvheadend(client, ConfigureOptions(server_name="", epg_mode="off"))
    assert tvh.state.profiles[default.fields["profile"]] == "pass"
    assert tvh.state.config["server_name"] == "Tvheadend", "an empty server name leaves TVHeadend's"


async def test_grabber_mode_without_tv_grab_tic_warns(client: TvheadendClient, tvh: FakeTvheadend) -> None:
    result = await configure_tvheadend(client, ConfigureOptions(epg_mode="grabber", epg_cron="5 */6 * * *"))
    assert any("tv_grab_tic is not installed" in w for w in result["warnings"])
    assert tvh.state.epggrab_config["cron"] == "5 */6 * * *"


async def test_grabber_mode_enables_tv_grab_tic_and_exclusive_disables_the_others(
    client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    uuid = add_tv_grab_tic(tvh)
    options = ConfigureOptions(epg_mode="grabber", epg_cron="5 */6 * * *")
    result = await configure_tvheadend(client, options)
    assert result["warnings"] == []
    assert tvh.state.nodes[uuid].fields["enabled"] is True
    assert modules(tvh)["Over-the-air: EIT: EPG Grabber"] is True

    exclusive = await configure_tvheadend(
        client, ConfigureOptions(epg_mode="grabber", epg_cron="5 */6 * * *", exclusive_epg=True)
    )
    enabled = {title for title, on in modules(tvh).items() if on}
    assert enabled == {"Internal: XMLTV: tv_grab_tic: the guide of your TIC lineup"}
    assert tvh.state.epggrab_config["ota_initial"] is False
    assert len(exclusive["changes"]) >= 2
    tvh.clear_calls()
    await configure_tvheadend(
        client, ConfigureOptions(epg_mode="grabber", epg_cron="5 */6 * * *", exclusive_epg=True)
    )
    assert tvh.write_calls() == []


async def wait_task(admin: ApiClient, name: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        resp = await admin.get(f"/tic-api/tasks?name={name}")
        items = (await resp.get_json())["items"]
        done = [t for t in items if t["status"] in ("succeeded", "failed")]
        if done:
            return done[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} did not finish")


async def test_saving_tvh_settings_queues_configure(admin: ApiClient, tvh: FakeTvheadend) -> None:
    resp = await admin.patch(
        "/tic-api/settings",
        json={
            "tvh_url": tvh.url,
            "tvh_username": "admin",
            "tvh_password": "admin",
            "tvh_server_name": "From TIC",
        },
    )
    assert resp.status_code == 200, await resp.get_data(as_text=True)
    run = await wait_task(admin, "configure_tvheadend")
    assert run["status"] == "succeeded", run
    assert tvh.state.config["server_name"] == "From TIC"
