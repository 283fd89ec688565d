"""Recurring rules: validation, expansion against the guide, and applying them without duplicates."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import User
from backend.channels.models import Channel
from backend.db import Base, iso_z, utcnow
from backend.dvr.matching import match_titles
from backend.dvr.models import (
    ACTION_CANCEL,
    ACTIVE,
    CANCELLED,
    COMPLETED,
    RECORDING,
    SCHEDULED,
    Recording,
    RecordingRule,
)
from backend.dvr.service import (
    DvrDefaults,
    check_owner,
    dvr_scope,
    episode_identity,
    new_marker,
    normalise_title,
)
from backend.epg.models import Programme
from backend.errors import Invalid, NotFound
from backend.tasks.offload import SubprocessFailed, run_in_subprocess

log = logging.getLogger(__name__)

MATCH_MODES = ("contains", "regex")
#: Title matching moves to a child process above this many rule × title checks (and always for
#: regular expressions, whose run time a pattern can make unbounded), so the loop never stalls.
INLINE_MATCH_LIMIT = 20_000
MATCH_TIMEOUT = 60.0
#: Two airings with the same episode identity this close together are the same airing, moved.
SAME_EPISODE_WINDOW = timedelta(hours=12)
_IN_CHUNK = 500
#: Long loops hand the event loop back this often, so applying thousands of airings never stalls it.
YIELD_EVERY = 500
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class RuleNotFound(NotFound):
    code = "RULE_NOT_FOUND"


# -- validation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """A rule ready to match: validated, with its time zone and window parsed."""

    id: int | None
    owner_id: int | None
    pattern: str
    mode: str
    channel_ids: frozenset[int]
    weekdays: frozenset[int]
    time_from: time | None
    time_to: time | None
    tz: ZoneInfo
    new_episodes_only: bool
    padding_before: int | None
    padding_after: int | None

    def fits_window(self, start: datetime) -> bool:
        if not self.weekdays and self.time_from is None and self.time_to is None:
            return True
        local = start.astimezone(self.tz)
        if self.weekdays and local.weekday() not in self.weekdays:
            return False
        at = local.time().replace(second=0, microsecond=0, tzinfo=None)
        lo, hi = self.time_from, self.time_to
        if lo is not None and hi is not None:
            # [from, to); a window like 22:00-02:00 wraps past midnight.
            return lo <= at < hi if lo <= hi else (at >= lo or at < hi)
        if lo is not None:
            return at >= lo
        if hi is not None:
            return at < hi
        return True


def check_pattern(pattern: str, mode: str) -> None:
    if not pattern.strip():
        raise Invalid("The title pattern is empty", code="INVALID_PATTERN", fields={"title_pattern": "empty"})
    if mode not in MATCH_MODES:
        raise Invalid("match_mode must be contains or regex", fields={"match_mode": "contains or regex"})
    if mode == "regex":
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise Invalid(
                f"The title pattern is not a valid regular expression: {exc}",
                code="INVALID_REGEX",
                fields={"title_pattern": str(exc)},
            ) from exc


def _parse_hhmm(value: str | None, name: str) -> time | None:
    if value is None or value == "":
        return None
    m = _HHMM.match(value)
    if m is None:
        raise Invalid(f"{name} must be HH:MM (24-hour)", fields={name: "expected HH:MM"})
    return time(int(m.group(1)), int(m.group(2)))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"Unknown time zone {name!r}", fields={"timezone": "unknown time zone"}) from exc


def rule_spec(rule: RecordingRule) -> RuleSpec:
    check_pattern(rule.title_pattern, rule.match_mode)
    days = frozenset(int(d) for d in rule.weekdays or [])
    if any(d < 0 or d > 6 for d in days):
        raise Invalid("weekdays are 0 (Monday) to 6 (Sunday)", fields={"weekdays": "out of range"})
    return RuleSpec(
        id=rule.id,
        owner_id=rule.owner_id,
        pattern=rule.title_pattern,
        mode=rule.match_mode,
        channel_ids=frozenset(int(c) for c in rule.channel_ids or []),
        weekdays=days,
        time_from=_parse_hhmm(rule.time_from, "time_from"),
        time_to=_parse_hhmm(rule.time_to, "time_to"),
        tz=_zone(rule.timezone or "UTC"),
        new_episodes_only=rule.new_episodes_only,
        padding_before=rule.padding_before,
        padding_after=rule.padding_after,
    )


# -- CRUD ------------------------------------------------------------------------------------------

RULE_FIELDS = (
    "name",
    "enabled",
    "title_pattern",
    "match_mode",
    "channel_ids",
    "weekdays",
    "time_from",
    "time_to",
    "timezone",
    "new_episodes_only",
    "keep_last",
    "padding_before",
    "padding_after",
)


async def _check_channels(session: AsyncSession, channel_ids: Iterable[int]) -> None:
    wanted = set(channel_ids)
    if not wanted:
        return
    found = set((await session.execute(select(Channel.id).where(Channel.id.in_(wanted)))).scalars().all())
    missing = sorted(wanted - found)
    if missing:
        raise Invalid(
            f"No channel with id {', '.join(map(str, missing))}",
            code="CHANNEL_NOT_FOUND",
            fields={"channel_ids": "unknown channel"},
        )


async def create_rule(session: AsyncSession, user: User, values: dict[str, Any]) -> RecordingRule:
    dvr_scope(user)
    now = utcnow()
    rule = RecordingRule(owner_id=user.id, created_at=now, updated_at=now, channel_ids=[], weekdays=[])
    for key in RULE_FIELDS:
        if key in values and values[key] is not None:
            setattr(rule, key, values[key])
    if not rule.name:
        rule.name = rule.title_pattern
    rule.enabled = True if rule.enabled is None else rule.enabled
    rule.match_mode = rule.match_mode or "contains"
    rule.timezone = rule.timezone or "UTC"
    rule.new_episodes_only = bool(rule.new_episodes_only)
    rule_spec(rule)
    await _check_channels(session, rule.channel_ids)
    session.add(rule)
    await session.flush()
    return rule


#: Fields a PATCH may clear with null; for the others null means "leave as is".
NULLABLE_RULE_FIELDS = frozenset({"time_from", "time_to", "keep_last", "padding_before", "padding_after"})


async def update_rule(session: AsyncSession, rule: RecordingRule, values: dict[str, Any]) -> RecordingRule:
    for key in RULE_FIELDS:
        if key in values and (values[key] is not None or key in NULLABLE_RULE_FIELDS):
            setattr(rule, key, values[key])
    rule.timezone = rule.timezone or "UTC"
    rule_spec(rule)
    await _check_channels(session, rule.channel_ids or [])
    rule.updated_at = utcnow()
    return rule


async def get_rule(session: AsyncSession, user: User, rule_id: int) -> RecordingRule:
    rule = await session.get(RecordingRule, rule_id)
    if rule is None:
        raise RuleNotFound(f"No recording rule with id {rule_id}")
    try:
        check_owner(user, rule.owner_id)
    except NotFound as exc:
        raise RuleNotFound(f"No recording rule with id {rule_id}") from exc
    return rule


async def list_rules(
    session: AsyncSession, user: User, limit: int, offset: int
) -> tuple[list[tuple[RecordingRule, str | None]], int]:
    cond: Any = RecordingRule.id.is_not(None)
    if dvr_scope(user) == "own":
        cond = RecordingRule.owner_id == user.id
    total = (await session.execute(select(func.count()).select_from(RecordingRule).where(cond))).scalar_one()
    rows = await session.execute(
        select(RecordingRule, User.username)
        .outerjoin(User, User.id == RecordingRule.owner_id)
        .where(cond)
        .order_by(RecordingRule.name, RecordingRule.id)
        .limit(limit)
        .offset(offset)
    )
    return [(r, n) for r, n in rows.all()], int(total)


def rule_out(rule: RecordingRule, owner: str | None) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "enabled": rule.enabled,
        "title_pattern": rule.title_pattern,
        "match_mode": rule.match_mode,
        "channel_ids": list(rule.channel_ids or []),
        "weekdays": list(rule.weekdays or []),
        "time_from": rule.time_from,
        "time_to": rule.time_to,
        "timezone": rule.timezone,
        "new_episodes_only": rule.new_episodes_only,
        "keep_last": rule.keep_last,
        "padding_before": rule.padding_before,
        "padding_after": rule.padding_after,
        "owner_id": rule.owner_id,
        "owner": owner,
        "created_at": iso_z(rule.created_at),
        "updated_at": iso_z(rule.updated_at),
    }


# -- matching titles -------------------------------------------------------------------------------


#: Set in the worker process of apply_rules_in_child: it has no loop to protect and is itself
#: killed on timeout, so titles are matched in place there.
_IN_WORKER = False


async def _match(specs: list[RuleSpec], titles: list[str]) -> list[list[int]]:
    rules = [[s.pattern, s.mode] for s in specs]
    inline_ok = not any(s.mode == "regex" for s in specs) and len(specs) * len(titles) <= INLINE_MATCH_LIMIT
    if _IN_WORKER or inline_ok:
        return match_titles(rules, titles)
    try:
        result = await run_in_subprocess(
            "backend.dvr.matching:match_titles", rules, titles, timeout=MATCH_TIMEOUT
        )
    except TimeoutError as exc:
        raise Invalid(
            "Matching the rules' title patterns took too long: simplify the regular expressions",
            code="PATTERN_TOO_SLOW",
        ) from exc
    except SubprocessFailed:
        log.exception("Title matching in a child process failed")
        raise
    return [list(map(int, r)) for r in result]


# -- expansion -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Candidate:
    """One airing a rule wants recorded (times already shifted by the channel's guide offset)."""

    rule: RuleSpec
    programme_id: int
    channel: Channel
    title: str
    sub_title: str | None
    episode_key: str | None
    episode_label: str | None
    start: datetime
    stop: datetime
    # Plain copies of what grouping needs (ORM attribute access is slow in loops of thousands).
    channel_id: int = 0
    title_key: str = ""

    @property
    def group(self) -> tuple[int, str]:
        return self.channel_id, self.title_key


async def _guide_channels(
    session: AsyncSession,
) -> dict[tuple[int, str], list[tuple[Channel, int, timedelta]]]:
    rows = await session.execute(
        select(Channel).where(
            Channel.enabled.is_(True),
            Channel.tvh_uuid.is_not(None),
            Channel.epg_source_id.is_not(None),
            Channel.epg_channel_id.is_not(None),
        )
    )
    by_guide: dict[tuple[int, str], list[tuple[Channel, int, timedelta]]] = defaultdict(list)
    for ch in rows.scalars().all():
        assert ch.epg_source_id is not None and ch.epg_channel_id is not None
        by_guide[(ch.epg_source_id, ch.epg_channel_id)].append(
            (ch, ch.id, timedelta(minutes=ch.guide_offset_minutes))
        )
    return by_guide


async def expand(session: AsyncSession, specs: list[RuleSpec], lo: datetime, hi: datetime) -> list[Candidate]:
    """Upcoming airings (ending after `lo`, starting before `hi`) on published channels that rules match."""
    if not specs:
        return []
    by_guide = await _guide_channels(session)
    if not by_guide:
        return []
    slack = max(abs(off) for cs in by_guide.values() for _c, _id, off in cs)
    sources = {sid for sid, _ in by_guide}
    window = (
        Programme.source_id.in_(sources),
        Programme.stop > lo - slack,
        Programme.start < hi + slack,
    )
    titles = list((await session.execute(select(Programme.title).where(*window).distinct())).scalars().all())
    matches = await _match(specs, titles)
    rules_by_title: dict[str, list[RuleSpec]] = defaultdict(list)
    for spec, indices in zip(specs, matches, strict=True):
        for i in indices:
            rules_by_title[titles[i]].append(spec)
    wanted = list(rules_by_title)
    out: list[Candidate] = []
    for i in range(0, len(wanted), _IN_CHUNK):
        rows = await session.stream(
            select(
                Programme.id,
                Programme.source_id,
                Programme.xmltv_channel_id,
                Programme.start,
                Programme.stop,
                Programme.title,
                Programme.sub_title,
                Programme.episode_num,
                Programme.season,
                Programme.episode,
            ).where(*window, Programme.title.in_(wanted[i : i + _IN_CHUNK]))
        )
        # Streamed and converted a partition at a time, handing the loop back in between.
        async for part in rows.partitions(YIELD_EVERY):
            await asyncio.sleep(0)
            for pid, sid, xid, start, stop, title, sub, ep_num, season, episode in part:
                channels = by_guide.get((sid, xid))
                if not channels:
                    continue
                key, label = episode_identity(season, episode, ep_num, sub)
                title_key = normalise_title(title)
                for ch, ch_id, offset in channels:
                    s, e = start + offset, stop + offset
                    if e <= lo or s >= hi:
                        continue
                    for spec in rules_by_title[title]:
                        if spec.channel_ids and ch_id not in spec.channel_ids:
                            continue
                        if not spec.fits_window(s):
                            continue
                        out.append(Candidate(spec, pid, ch, title, sub, key, label, s, e, ch_id, title_key))
    await asyncio.sleep(0)
    out.sort(key=lambda c: (c.start, c.channel_id, c.rule.id or 0))
    return out


# -- matching airings to existing recordings ---------------------------------------------------------


@dataclass(slots=True)
class Known:
    """The columns of an existing recording that matching needs (plain rows: cheaper than ORM objects)."""

    id: int
    channel_id: int
    rule_id: int | None
    title: str
    episode_key: str | None
    start: datetime
    stop: datetime
    status: str
    tvh_uuid: str | None


_KNOWN_COLUMNS = (
    Recording.id,
    Recording.channel_id,
    Recording.rule_id,
    Recording.title,
    Recording.episode_key,
    Recording.start,
    Recording.stop,
    Recording.status,
    Recording.tvh_uuid,
)


def same_airing(rec: Known, cand: Candidate) -> bool:
    """Is `cand` the airing `rec` was made for, even if the guide moved it since?"""
    if rec.episode_key and cand.episode_key and rec.episode_key != cand.episode_key:
        return False
    if rec.start < cand.stop and cand.start < rec.stop:
        return True
    return bool(
        rec.episode_key
        and rec.episode_key == cand.episode_key
        and abs(rec.start - cand.start) <= SAME_EPISODE_WINDOW
    )


def pair_up(recs: list[Known], cands: list[Candidate]) -> dict[int, Known]:
    """One-to-one: each candidate (by index) gets at most one recording, closest start first."""
    pairs = sorted(
        (abs((r.start - c.start).total_seconds()), ri, ci)
        for ri, r in enumerate(recs)
        for ci, c in enumerate(cands)
        if same_airing(r, c)
    )
    used_r: set[int] = set()
    out: dict[int, Known] = {}
    for _diff, ri, ci in pairs:
        if ri in used_r or ci in out:
            continue
        used_r.add(ri)
        out[ci] = recs[ri]
    return out


async def _existing(session: AsyncSession, channel_ids: set[int], since: datetime) -> list[Known]:
    """Recordings (of any status, even cancelled: a cancelled airing must not come back) near the window."""
    out: list[Known] = []
    ids = sorted(channel_ids)
    for i in range(0, len(ids), _IN_CHUNK):
        rows = await session.stream(
            select(*_KNOWN_COLUMNS).where(
                Recording.channel_id.in_(ids[i : i + _IN_CHUNK]),
                Recording.deleted.is_(False),
                Recording.stop > since,
            )
        )
        async for part in rows.partitions(YIELD_EVERY):
            await asyncio.sleep(0)
            out.extend(Known(**row._mapping) for row in part)
    return out


async def _seen_episodes(session: AsyncSession) -> set[tuple[str, str]]:
    rows = await session.stream(
        select(Recording.title, Recording.episode_key).where(
            Recording.episode_key.is_not(None),
            Recording.deleted.is_(False),
            Recording.status.in_((SCHEDULED, RECORDING, COMPLETED)),
        )
    )
    seen: set[tuple[str, str]] = set()
    async for part in rows.partitions(YIELD_EVERY):
        await asyncio.sleep(0)
        seen.update((normalise_title(t), k) for t, k in part if k)
    return seen


@dataclass
class Plan:
    """What applying rules would do: per candidate, the existing recording or why it is skipped."""

    candidates: list[Candidate]
    matched: dict[int, Known] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    create: list[int] = field(default_factory=list)
    orphans: list[Known] = field(default_factory=list)


async def plan(session: AsyncSession, specs: list[RuleSpec], now: datetime, horizon: timedelta) -> Plan:
    cands = await expand(session, specs, now, now + horizon)
    # Two rules wanting the same airing make one recording; the older rule owns it.
    unique: dict[tuple[int, datetime, str], Candidate] = {}
    for n, c in enumerate(cands):
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        unique.setdefault((c.channel_id, c.start, c.title_key), c)
    cands = list(unique.values())
    result = Plan(cands)
    existing = await _existing(session, {c.channel_id for c in cands}, now - timedelta(days=1))
    recs_by_group: dict[tuple[int, str], list[Known]] = defaultdict(list)
    for n, r in enumerate(existing):
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        recs_by_group[(r.channel_id, normalise_title(r.title))].append(r)
    cands_by_group: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, c in enumerate(cands):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        cands_by_group[c.group].append(i)
    matched_ids: set[int] = set()
    for n, (group, idxs) in enumerate(cands_by_group.items()):
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        pairs = pair_up(recs_by_group.get(group, []), [cands[i] for i in idxs])
        for local, rec in pairs.items():
            result.matched[idxs[local]] = rec
            matched_ids.add(rec.id)
    seen = await _seen_episodes(session)
    for i, c in enumerate(cands):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        if i in result.matched:
            continue
        ident = (c.title_key, c.episode_key) if c.episode_key else None
        if c.rule.new_episodes_only and ident is not None and ident in seen:
            result.skipped[i] = "this episode was already recorded or is scheduled"
            continue
        if ident is not None:
            seen.add(ident)
        result.create.append(i)
    rule_ids = [s.id for s in specs if s.id is not None]
    if rule_ids:
        # The rules' future recordings that no airing matched (candidates or not, on any channel).
        rows = await session.stream(
            select(*_KNOWN_COLUMNS).where(
                Recording.rule_id.in_(rule_ids),
                Recording.status == SCHEDULED,
                Recording.pending_action.is_(None),
                Recording.deleted.is_(False),
                Recording.start > now,
                Recording.channel_id.is_not(None),
            )
        )
        async for part in rows.partitions(YIELD_EVERY):
            await asyncio.sleep(0)
            result.orphans.extend(Known(**r._mapping) for r in part if r.id not in matched_ids)
    return result


# -- applying --------------------------------------------------------------------------------------


@dataclass
class ApplyReport:
    rules: int = 0
    created: int = 0
    moved: int = 0
    dropped: int = 0
    pruned: int = 0
    pruned_ids: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.moved or self.dropped or self.pruned)

    def summary(self) -> str:
        return (
            f"{self.rules} rule(s): {self.created} recording(s) scheduled, {self.moved} moved with the guide, "
            f"{self.dropped} no longer in the guide, {self.pruned} old recording(s) removed (keep last N)"
        )


