"""Programme and channel rows as an import stages them: the columns, extras, digests and batches."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.epg.parser import XmltvChannel, XmltvProgramme

#: Rows handed to the stage per statement; big enough to amortise the call, small enough to stay flat.
BATCH_ROWS = 5000

PROGRAMME_COLUMNS = (
    "xmltv_channel_id",
    "start",
    "stop",
    "title",
    "sub_title",
    "description",
    "categories",
    "episode_num",
    "season",
    "episode",
    "icon",
    "extra",
    "content_hash",
)
CHANNEL_COLUMNS = (
    "xmltv_id",
    "display_names",
    "icon",
    "url",
    "number",
    "programme_count",
    "first_start",
    "last_stop",
)


def _make_encoder() -> Callable[[Any], str]:
    """A compact UTF-8 JSON encoder made once: json.dumps builds a new C encoder on every call, which
    costs more than encoding the few small values of a programme row."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    encoder = make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


encode = _make_encoder()


# --- rows ------------------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat().removesuffix("+00:00") + "Z"


def programme_extra(p: XmltvProgramme) -> dict[str, Any] | None:
    """What a programme row keeps beyond its columns, under the parser's field names; None when empty.

    Language variants are kept only when there are several (the chosen one is in the column),
    flags only when set, so a plain programme stores nothing here.
    """
    extra: dict[str, Any] = {}
    if len(p.titles) > 1:
        extra["titles"] = p.titles
    if len(p.sub_titles) > 1:
        extra["sub_titles"] = p.sub_titles
    if len(p.descs) > 1:
        extra["descs"] = p.descs
    if p.credits:
        extra["credits"] = p.credits
    if p.actor_roles:
        extra["actor_roles"] = p.actor_roles
    if p.episode_systems:
        extra["episode_systems"] = p.episode_systems
    if p.part is not None:
        extra["part"] = p.part
    if p.ratings:
        extra["rating"] = p.rating
        if p.rating_system:
            extra["rating_system"] = p.rating_system
        extra["ratings"] = p.ratings
    if p.star_rating:
        extra["star_rating"] = p.star_rating
    if p.previously_shown:
        extra["previously_shown"] = True
        if p.previously_shown_start is not None:
            extra["previously_shown_start"] = iso(p.previously_shown_start)
    if p.new:
        extra["new"] = True
    if p.premiere:
        extra["premiere"] = True
    if p.live:
        extra["live"] = True
    if p.date:
        extra["date"] = p.date
    if p.length_seconds is not None:
        extra["length_seconds"] = p.length_seconds
    if p.country:
        extra["country"] = p.country
    if p.keywords:
        extra["keywords"] = p.keywords
    return extra or None


def _digest(text: str) -> int:
    """A signed 64-bit digest (it fits a BIGINT on every database)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass
class ChannelTally:
    count: int = 0
    first_start: datetime | None = None
    last_stop: datetime | None = None


@dataclass
class Collected:
    """What the stream produced besides rows: declared channels and per-channel programme tallies."""

    channels: dict[str, XmltvChannel] = field(default_factory=dict)
    tallies: dict[str, ChannelTally] = field(default_factory=dict)
    programmes: int = 0
    #: The longest programme, which bounds how far back a guide query must look.
    longest: timedelta = timedelta(0)
    #: 2 when the guide was read as two halves by two processes.
    halves: int = 1


class RowMaker:
    """Turns parsed programmes into stage rows, with times in the form the target database stores."""

    def __init__(self, sqlite: bool) -> None:
        self._sqlite = sqlite
        self._texts: dict[datetime, str] = {}

    def text(self, moment: datetime) -> str:
        """The instant as SQLAlchemy stores it in SQLite: naive UTC text with microseconds.

        The stage must match it byte for byte, because SQLite compares these columns as text. A
        guide repeats a few thousand instants, so they are formatted once (in a bounded cache).
        """
        text = self._texts.get(moment)
        if text is None:
            if len(self._texts) > 20_000:
                self._texts.clear()
            text = self._texts[moment] = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return text

    def time(self, moment: datetime | None) -> Any:
        """A time as the target database takes it: text for SQLite, the aware datetime for PostgreSQL."""
        if moment is None or not self._sqlite:
            return moment
        return self.text(moment)

    def programme(self, p: XmltvProgramme) -> tuple[Any, ...]:
        categories = encode(p.categories) if p.categories else None
        extra_dict = programme_extra(p)
        extra = encode(extra_dict) if extra_dict is not None else None
        start_text, stop_text = self.text(p.start), self.text(p.stop)
        digest = _digest(
            "\x1f".join(
                (
                    p.channel_id,
                    start_text,
                    stop_text,
                    p.title,
                    p.sub_title or "",
                    p.desc or "",
                    categories or "",
                    p.episode_num or "",
                    str(p.season),
                    str(p.episode),
                    p.icon or "",
                    extra or "",
                )
            )
        )
        return (
            p.channel_id,
            start_text if self._sqlite else p.start,
            stop_text if self._sqlite else p.stop,
            p.title,
            p.sub_title,
            p.desc,
            categories,
            p.episode_num,
            p.season,
            p.episode,
            p.icon,
            extra,
            digest,
        )

    def channels(self, collected: Collected) -> list[tuple[Any, ...]]:
        """One row per channel: the declared ones, then ids that only programmes mention."""
        rows = []
        for channel_id, channel in collected.channels.items():
            tally = collected.tallies.get(channel_id, ChannelTally())
            rows.append(self._channel_row(channel_id, channel, tally))
        for channel_id, tally in collected.tallies.items():
            if channel_id not in collected.channels:
                rows.append(self._channel_row(channel_id, None, tally))
        return rows

    def _channel_row(
        self, channel_id: str, channel: XmltvChannel | None, tally: ChannelTally
    ) -> tuple[Any, ...]:
        names = [list(pair) for pair in channel.display_names] if channel is not None else []
        return (
            channel_id,
            encode(names),
            channel.icon if channel is not None else None,
            channel.urls[0] if channel is not None and channel.urls else None,
            channel.number if channel is not None else None,
            tally.count,
            self.time(tally.first_start),
            self.time(tally.last_stop),
        )


def batches(
    records: Iterator[XmltvChannel | XmltvProgramme], maker: RowMaker, collected: Collected
) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    tallies = collected.tallies
    for record in records:
        if type(record) is XmltvProgramme:
            tally = tallies.get(record.channel_id)
            if tally is None:
                tally = tallies[record.channel_id] = ChannelTally()
            tally.count += 1
            if tally.first_start is None or record.start < tally.first_start:
                tally.first_start = record.start
            if tally.last_stop is None or record.stop > tally.last_stop:
                tally.last_stop = record.stop
            if record.stop - record.start > collected.longest:
                collected.longest = record.stop - record.start
            batch.append(maker.programme(record))
            if len(batch) >= BATCH_ROWS:
                collected.programmes += len(batch)
                yield batch
                batch = []
        elif isinstance(record, XmltvChannel):
            collected.channels[record.id] = record
    if batch:
        collected.programmes += len(batch)
        yield batch
