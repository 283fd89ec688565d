"""Settings of the EPG domain."""

from __future__ import annotations

from backend.settings.service import SettingDef, define

define(
    SettingDef(
        "epg_split_min_mb",
        int,
        32,
        "Guides at least this big (in MiB, uncompressed) are read as two halves by two processes at once, "
        "on machines with two or more cores.",
        minimum=1,
        maximum=1_000_000,
    )
)
