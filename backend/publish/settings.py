"""Settings of the configure and publish tasks (TVHeadend's URL and login are the tvheadend domain's)."""

from __future__ import annotations

from backend.settings.service import SettingDef, define

EPG_MODES = ("auto", "socket", "grabber", "off")
DEFAULT_EPG_CRON = "# TIC: run tv_grab_tic every 6 hours\n17 */6 * * *"


def _absolute_or_empty(value: str) -> str | None:
    return None if not value or value.startswith("/") else "must be an absolute path, or empty"


for _d in (
    SettingDef(
        "tvh_xmltv_socket",
        str,
        "",
        "Path of TVHeadend's external XMLTV socket as TIC sees it (e.g. /tvh-config/epggrab/xmltv.sock "
        "on a volume shared with TVHeadend); empty when TIC cannot reach TVHeadend's files.",
        validate=_absolute_or_empty,
    ),
    SettingDef(
        "tvh_epg_mode",
        str,
        "auto",
        "How TVHeadend gets TIC's guide: 'socket' (TIC pushes XMLTV into the external XMLTV socket), "
        "'grabber' (TVHeadend runs tv_grab_tic), 'auto' (socket when tvh_xmltv_socket is set), 'off'.",
        choices=EPG_MODES,
    ),
    SettingDef(
        "tvh_epg_cron",
        str,
        DEFAULT_EPG_CRON,
        "TVHeadend's schedule for internal grabbers such as tv_grab_tic (cron syntax, TVHeadend's format).",
    ),
    SettingDef(
        "tvh_exclusive_epg",
        bool,
        False,
        "Let TIC disable TVHeadend's other EPG grabbers (over-the-air EIT/PSIP, other XMLTV grabbers) so "
        "only TIC's guide is used. Off: TIC leaves them as they are.",
    ),
    SettingDef(
        "tvh_server_name",
        str,
        "TIC",
        "Server name TIC gives TVHeadend (shown to HTSP clients); empty leaves TVHeadend's own name.",
    ),
    SettingDef(
        "tvh_dvr_profile",
        str,
        "pass",
        "Stream profile of TVHeadend's default DVR configuration; 'pass' records the untouched MPEG-TS "
        "that TIC's HLS playback remuxes. Empty leaves TVHeadend's choice.",
    ),
    SettingDef(
        "tvh_scan_timeout_seconds",
        int,
        90,
        "How long one publish waits for new muxes to be scanned before it reports them as pending.",
        minimum=0,
        maximum=3600,
    ),
    SettingDef(
        "tvh_publish_debounce_seconds",
        int,
        5,
        "A publish waits until the lineup has been quiet this long, so a burst of edits is published once.",
        minimum=0,
        maximum=300,
    ),
    SettingDef(
        "tvh_publish_concurrency",
        int,
        8,
        "How many TVHeadend calls one publish makes at the same time.",
        minimum=1,
        maximum=32,
    ),
):
    define(_d)
