"""Worker-process side of an EPG import: parse a guide into a private stage, then swap it in at once."""

# This module runs in a worker process with its own event loop, where blocking file calls stall
# nothing else; hence these rules are off here.
# ruff: noqa: ASYNC230, ASYNC240

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO, cast

from backend.epg import split
from backend.epg.parser import ParseStats, channel_from_json, channel_to_json, iter_xmltv
from backend.epg.rows import ChannelTally, Collected, RowMaker, batches, encode, iso
from backend.epg.stage import PostgresStage, SqliteStage, SwapResult, driver_url
from backend.errors import Invalid

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

#: Progress reports from the worker at most this often (seconds).
PROGRESS_INTERVAL = 0.5
#: How many of the parser's notes the import report keeps.
REPORT_NOTES = 20

# --- reading the input -----------------------------------------------------------------------------


class _CountingReader:
    """A file whose bytes read so far are known, so progress follows the (possibly compressed) input."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data

    def close(self) -> None:
        self._raw.close()


def _empty_guide_error(stats: ParseStats, keep_from: datetime, keep_until: datetime) -> Invalid:
    """Why a guide with nothing to show is refused (the guide in use is kept)."""
    if stats.programmes_seen == 0:
        what = (
            "no channels and no programmes"
            if stats.channels == 0
            else f"{stats.channels} channel(s) but no programmes"
        )
        return Invalid(
            f"The guide has {what}. The guide in use was kept; check the guide URL or the provider's feed.",
            code="XMLTV_EMPTY",
        )
    if stats.filtered and not stats.skipped and not stats.dropped_no_stop:
        return Invalid(
            f"All {stats.filtered} programmes in the guide are outside the days this source keeps "
            f"({iso(keep_from)} to {iso(keep_until)}). The guide in use was kept; the file may be out "
            "of date, or widen past_days / future_days.",
            code="XMLTV_NOTHING_IN_WINDOW",
        )
    reasons = [
        f"{count} {REASONS.get(reason, reason.replace('_', ' '))}"
        for reason, count in sorted(stats.skipped_reasons.items())
    ]
    if stats.dropped_no_stop:
        reasons.append(f"{stats.dropped_no_stop} without a stop time and no later programme to end them")
    if stats.filtered:
        reasons.append(f"{stats.filtered} outside the days kept")
    first = f" First problem at line {stats.errors[0][0]}: {stats.errors[0][1]}." if stats.errors else ""
    return Invalid(
        f"None of the {stats.programmes_seen} programmes in the guide could be used ({'; '.join(reasons)})."
        f"{first} The guide in use was kept.",
        code="XMLTV_NO_USABLE_PROGRAMMES",
    )


#: Plain words for the parser's reasons for leaving a programme out.
REASONS = {
    "bad_start": "with an unreadable start time",
    "missing_channel": "without a channel",
    "stop_not_after_start": "that stop at or before their start",
    "out_of_order": "without a stop, followed by an earlier programme",
}


# --- the entry point -------------------------------------------------------------------------------


def load_guide(
    src: str,
    database_url: str,
    source_id: int,
    options: dict[str, Any],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Parse the guide at `src` and replace the source's channels and programmes with it.

    Runs in a worker process (offload.run_in_subprocess). `options` holds preferred_lang,
    keep_from / keep_until (ISO-8601 with offset), work_dir (for SQLite's stage file),
    content_sha256 and report (merged into the source's last_import_report). Rows are staged
    privately while the guide is read; only a complete, usable guide is swapped into the live
    tables, in one transaction that also records the import on the source. Any failure before or
    during the swap leaves the guide in use exactly as it was. Returns the import report.
    """
    return asyncio.run(_load(src, database_url, source_id, options, progress))


async def _load(
    src: str, database_url: str, source_id: int, options: dict[str, Any], progress: Progress | None
) -> dict[str, Any]:
    started = time.monotonic()
    keep_from = datetime.fromisoformat(options["keep_from"])
    keep_until = datetime.fromisoformat(options["keep_until"])
    sqlite = database_url.startswith("sqlite")
    stage: SqliteStage | PostgresStage
    if sqlite:
        stage = SqliteStage(driver_url(database_url, "sqlite"), Path(options["work_dir"]) / "stage.db")
    else:
        stage = await PostgresStage.open(database_url)
    try:
        return await _run(
            stage,
            src,
            source_id,
            {**options, "database_url": database_url},
            progress,
            keep_from,
            keep_until,
            started,
        )
    finally:
        if isinstance(stage, PostgresStage):
            await stage.close()
        else:
            stage.close()


