"""Settings the playlists domain defines: the stream format of Xtream Codes sources."""

from __future__ import annotations

from backend.settings.service import SettingDef, define

define(
    SettingDef(
        "xtream_stream_format",
        str,
        "ts",
        "Stream format of imported Xtream Codes channels: ts (MPEG-TS) or m3u8 (HLS).",
        choices=("ts", "m3u8"),
    )
)
