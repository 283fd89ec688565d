"""The TVHeadend settings TIC needs, applied idempotently: read, compare, save only what differs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.keys import Keyring
from backend.publish.guide import grabber_module
from backend.settings import service as settings_service
from backend.tasks.offload import run_blocking
from backend.tvheadend.client import TvheadendClient

log = logging.getLogger(__name__)

EXTERNAL_XMLTV_TITLE = "External: XMLTV"


@dataclass(frozen=True)
class ConfigureOptions:
    server_name: str = "TIC"
    #: "socket", "grabber" or "off" (already resolved from "auto").
    epg_mode: str = "socket"
    epg_cron: str = ""
    exclusive_epg: bool = False
    dvr_profile: str = "pass"
    xmltv_socket: str = ""


async def configure_options(session: Any, keyring: Keyring) -> ConfigureOptions:
    values = await settings_service.get_settings(session, keyring)
    socket = str(values["tvh_xmltv_socket"])
    mode = str(values["tvh_epg_mode"])
    if mode == "auto":
        mode = "socket" if socket else "grabber"
    return ConfigureOptions(
        server_name=str(values["tvh_server_name"]),
        epg_mode=mode,
        epg_cron=str(values["tvh_epg_cron"]),
        exclusive_epg=bool(values["tvh_exclusive_epg"]),
        dvr_profile=str(values["tvh_dvr_profile"]),
        xmltv_socket=socket,
    )


def _differs(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, want in desired.items():
        have = current.get(key)
        if isinstance(want, bool):
            have = bool(have) if not isinstance(have, str) else have.lower() in ("1", "true", "yes", "on")
        elif isinstance(want, str):
            have = "" if have is None else str(have)
        if have != want:
            out[key] = want
    return out


async def configure_tvheadend(client: TvheadendClient, options: ConfigureOptions) -> dict[str, Any]:
    """Server name, EPG grabbers and their schedule, DVR stream profile. A second run writes nothing."""
    changes: list[dict[str, Any]] = []
    warnings: list[str] = []

    if options.server_name:
        diff = _differs(await client.config_load(), {"server_name": options.server_name})
        if diff:
            await client.config_save(diff)
            changes.append({"what": "server", "fields": diff})

    # TIC owns channel names, numbers and icons: a guide must not rename or renumber channels.
    epg_config: dict[str, Any] = {
        "channel_rename": False,
        "channel_renumber": False,
        "channel_reicon": False,
        "epgdb_saveafterimport": True,
    }
    if options.epg_mode == "grabber":
        epg_config.update(cron=options.epg_cron, int_initial=True)
    if options.exclusive_epg:
        epg_config["ota_initial"] = False
    if options.epg_mode != "off":
        diff = _differs(await client.epggrab_config_load(), epg_config)
        if diff:
            await client.epggrab_config_save(diff)
            changes.append({"what": "epg grabber configuration", "fields": diff})
        await _configure_modules(client, options, changes, warnings)

    if options.dvr_profile:
        await _configure_dvr(client, options.dvr_profile, changes, warnings)

    message = f"TVHeadend configured: {len(changes)} change(s)" if changes else "TVHeadend already configured"
    if warnings:
        message += f"; {len(warnings)} warning(s)"
    return {"message": message, "changes": changes, "warnings": warnings, "epg_mode": options.epg_mode}


async def _configure_modules(
    client: TvheadendClient, options: ConfigureOptions, changes: list[dict[str, Any]], warnings: list[str]
) -> None:
    listed = await client.epggrab_module_list()
    details = {
        r["uuid"]: r
        for r in await client.idnode_load([m["uuid"] for m in listed], ["name", "enabled", "path"])
    }
    modules = [{**details.get(m["uuid"], {}), **m} for m in listed]
    ours: dict[str, Any] | None
    if options.epg_mode == "socket":
        ours = next((m for m in modules if m.get("title") == EXTERNAL_XMLTV_TITLE), None)
        if ours is None:
            warnings.append("TVHeadend has no 'External: XMLTV' grabber; TIC cannot push its guide there")
    else:
        ours = grabber_module(modules)
        if ours is None:
            warnings.append(
                "tv_grab_tic is not installed where TVHeadend runs, so TVHeadend cannot fetch TIC's guide: "
                "install it (see the TVHeadend page of the user guide) or share TVHeadend's XMLTV socket "
                "with TIC and set tvh_xmltv_socket"
            )
    wanted: dict[str, bool] = {}
    if ours is not None:
        wanted[ours["uuid"]] = True
    if options.exclusive_epg:
        # Opted in: only TIC's guide; over-the-air and other XMLTV grabbers are switched off.
        for module in modules:
            wanted.setdefault(module["uuid"], False)
    saves = []
    for module in modules:
        want = wanted.get(module["uuid"])
        enabled = module.get("enabled")
        if enabled is None:
            enabled = module.get("status") == "epggrabmodEnabled"
        if want is not None and bool(enabled) != want:
            saves.append({"uuid": module["uuid"], "enabled": want})
            changes.append({"what": f"epg grabber '{module.get('title')}'", "fields": {"enabled": want}})
    if saves:
        await client.idnode_save(saves)
    if options.epg_mode == "socket" and ours is not None:
        if not options.xmltv_socket:
            warnings.append(
                f"TVHeadend's XMLTV socket is {ours.get('path') or 'in its configuration directory'}; set "
                "tvh_xmltv_socket to where TIC sees it (a shared volume) so TIC can push the guide"
            )
        elif not await run_blocking(Path(options.xmltv_socket).exists):
            warnings.append(
                f"TIC cannot see TVHeadend's XMLTV socket at {options.xmltv_socket} (TVHeadend has it at "
                f"{ours.get('path') or '?'}): share TVHeadend's configuration directory with TIC"
            )


async def _configure_dvr(
    client: TvheadendClient, profile_name: str, changes: list[dict[str, Any]], warnings: list[str]
) -> None:
    data = await client.call("profile/list", idempotent=True)
    entries = data.get("entries", []) if isinstance(data, dict) else []
    profile = next((e.get("key") for e in entries if e.get("val") == profile_name), None)
    if profile is None:
        warnings.append(f"TVHeadend has no stream profile named '{profile_name}' for recordings")
        return
    configs = await client.dvr_config_grid()
    # The default DVR configuration is the one whose name is empty.
    default = next((c for c in configs if not c.get("name")), None)
    if default is None:
        warnings.append("TVHeadend has no default DVR configuration")
        return
    if default.get("profile") != profile:
        await client.idnode_save({"uuid": default["uuid"], "profile": profile})
        changes.append({"what": "default DVR configuration", "fields": {"profile": profile_name}})