async def apply_rules(
    session: AsyncSession, defaults: DvrDefaults, horizon: timedelta, now: datetime | None = None
) -> ApplyReport:
    """Turn matching upcoming programmes into recordings; re-running it changes nothing."""
    now = now or utcnow()
    rules = list(
        (await session.execute(select(RecordingRule).where(RecordingRule.enabled.is_(True)))).scalars().all()
    )
    report = ApplyReport(rules=len(rules))
    specs = []
    for rule in rules:
        try:
            specs.append(rule_spec(rule))
        except Invalid as exc:
            log.warning("Skipping recording rule %s: %s", rule.id, exc.message)
    result = await plan(session, specs, now, horizon)
    moves = []
    for n, (i, rec) in enumerate(result.matched.items()):
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        c = result.candidates[i]
        if rec.rule_id is not None and rec.status == SCHEDULED and (rec.start, rec.stop) != (c.start, c.stop):
            log.debug("Recording %s moved with the guide: %s -> %s", rec.id, iso_z(rec.start), iso_z(c.start))
            moves.append(
                {
                    "b_id": rec.id,
                    "b_start": c.start,
                    "b_stop": c.stop,
                    "b_programme_id": c.programme_id,
                    "b_needs_update": rec.tvh_uuid is not None,
                }
            )
    new = []
    for n, i in enumerate(result.create):
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        new.append(_new_row(result.candidates[i], defaults, now))
    # Bulk statements in chunks: the ORM unit of work would spend seconds of loop time on thousands of rows.
    # Core statements, one executemany per chunk: the ORM's bulk paths spend seconds of loop time on
    # thousands of rows (and its bulk insert issues a statement per few rows).
    table = Base.metadata.tables[Recording.__tablename__]
    move = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            start=bindparam("b_start"),
            stop=bindparam("b_stop"),
            programme_id=bindparam("b_programme_id"),
            needs_update=bindparam("b_needs_update"),
            updated_at=now,
        )
    )
    for chunk in _chunks(moves):
        await session.execute(move, chunk)
        await asyncio.sleep(0)
    for chunk in _chunks(new):
        await session.execute(insert(table), chunk)
        await asyncio.sleep(0)
    report.moved, report.created = len(moves), len(new)
    if moves or new:
        log.info("Rules: %d recording(s) scheduled, %d moved with the guide", len(new), len(moves))
    gone = [o.id for o in result.orphans if await _guide_covers(session, o)]
    for i in range(0, len(gone), _IN_CHUNK):
        await session.execute(
            update(Recording)
            .where(Recording.id.in_(gone[i : i + _IN_CHUNK]), Recording.status == SCHEDULED)
            .values(
                status=CANCELLED,
                status_reason="No longer in the guide (or no longer matches its rule)",
                pending_action=ACTION_CANCEL,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    report.dropped = len(gone)
    report.pruned_ids = await _keep_last(session, rules, now)
    report.pruned = len(report.pruned_ids)
    return report


def _new_row(c: Candidate, defaults: DvrDefaults, now: datetime) -> dict[str, Any]:
    return {
        "marker": new_marker(),
        "channel_id": c.channel_id,
        "channel_name": c.channel.name,
        "programme_id": c.programme_id,
        "rule_id": c.rule.id,
        "owner_id": c.rule.owner_id,
        "title": c.title,
        "sub_title": c.sub_title,
        "episode_key": c.episode_key,
        "episode_label": c.episode_label,
        "start": c.start,
        "stop": c.stop,
        "padding_before": defaults.padding_before if c.rule.padding_before is None else c.rule.padding_before,
        "padding_after": defaults.padding_after if c.rule.padding_after is None else c.rule.padding_after,
        "status": SCHEDULED,
        "needs_update": False,
        "deleted": False,
        "created_at": now,
        "updated_at": now,
    }


def _chunks(rows: list[dict[str, Any]], size: int = 500) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


async def _guide_covers(session: AsyncSession, rec: Known) -> bool:
    """Does the guide have data for the recording's slot? Only then is a missing match a real change."""
    if rec.channel_id is None:
        return False
    ch = await session.get(Channel, rec.channel_id)
    if ch is None or ch.epg_source_id is None or ch.epg_channel_id is None:
        return False
    offset = timedelta(minutes=ch.guide_offset_minutes)
    found = await session.execute(
        select(Programme.id)
        .where(
            Programme.source_id == ch.epg_source_id,
            Programme.xmltv_channel_id == ch.epg_channel_id,
            Programme.start < rec.stop - offset,
            Programme.stop > rec.start - offset,
        )
        .limit(1)
    )
    return found.first() is not None


async def _keep_last(session: AsyncSession, rules: list[RecordingRule], now: datetime) -> list[int]:
    pruned: list[int] = []
    for rule in rules:
        if not rule.keep_last:
            continue
        rows = await session.execute(
            select(Recording)
            .where(Recording.rule_id == rule.id, Recording.status == COMPLETED, Recording.deleted.is_(False))
            .order_by(Recording.start.desc(), Recording.id.desc())
            .offset(rule.keep_last)
        )
        for rec in rows.scalars().all():
            rec.deleted = True
            rec.updated_at = now
            pruned.append(rec.id)
    return pruned


# -- preview ---------------------------------------------------------------------------------------


async def preview(
    session: AsyncSession, spec: RuleSpec, now: datetime, days: int = 7
) -> list[dict[str, Any]]:
    """What `spec` would record in the next `days` days, and why some airings would be skipped."""
    result = await plan(session, [spec], now, timedelta(days=days))
    items = []
    for i, c in enumerate(result.candidates):
        rec = result.matched.get(i)
        if rec is not None:
            verdict = "scheduled" if rec.status in ACTIVE else rec.status
            reason: str | None = f"already {verdict} (recording {rec.id})"
        else:
            reason = result.skipped.get(i)
        items.append(
            {
                "programme_id": c.programme_id,
                "channel_id": c.channel_id,
                "channel_name": c.channel.name,
                "title": c.title,
                "sub_title": c.sub_title,
                "episode": c.episode_label,
                "start": iso_z(c.start),
                "stop": iso_z(c.stop),
                "would_record": rec is None and i not in result.skipped,
                "recording_id": rec.id if rec is not None else None,
                "reason": reason,
            }
        )
    return items


def apply_rules_in_child(
    database_url: str, padding_before: int, padding_after: int, horizon_days: int
) -> dict[str, Any]:
    """apply_rules in a worker process (tasks.offload): building tens of thousands of airings is CPU work
    that would otherwise hold the app's event loop for seconds. Returns the ApplyReport as a dict."""
    global _IN_WORKER
    _IN_WORKER = True
    # Only the tables this touches (and their foreign-key targets): importing every domain would add
    # a second to each run. The apply job's test runs this path, so a missing mapper shows up there.
    import backend.auth.models
    import backend.channels.models
    import backend.epg.models  # noqa: F401
    from backend.db import Database

    async def run() -> dict[str, Any]:
        db = Database(database_url)
        try:
            async with db.transaction() as session:
                report = await apply_rules(
                    session,
                    DvrDefaults(padding_before=padding_before, padding_after=padding_after),
                    timedelta(days=horizon_days),
                )
        finally:
            await db.dispose()
        return {
            "rules": report.rules,
            "created": report.created,
            "moved": report.moved,
            "dropped": report.dropped,
            "pruned": report.pruned,
            "pruned_ids": report.pruned_ids,
        }

    return asyncio.run(run())
