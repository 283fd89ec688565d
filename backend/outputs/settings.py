"""Settings of the client outputs: stream routing, the XMLTV window and the emulated tuner count."""

from __future__ import annotations

from backend.settings.service import SettingDef, define

STREAM_MODES = ("auto", "tvheadend", "direct")

define(
    SettingDef(
        "output_stream_mode",
        str,
        "auto",
        "Where client playlists point: 'auto' plays published channels through TVHeadend when it is "
        "configured and others straight from their first working source; 'tvheadend' lists only "
        "published channels, through TVHeadend; 'direct' always uses the first working source.",
        choices=STREAM_MODES,
    )
)
define(
    SettingDef(
        "xmltv_past_days",
        int,
        1,
        "Days of past programmes kept in the XMLTV guide served to clients.",
        minimum=0,
        maximum=14,
    )
)
define(
    SettingDef(
        "hdhr_default_tuner_count",
        int,
        4,
        "Tuners the HDHomeRun emulation announces when none of its playlists has a connection limit.",
        minimum=1,
        maximum=64,
    )
)
