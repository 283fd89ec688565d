"""Settings of the lineup: the EPG auto-match threshold and the logo cache limits."""

from __future__ import annotations

from backend.settings.service import SettingDef, define

define(
    SettingDef(
        "epg_match_threshold",
        int,
        90,
        "Lowest score (0-100) at which automatic guide matching maps a channel by name; "
        "matches by tvg-id always score 100. Lower suggestions are shown, never applied.",
        minimum=50,
        maximum=100,
    )
)
define(
    SettingDef(
        "logo_max_bytes",
        int,
        512 * 1024,
        "Largest logo image TIC caches, in bytes; bigger images are refused.",
        minimum=1024,
        maximum=10 * 1024 * 1024,
    )
)
define(
    SettingDef(
        "logo_cache_max_mb",
        int,
        200,
        "Disk space the logo cache may use, in MiB; when full, new logos are not cached.",
        minimum=1,
        maximum=100_000,
    )
)
define(
    SettingDef(
        "logo_refresh_days",
        int,
        7,
        "Days before a cached logo is fetched again to pick up changes.",
        minimum=1,
        maximum=365,
    )
)