async def _run(
    stage: SqliteStage | PostgresStage,
    src: str,
    source_id: int,
    options: dict[str, Any],
    progress: Progress | None,
    keep_from: datetime,
    keep_until: datetime,
    started: float,
) -> dict[str, Any]:
    maker = RowMaker(isinstance(stage, SqliteStage))
    read = await _read_in_halves(stage, Path(src), options, progress, maker, keep_from, keep_until)
    if read is None:
        await stage.reset()
        read = await _read_whole(stage, Path(src), options, progress, maker, keep_from, keep_until)
    collected, stats = read
    parsed_at = time.monotonic()
    if collected.programmes == 0:
        raise _empty_guide_error(stats, keep_from, keep_until)
    had_rows = await stage.had_rows(source_id)
    await stage.finish(maker.channels(collected), index=had_rows)
    if progress is not None:
        progress(100.0, f"Saving {collected.programmes:,} programmes")
    report = _report(stats, collected, options)
    report["parse_seconds"] = round(parsed_at - started, 2)
    channel_count = report["channels"]
    swap_started = time.monotonic()

    def source_values(result: SwapResult) -> tuple[Any, ...]:
        report.update(
            inserted=result.inserted,
            deleted=result.deleted,
            unchanged=collected.programmes - result.inserted,
            swap_seconds=round(time.monotonic() - swap_started, 2),
        )
        return (
            channel_count,
            collected.programmes,
            options.get("content_sha256"),
            maker.time(datetime.now(UTC)),
            encode(report),
            source_id,
        )

    await stage.swap(source_id, source_values, had_rows)
    return report


Reader = _CountingReader | split.PartReader


async def _fill(
    stage: SqliteStage | PostgresStage,
    reader: Reader,
    total: int,
    options: dict[str, Any],
    progress: Progress | None,
    maker: RowMaker,
    keep_from: datetime,
    keep_until: datetime,
    still_wanted: Callable[[], bool] | None = None,
) -> tuple[Collected, ParseStats]:
    """Parse a stream into the stage in batches; returns what was collected besides rows."""
    collected = Collected()
    stats = ParseStats()
    records = iter_xmltv(
        cast(BinaryIO, reader),
        preferred_lang=options.get("preferred_lang"),
        keep_from=keep_from,
        keep_until=keep_until,
        stats=stats,
    )
    last_report = 0.0
    for batch in batches(records, maker, collected):
        await stage.add(batch)
        if still_wanted is not None and not still_wanted():
            raise SystemExit(1)
        now = time.monotonic()
        if progress is not None and now - last_report >= PROGRESS_INTERVAL:
            last_report = now
            progress(100.0 * reader.count / total, f"Read {collected.programmes:,} programmes")
    return collected, stats


async def _read_whole(
    stage: SqliteStage | PostgresStage,
    src: Path,
    options: dict[str, Any],
    progress: Progress | None,
    maker: RowMaker,
    keep_from: datetime,
    keep_until: datetime,
) -> tuple[Collected, ParseStats]:
    total = src.stat().st_size or 1
    with open(src, "rb") as raw:
        return await _fill(
            stage, _CountingReader(raw), total, options, progress, maker, keep_from, keep_until
        )


async def _read_in_halves(
    stage: SqliteStage | PostgresStage,
    src: Path,
    options: dict[str, Any],
    progress: Progress | None,
    maker: RowMaker,
    keep_from: datetime,
    keep_until: datetime,
) -> tuple[Collected, ParseStats] | None:
    """Read a big guide as two halves in two processes (two cores), or None to read it whole.

    The outcome must be exactly that of one reading, so any doubt means None: a half that fails
    to parse (the whole reading then reports the error, with the file's own line numbers), or a
    first half ending with programmes that wait for a stop time from the second.
    """
    work = Path(options["work_dir"])
    min_bytes = int(options.get("split_min_bytes") or split.SPLIT_MIN_BYTES)
    plain = src
    if split.is_compressed(src) and src.stat().st_size * 4 >= min_bytes:
        plain = split.decompress(src, work / "guide.xml")
    cut = split.plan(plain, min_bytes)
    if cut is None:
        return (
            None
            if plain == src
            else await _read_whole(stage, plain, options, progress, maker, keep_from, keep_until)
        )
    part_target = (
        str(work / "stage-part.db") if isinstance(stage, SqliteStage) else f"epg_stage_part_{os.getpid()}"
    )
    process, receiver = split.start_second_half(
        second_half_main, cut, options["database_url"], part_target, _half_options(options)
    )
    answer: dict[str, Any] = {}
    try:
        reader = split.first_half(cut)
        try:
            first = await _fill(stage, reader, cut.cut, options, progress, maker, keep_from, keep_until)
        except Invalid:
            log.info("The first half of the guide does not parse on its own; reading it whole")
            answer = {"error": "first half"}
        finally:
            reader.close()
        if "error" not in answer:
            try:
                answer = receiver.recv()
            except EOFError:
                answer = {"error": f"the second half's process ended without an answer ({process.exitcode})"}
            process.join()
    finally:
        if process.is_alive():
            process.kill()
            process.join()
    if "error" in answer or first[1].dropped_no_stop:
        log.info("Reading the guide whole: %s", answer.get("error") or "programmes wait for a stop")
        await stage.drop_part(part_target)
        return None
    await stage.merge(part_target)
    return _merge(first, answer["ok"])


