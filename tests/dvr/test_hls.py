"""HLS playback with a real ffmpeg: output checked with ffprobe, faults, the concurrency cap and cleanup."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from backend.dvr.hls import HlsLimits, hls_manager
from tests.conftest import make_app
from tests.dvr.conftest import (
    TS_SECONDS,
    Guide,
    TokenClient,
    insert_recording,
    make_user,
    reconcile,
    recording,
    set_settings,
    tvh_entry,
)
from tests.fakes.tvheadend import FakeTvheadend

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


async def completed(
    svc: Any, tvh: FakeTvheadend, guide: Guide, title: str = "Film", owner_id: int = 1
) -> tuple[int, str]:
    """A finished recording in TVHeadend and TIC (as reconcile leaves it)."""
    ch = await guide.channel(title)
    uuid = tvh_entry(tvh, ch, title=title)
    rid = await insert_recording(
        svc, ch, tvh_uuid=uuid, file_size=len(tvh.state.dvr_payload), owner_id=owner_id, title=title
    )
    return rid, uuid


async def in_progress(
    svc: Any, tvh: FakeTvheadend, guide: Guide, title: str = "Live", owner_id: int | None = None
) -> tuple[int, str]:
    """A recording TVHeadend is making now: its file holds about half of the test stream so far."""
    ch = await guide.channel(title)
    now = int(tvh.state.now())
    assert ch.tvh_uuid is not None
    uuid = tvh.state.add_dvr_entry(ch.tvh_uuid, now - 10, now + 40, title)
    rid = await insert_recording(
        svc,
        ch,
        tvh_uuid=uuid,
        status="recording",
        minutes_ago=1,
        length=2,
        file_size=1000,
        title=title,
        owner_id=owner_id,
    )
    return rid, uuid


async def get_playlist(client: Any, rid: int, query: str = "", *, status: int = 200) -> Any:
    resp = await client.get(f"/tic-api/recordings/{rid}/hls.m3u8{query}")
    if resp.status_code != status:
        raise AssertionError((resp.status_code, await resp.get_data(as_text=True)))
    if status != 200:
        return await resp.get_json(), resp
    assert resp.headers["Content-Type"].startswith(PLAYLIST_TYPE)
    return await resp.get_data(as_text=True), resp


async def wait_for_endlist(client: Any, rid: int, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text, _ = await get_playlist(client, rid)
        if "#EXT-X-ENDLIST" in text:
            return str(text)
        if time.monotonic() > deadline:
            raise AssertionError(f"no ENDLIST after {timeout} s:\n{text}")
        await asyncio.sleep(0.2)


def segment_uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


async def download(client: Any, rid: int, playlist: str, into: Path) -> Path:
    """Copy the playlist and its segments to `into`, so ffprobe reads exactly what a player gets."""
    into.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in playlist.splitlines():
        if line and not line.startswith("#"):
            resp = await client.get(f"/tic-api/recordings/{rid}/{line}")
            assert resp.status_code == 200, line
            assert resp.headers["Content-Type"].startswith("video/mp2t")
            name = line.split("/")[-1].split("?")[0]
            (into / name).write_bytes(await resp.get_data())
            line = name
        lines.append(line)
    local = into / "local.m3u8"
    local.write_text("\n".join(lines) + "\n")
    return local


def ffprobe_json(*args: str) -> Any:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args], capture_output=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


def pid_gone(pid: int) -> bool:
    """Exited and reaped: a zombie would still have a /proc entry."""
    return not Path(f"/proc/{pid}").exists()


async def test_completed_recording_is_a_vod_playlist_of_keyframe_aligned_segments(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any, tmp_path: Path
) -> None:
    rid, _uuid = await completed(svc, configured, guide)
    text = await wait_for_endlist(boss, rid)
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-INDEPENDENT-SEGMENTS" in text
    uris = segment_uris(text)
    assert len(uris) >= 3 and all(u.startswith("hls/seg_") for u in uris)
    local = await download(boss, rid, text, tmp_path / "copy")
    duration = float(ffprobe_json("-show_entries", "format=duration", str(local))["format"]["duration"])
    assert abs(duration - TS_SECONDS) < 1.0, duration
    streams = ffprobe_json("-show_entries", "stream=codec_name", str(local))["streams"]
    assert {s["codec_name"] for s in streams} == {"mpeg2video", "mp2"}  # remuxed, not transcoded
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(local), "-f", "null", "-"], capture_output=True, timeout=60
    )
    assert decode.returncode == 0 and decode.stderr == b"", decode.stderr[-500:]
    for seg in sorted(local.parent.glob("seg_*.ts")):
        first = ffprobe_json(
            "-select_streams", "v:0", "-read_intervals", "%+#1", "-show_entries", "frame=key_frame", str(seg)
        )["frames"][0]
        assert first["key_frame"] == 1, seg.name


async def test_stream_key_and_rights(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any, app: Any
) -> None:
    rid, _ = await completed(svc, configured, guide, owner_id=boss.user_id)
    anon = app.test_client()
    text, _ = await get_playlist(anon, rid, f"?stream_key={boss.stream_key}")
    uris = segment_uris(text)
    assert uris and all(u.endswith(f"?stream_key={boss.stream_key}") for u in uris)
    seg = await anon.get(f"/tic-api/recordings/{rid}/{uris[0]}")
    assert seg.status_code == 200 and len(await seg.get_data()) > 0
    # Session / token callers get plain segment URLs.
    plain, _ = await get_playlist(boss, rid)
    assert "stream_key" not in plain

    body, _ = await get_playlist(anon, rid, status=401)
    assert body["code"] == "UNAUTHORIZED"
    body, _ = await get_playlist(anon, rid, "?stream_key=wrong", status=401)
    assert body["code"] == "BAD_STREAM_KEY"
    assert (await anon.get(f"/tic-api/recordings/{rid}/{uris[0].split('?')[0]}")).status_code == 401
    nodvr = await make_user(app, "nodvr", "streamer", "none")
    body, _ = await get_playlist(anon, rid, f"?stream_key={nodvr.stream_key}", status=403)
    assert body["code"] == "DVR_FORBIDDEN"
    own = await make_user(app, "owner2", "streamer", "own")
    await get_playlist(own, rid, status=404)  # someone else's recording
    seen_all = await make_user(app, "viewer", "streamer", "all")
    await get_playlist(anon, rid, f"?stream_key={seen_all.stream_key}")


async def test_in_progress_recording_grows_then_ends(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    tvh = configured
    rid, _uuid = await in_progress(svc, tvh, guide)
    text, _ = await get_playlist(boss, rid)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text and "#EXT-X-ENDLIST" not in text
    first_count = len(segment_uris(text))
    assert first_count >= 1
    # TVHeadend finishes; reconcile notices; the relay reads the rest and ffmpeg closes the playlist.
    tvh.state.advance(120)
    await reconcile(svc)
    assert (await recording(svc, rid)).status == "completed"
    text = await wait_for_endlist(boss, rid, timeout=20)
    assert len(segment_uris(text)) > first_count
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text


async def test_two_players_share_one_ffmpeg(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any, app: Any
) -> None:
    rid, uuid = await completed(svc, configured, guide)
    other = await make_user(app, "second", "admin")
    (a, _ra), (b, _rb) = await asyncio.gather(get_playlist(boss, rid), get_playlist(other, rid))
    assert segment_uris(a) and segment_uris(b)
    manager = hls_manager(svc)
    assert list(manager.jobs) == [rid]
    # One ffmpeg, fed by one read of the file (plus the authentication challenge).
    reads = [r for r in configured.requests if r.path.endswith("dvrfile/" + uuid) and r.status == 200]
    assert len(reads) == 1


async def test_concurrency_cap_answers_503(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    await set_settings(svc, dvr_hls_max_jobs=1)
    live, _ = await in_progress(svc, configured, guide)
    done, _ = await completed(svc, configured, guide, title="Other")
    await get_playlist(boss, live)
    assert hls_manager(svc).jobs[live].running  # still following the growing file
    body, resp = await get_playlist(boss, done, status=503)
    assert body["code"] == "HLS_BUSY" and resp.headers["Retry-After"] == "10"
    # Deleting the busy one kills its ffmpeg and frees the slot.
    pid = hls_manager(svc).jobs[live].pid
    assert (await boss.delete(f"/tic-api/recordings/{live}")).status_code == 204
    assert pid is not None and pid_gone(pid)
    await get_playlist(boss, done)


async def test_segment_names_are_validated(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    rid, _ = await completed(svc, configured, guide)
    text = await wait_for_endlist(boss, rid)
    good = segment_uris(text)[0]
    assert (await boss.get(f"/tic-api/recordings/{rid}/{good}")).status_code == 200
    for name in (
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "..%2Findex.m3u8",
        "index.m3u8",
        "seg_00000.ts%2F..%2F..%2Fsecret",
        "seg_0.ts",
        "seg_00000.ts.tmp",
        "%2Fetc%2Fpasswd",
    ):
        resp = await boss.get(f"/tic-api/recordings/{rid}/hls/{name}")
        assert resp.status_code == 404, name
    resp = await boss.get(f"/tic-api/recordings/{rid}/hls/../../../etc/passwd")
    assert resp.status_code == 404


async def test_not_playable_yet(configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any) -> None:
    ch = await guide.channel("One")
    rid = await insert_recording(svc, ch, status="scheduled", minutes_ago=-60, file_size=None)
    body, _ = await get_playlist(boss, rid, status=409)
    assert body["code"] == "RECORDING_NOT_PLAYABLE"
    await get_playlist(boss, 9999, status=404)


async def test_missing_file_is_a_clear_error(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    rid, uuid = await completed(svc, configured, guide)
    configured.state.remove_dvr_file(uuid)
    body, _ = await get_playlist(boss, rid, status=404)
    assert body["code"] == "RECORDING_FILE_MISSING" and "TVHeadend has no file" in body["message"]
    pid = hls_manager(svc).jobs[rid].pid
    assert pid is not None and pid_gone(pid)
    # Reconcile then learns the file is gone and the recording stops offering playback.
    await reconcile(svc)
    rec = await recording(svc, rid)
    assert rec.status_reason == "File missing" and rec.file_size is None


async def test_garbage_file_is_a_clear_error(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    rid, uuid = await completed(svc, configured, guide)
    configured.state.dvr_files[uuid] = b"\x00" * 50_000
    body, _resp = await get_playlist(boss, rid, status=502)
    assert body["code"] in ("HLS_FAILED", "RECORDING_FILE_EMPTY"), body
    assert "truncated" in body["message"]


async def test_truncated_file_plays_what_is_there(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any, tmp_path: Path
) -> None:
    rid, uuid = await completed(svc, configured, guide)
    payload = configured.state.dvr_payload
    configured.state.dvr_files[uuid] = payload[: len(payload) // 2 + 101]  # cut mid-packet
    text = await wait_for_endlist(boss, rid)
    local = await download(boss, rid, text, tmp_path / "half")
    duration = float(ffprobe_json("-show_entries", "format=duration", str(local))["format"]["duration"])
    assert 4 < duration < TS_SECONDS - 4


async def test_ffmpeg_missing(
    configured: FakeTvheadend,
    guide: Guide,
    boss: TokenClient,
    svc: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rid, _ = await completed(svc, configured, guide)
    monkeypatch.setenv("PATH", str(tmp_path))
    body, _resp = await get_playlist(boss, rid, status=503)
    assert body["code"] == "FFMPEG_MISSING" and "install the ffmpeg package" in body["message"]


async def test_ffmpeg_crash_is_reported_and_reaped(
    configured: FakeTvheadend,
    guide: Guide,
    boss: TokenClient,
    svc: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rid, _ = await completed(svc, configured, guide)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    script = fake_bin / "ffmpeg"
    script.write_text("#!/bin/sh\necho 'simulated muxer crash' >&2\nkill -SEGV $$\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    body, _ = await get_playlist(boss, rid, status=502)
    assert body["code"] == "HLS_FAILED" and "simulated muxer crash" in body["message"]
    job = hls_manager(svc).jobs[rid]
    assert job.proc is not None and job.proc.returncode == -11 and job.pid is not None and pid_gone(job.pid)
    # The failure is remembered briefly instead of spawning ffmpeg on every retry.
    body, _ = await get_playlist(boss, rid, status=502)
    assert hls_manager(svc).jobs[rid] is job


async def test_local_recordings_directory_is_read_directly(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any, tmp_path: Path
) -> None:
    rid, uuid = await completed(svc, configured, guide, title="Local Film")
    local_dir = tmp_path / "mnt"
    local_dir.mkdir()
    (local_dir / "Local Film.ts").write_bytes(configured.state.dvr_payload)
    async with svc.db.transaction() as session:
        from backend.dvr.models import Recording

        row = await session.get(Recording, rid)
        assert row is not None
        row.tvh_filename = "/recordings/Local Film.ts"
    await set_settings(svc, dvr_local_recordings_dir=str(local_dir), dvr_tvh_recordings_dir="/recordings")
    configured.state.remove_dvr_file(uuid)  # TVHeadend could not serve it: the local copy must be used
    text = await wait_for_endlist(boss, rid)
    assert len(segment_uris(text)) >= 3
    assert not [r for r in configured.requests if "dvrfile" in r.path]


async def test_idle_caches_and_the_disk_cap(
    configured: FakeTvheadend, guide: Guide, boss: TokenClient, svc: Any
) -> None:
    first, _ = await completed(svc, configured, guide, title="First")
    second, _ = await completed(svc, configured, guide, title="Second")
    await wait_for_endlist(boss, first)
    await wait_for_endlist(boss, second)
    manager = hls_manager(svc)
    dirs = {rid: job.dir for rid, job in manager.jobs.items()}
    assert all(d.exists() for d in dirs.values())
    # Over the cap: the least recently watched cache goes first.
    await get_playlist(boss, second)
    one_cache = manager.cache_bytes() // 2
    manager.limits = HlsLimits(cache_max_bytes=one_cache + 1024, idle_seconds=3600)
    assert await manager.sweep() == [first]
    assert not dirs[first].exists() and dirs[second].exists()
    # Idle: removed after the idle timeout.
    assert await manager.sweep(now=time.monotonic() + 7200) == [second]
    assert not dirs[second].exists() and manager.jobs == {}
    # Playback simply starts again afterwards.
    await wait_for_endlist(boss, first)


async def test_shutdown_kills_ffmpeg_and_empties_the_cache(
    configured: FakeTvheadend, guide: Guide, svc: Any, tmp_path: Path, database_url: str
) -> None:
    rid, _ = await in_progress(svc, configured, guide)
    second = make_app(tmp_path / "data", database_url)
    async with second.test_app():
        other = second.extensions["tic"]
        client = await make_user(second, "watcher")
        await get_playlist(client, rid)
        job = hls_manager(other).jobs[rid]
        assert job.running and job.pid is not None
        pid, cache = job.pid, job.dir
    assert pid_gone(pid) and not cache.exists()
    assert not (tmp_path / "data" / "hls").exists()


async def test_stale_cache_from_a_crash_is_removed_at_start(tmp_path: Path, database_url: str) -> None:
    stale = tmp_path / "data" / "hls" / "7-deadbeef"
    stale.mkdir(parents=True)
    (stale / "seg_00000.ts").write_bytes(b"x")
    app = make_app(tmp_path / "data", database_url)
    async with app.test_app():
        assert not stale.exists()
