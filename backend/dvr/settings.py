"""DVR settings: padding defaults, the parallel-recording limit, HLS playback limits and recordings access."""

from __future__ import annotations

from backend.settings.service import SettingDef, define

for _d in (
    SettingDef(
        "dvr_padding_before_minutes",
        int,
        2,
        "Minutes recorded before a programme starts, unless a recording or rule says otherwise.",
        minimum=0,
        maximum=120,
    ),
    SettingDef(
        "dvr_padding_after_minutes",
        int,
        5,
        "Minutes recorded after a programme ends, unless a recording or rule says otherwise.",
        minimum=0,
        maximum=240,
    ),
    SettingDef(
        "dvr_max_parallel_recordings",
        int,
        2,
        "How many recordings TVHeadend can make at once (tuners or provider connections); "
        "overlapping recordings beyond this are warned about. 0 turns the warning off.",
        minimum=0,
        maximum=64,
    ),
    SettingDef(
        "dvr_tvh_config",
        str,
        "",
        "TVHeadend DVR profile (its uuid) used for new recordings; empty uses TVHeadend's default profile.",
    ),
    SettingDef(
        "dvr_rules_horizon_days",
        int,
        14,
        "How far ahead in the guide recurring rules schedule recordings.",
        minimum=1,
        maximum=31,
    ),
    SettingDef(
        "dvr_hls_max_jobs",
        int,
        2,
        "Most recordings converted for browser playback (ffmpeg processes) at the same time.",
        minimum=1,
        maximum=32,
    ),
    SettingDef(
        "dvr_hls_cache_max_mb",
        int,
        4096,
        "Disk space the playback cache may use, in MiB; the least recently watched is removed first.",
        minimum=16,
    ),
    SettingDef(
        "dvr_hls_idle_seconds",
        int,
        600,
        "Seconds after the last request before a playback cache (and its ffmpeg) is removed.",
        minimum=10,
        maximum=86400,
    ),
    SettingDef(
        "dvr_hls_segment_seconds",
        int,
        6,
        "Target length of playback segments; segments start on key frames, so some are longer.",
        minimum=2,
        maximum=20,
    ),
    SettingDef(
        "dvr_local_recordings_dir",
        str,
        "",
        "Directory where TIC can read TVHeadend's recordings (a shared mount); empty streams them from "
        "TVHeadend instead.",
    ),
    SettingDef(
        "dvr_tvh_recordings_dir",
        str,
        "",
        "The same directory as TVHeadend names it (its DVR storage path), when it differs from the local one.",
    ),
):
    define(_d)