def _half_options(options: dict[str, Any]) -> dict[str, Any]:
    return {key: options.get(key) for key in ("preferred_lang", "keep_from", "keep_until", "work_dir")}


def second_half_main(
    sender: Connection, parent: int, cut: split.Plan, database_url: str, target: str, options: dict[str, Any]
) -> None:
    """Entry point of the second half's process: stage its rows, send back what it collected."""
    try:
        answer: dict[str, Any] = {"ok": asyncio.run(_second_half(parent, cut, database_url, target, options))}
    except Invalid as exc:
        answer = {"error": f"{exc.code}: {exc.message}"}
    except Exception as exc:  # reported to the first half, which then reads the guide whole
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    sender.send(answer)
    sender.close()


async def _second_half(
    parent: int, cut: split.Plan, database_url: str, target: str, options: dict[str, Any]
) -> dict[str, Any]:
    sqlite = database_url.startswith("sqlite")
    stage: SqliteStage | PostgresStage
    if sqlite:
        stage = SqliteStage(driver_url(database_url, "sqlite"), Path(target))
    else:
        stage = await PostgresStage.open(database_url, part_table=target)
    reader = split.second_half(cut)
    try:
        collected, stats = await _fill(
            stage,
            reader,
            cut.size - cut.cut,
            options,
            None,
            RowMaker(sqlite),
            datetime.fromisoformat(options["keep_from"]),
            datetime.fromisoformat(options["keep_until"]),
            # Stop if the first half's process is gone (cancelled or killed).
            still_wanted=lambda: os.getppid() == parent,
        )
        if isinstance(stage, SqliteStage):
            await stage.finish([], index=False)
    finally:
        reader.close()
        if isinstance(stage, PostgresStage):
            await stage.close()
        else:
            stage.close()
    return {
        "channels": [channel_to_json(c) for c in collected.channels.values()],
        "tallies": {
            cid: [t.count, _iso_or_none(t.first_start), _iso_or_none(t.last_stop)]
            for cid, t in collected.tallies.items()
        },
        "programmes": collected.programmes,
        "longest": collected.longest.total_seconds(),
        "stats": stats.as_dict(),
    }


def _iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _merge(first: tuple[Collected, ParseStats], second: dict[str, Any]) -> tuple[Collected, ParseStats]:
    """Combine the halves as one reading of the file would have seen them."""
    collected, stats = first
    for row in second["channels"]:
        channel = channel_from_json(row)
        if channel.id in collected.channels:
            stats.channels_skipped += 1
            stats.note(channel.line_no, f"channel without an id or with a repeated id {channel.id!r}")
        else:
            collected.channels[channel.id] = channel
            stats.channels += 1
    for cid, (count, first_start, last_stop) in second["tallies"].items():
        tally = collected.tallies.setdefault(cid, ChannelTally())
        tally.count += count
        for moment, earliest in ((first_start, True), (last_stop, False)):
            if moment is None:
                continue
            value = datetime.fromisoformat(moment)
            if earliest and (tally.first_start is None or value < tally.first_start):
                tally.first_start = value
            if not earliest and (tally.last_stop is None or value > tally.last_stop):
                tally.last_stop = value
    collected.programmes += second["programmes"]
    collected.halves = 2
    collected.longest = max(collected.longest, timedelta(seconds=second["longest"]))
    other = second["stats"]
    for name in ("programmes_seen", "programmes", "skipped", "filtered", "dropped_no_stop"):
        setattr(stats, name, getattr(stats, name) + other[name])
    stats.channels_skipped += other["channels_skipped"]
    for reason, count in other["skipped_reasons"].items():
        stats.skipped_reasons[reason] = stats.skipped_reasons.get(reason, 0) + count
    for line, message in other["errors"]:
        stats.note(line, message)
    return collected, stats


def _report(stats: ParseStats, collected: Collected, options: dict[str, Any]) -> dict[str, Any]:
    unknown = [cid for cid in collected.tallies if cid not in collected.channels]
    report: dict[str, Any] = dict(options.get("report") or {})
    report.update(
        channels=len(collected.channels) + len(unknown),
        declared_channels=len(collected.channels),
        programmes=collected.programmes,
        programmes_seen=stats.programmes_seen,
        skipped=stats.skipped,
        skipped_reasons=dict(stats.skipped_reasons),
        filtered=stats.filtered,
        dropped_no_stop=stats.dropped_no_stop,
        channels_skipped=stats.channels_skipped,
        unknown_channels=len(unknown),
        unknown_channel_ids=unknown[:10],
        unknown_channel_programmes=sum(collected.tallies[cid].count for cid in unknown),
        max_programme_seconds=int(collected.longest.total_seconds()),
        halves=collected.halves,
        notes=[[line, message] for line, message in stats.errors[:REPORT_NOTES]],
    )
    return report
