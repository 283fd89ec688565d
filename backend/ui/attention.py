"""What needs the admin's attention, each with a link to the page that fixes it (pure: facts in, items out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.ui.overview import DiskUse, human_size

#: Below this free space (bytes, or share of the filesystem) the disk is flagged.
LOW_DISK_BYTES = 2 * 1024**3
LOW_DISK_SHARE = 0.05


@dataclass(frozen=True)
class Attention:
    severity: str  # error, warn or info
    text: str
    href: str
    action: str


def _sources(items: list[dict[str, Any]], what: str, href: str) -> list[Attention]:
    out: list[Attention] = []
    for src in items:
        if not src["enabled"]:
            continue
        if src["status"] == "failed":
            out.append(
                Attention(
                    "error",
                    f"{what} “{src['name']}” failed to import: {src['error'] or 'no reason given'}",
                    href,
                    "Fix the source",
                )
            )
        elif src["last_import_at"] is None and src["status"] not in ("running", "queued"):
            out.append(
                Attention("info", f"{what} “{src['name']}” has never been imported.", href, "Import it now")
            )
    return out


def build(
    *,
    playlists: list[dict[str, Any]],
    epgs: list[dict[str, Any]],
    lineup: dict[str, Any],
    tvh_configured: bool | None,
    last_publish: dict[str, Any] | None,
    failures: list[dict[str, Any]],
    paused: bool,
    recordings: dict[str, Any] | None,
    disk: DiskUse | None,
    wizard_active: bool,
) -> list[Attention]:
    """Everything worth a look, most serious first."""
    items: list[Attention] = []
    if not playlists:
        items.append(
            Attention(
                "info",
                "No playlist yet: TIC needs your provider's playlist to build a lineup.",
                "/playlists",
                "Add a playlist",
            )
        )
    if not epgs:
        items.append(
            Attention(
                "info",
                "No guide (XMLTV) source yet: channels will have no programmes.",
                "/epgs",
                "Add a guide",
            )
        )
    items += _sources(playlists, "Playlist", "/playlists")
    items += _sources(epgs, "Guide", "/epgs")
    if playlists and lineup["total"] == 0:
        items.append(
            Attention(
                "info",
                "Your lineup is empty: create channels from the imported streams.",
                "/channels",
                "Create channels",
            )
        )
    if lineup["unmapped"]:
        items.append(
            Attention(
                "warn",
                f"{lineup['unmapped']} enabled channel(s) have no guide mapped.",
                "/channels",
                "Match guides",
            )
        )
    if lineup["mapped_without_programmes"]:
        items.append(
            Attention(
                "warn",
                f"{lineup['mapped_without_programmes']} mapped channel(s) have no programmes in the next 24 hours.",
                "/epgs",
                "Refresh the guides",
            )
        )
    if tvh_configured is False and lineup["total"]:
        items.append(
            Attention("info", "TVHeadend is not connected (optional).", "/tvheadend", "Connect TVHeadend")
        )
    if last_publish is not None and last_publish["status"] == "failed":
        items.append(
            Attention(
                "error",
                f"The last publish to TVHeadend failed: {last_publish['error'] or ''}",
                "/tvheadend",
                "Review and publish",
            )
        )
    for run in failures:
        items.append(
            Attention(
                "error",
                f"Task {run['name']} failed: {run['error'] or 'no reason given'}",
                "/tasks",
                "See the task",
            )
        )
    if paused:
        items.append(
            Attention(
                "warn", "The task queue is paused: imports and publishes wait.", "/tasks", "Resume the queue"
            )
        )
    if recordings and recordings["failed_recently"]:
        items.append(
            Attention(
                "warn",
                f"{recordings['failed_recently']} recording(s) failed or were missed in the last day.",
                "/dvr",
                "See recordings",
            )
        )
    if disk is not None and disk.free_bytes is not None and disk.fs_bytes:
        if disk.free_bytes < LOW_DISK_BYTES or disk.free_bytes / disk.fs_bytes < LOW_DISK_SHARE:
            items.append(
                Attention(
                    "error",
                    f"Only {human_size(disk.free_bytes)} free on the data disk.",
                    "/settings",
                    "Review settings",
                )
            )
    if wizard_active and lineup["total"] == 0:
        items.insert(
            0,
            Attention(
                "info",
                "The setup wizard walks you through the first lineup.",
                "/welcome",
                "Resume the wizard",
            ),
        )
    order = {"error": 0, "warn": 1, "info": 2}
    return sorted(items, key=lambda a: order[a.severity])
