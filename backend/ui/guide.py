"""The TV guide page: a channels × time grid paged by rows, programme details, title search, record buttons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, g, render_template, request
from quart_schema import hide

from backend.auth.guard import user_required
from backend.auth.models import ADMIN
from backend.db import iso_z, utcnow
from backend.edge import services
from backend.errors import Invalid, NotFound
from backend.ui import guide_data
from backend.ui.routes import has_route
from backend.web.pages import _ctx

bp = Blueprint("guide", __name__)

WINDOW_HOURS = (2, 3, 6, 12, 24)
DEFAULT_HOURS = 6
#: Channel rows rendered per request; further rows load as the user scrolls (or presses "more").
ROWS_PER_PAGE = 40
#: How far the guide lets you travel, matching what guides usually hold.
PAST_LIMIT = timedelta(days=7)
FUTURE_LIMIT = timedelta(days=21)


def _floor_half_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0 if moment.minute < 30 else 30, second=0, microsecond=0)


def _parse_start(raw: str | None, now: datetime) -> datetime:
    if not raw or raw == "now":
        return _floor_half_hour(now)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(
            "start must be an ISO-8601 time such as 2026-01-31T18:00:00Z", fields={"start": "not a time"}
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if not now - PAST_LIMIT <= moment <= now + FUTURE_LIMIT:
        raise Invalid("start is too far from today for the guide", fields={"start": "out of range"})
    return moment.replace(second=0, microsecond=0)


def _int_arg(name: str, default: int | None) -> int | None:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise Invalid(f"{name} must be a whole number", fields={name: "not a number"}) from exc


class GuideQuery:
    """The guide's view state from the query string: window start, hours, tag filter, row offset."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.start = _parse_start(request.args.get("start"), now)
        hours = _int_arg("hours", DEFAULT_HOURS) or DEFAULT_HOURS
        self.hours = hours if hours in WINDOW_HOURS else DEFAULT_HOURS
        self.end = self.start + timedelta(hours=self.hours)
        self.tag = _int_arg("tag", None)
        self.offset = max(_int_arg("offset", 0) or 0, 0)

    def url(self, path: str = "/guide", **changes: Any) -> str:
        params: dict[str, Any] = {"start": iso_z(self.start), "hours": self.hours}
        if self.tag is not None:
            params["tag"] = self.tag
        params.update(changes)
        clean = {k: v for k, v in params.items() if v is not None and v != ""}
        return f"{path}?{urlencode(clean)}"

    def ticks(self) -> list[tuple[str, float]]:
        """Time labels along the header: every half hour for short windows, else every hour or two."""
        step = timedelta(minutes=30) if self.hours <= 3 else timedelta(hours=1 if self.hours <= 12 else 2)
        span = (self.end - self.start).total_seconds()
        first = _floor_half_hour(self.start)
        if first < self.start:
            first += timedelta(minutes=30)
        out = []
        moment = first
        while moment < self.end:
            out.append((iso_z(moment) or "", round(100 * (moment - self.start).total_seconds() / span, 3)))
            moment += step
        return out

    def now_fraction(self) -> float | None:
        if self.start <= self.now < self.end:
            return (self.now - self.start).total_seconds() / (self.end - self.start).total_seconds()
        return None


def _can_record(user: Any) -> dict[str, bool]:
    allowed = user.role == ADMIN or getattr(user, "dvr_access", "none") != "none"
    return {
        "record": allowed and has_route("/tic-api/recordings", "POST"),
        "series": allowed and has_route("/tic-api/recording-rules", "POST"),
        "dvr_installed": has_route("/tic-api/recordings", "POST"),
        "allowed": allowed,
    }


async def _rows_context(q: GuideQuery) -> dict[str, Any]:
    async with services().db.session() as session:
        rows = await guide_data.rows(
            session, start=q.start, end=q.end, now=q.now, tag_id=q.tag, limit=ROWS_PER_PAGE, offset=q.offset
        )
        total = await guide_data.count_channels(session, q.tag)
    next_offset = q.offset + ROWS_PER_PAGE
    return {
        "rows": rows,
        "total": total,
        "more_url": q.url("/guide/rows", offset=next_offset) if next_offset < total else None,
        "shown_to": min(next_offset, total),
    }


@bp.get("/guide")
@user_required
@hide
async def guide_page() -> Any:
    q = GuideQuery(utcnow())
    async with services().db.session() as session:
        tags = await guide_data.tags(session)
    rows = await _rows_context(q)
    return await render_template(
        "ui/guide.html",
        **_ctx(
            q=q,
            tags=tags,
            window_hours=WINDOW_HOURS,
            search=request.args.get("q", ""),
            can=_can_record(g.user),
            **rows,
        ),
    )


@bp.get("/guide/rows")
@user_required
@hide
async def guide_rows() -> Any:
    q = GuideQuery(utcnow())
    return await render_template("ui/guide_rows.html", **_ctx(q=q, **(await _rows_context(q))))


@bp.get("/guide/programme/<int:programme_id>")
@user_required
@hide
async def guide_programme(programme_id: int) -> Any:
    channel_id = _int_arg("channel", None)
    async with services().db.session() as session:
        prog = await guide_data.programme(session, programme_id, channel_id)
    if prog is None:
        raise NotFound("That programme is no longer in the guide", code="PROGRAMME_NOT_FOUND")
    now = utcnow()
    return await render_template(
        "ui/guide_programme.html",
        **_ctx(
            p=prog, can=_can_record(g.user), is_over=prog["stop_dt"] <= now, on_now=prog["start_dt"] <= now
        ),
    )


@bp.get("/guide/search")
@user_required
@hide
async def guide_search() -> Any:
    text = request.args.get("q", "").strip()
    results: list[dict[str, Any]] = []
    if len(text) >= 2:
        async with services().db.session() as session:
            results = await guide_data.search(session, text[:200], utcnow(), _int_arg("tag", None))
    return await render_template("ui/guide_search.html", **_ctx(results=results, text=text))
