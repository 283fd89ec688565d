"""The /dvr page: upcoming, recording now (live), completed with a player, failed, and the rules editor."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, render_template
from quart_schema import hide
from sqlalchemy import select

from backend.auth import service as auth_service
from backend.auth.guard import user_required
from backend.auth.models import User
from backend.channels.models import Channel
from backend.dvr import rules as rules_service
from backend.dvr import service
from backend.dvr.models import CANCELLED, COMPLETED, FAILED, MISSED, RECORDING, SCHEDULED
from backend.dvr.state import dvr_state
from backend.edge import services

bp = Blueprint("dvr_pages", __name__)

#: How many finished recordings the page lists per section (the API pages through all of them).
SECTION_LIMIT = 200
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


async def _sections(user: User) -> dict[str, Any]:
    svc = services()
    async with svc.db.session() as session:
        out: dict[str, Any] = {}
        for name, statuses in (
            ("recording", [RECORDING]),
            ("upcoming", [SCHEDULED]),
            ("completed", [COMPLETED]),
            ("failed", [FAILED, MISSED, CANCELLED]),
        ):
            rows, total = await service.list_recordings(
                session,
                user,
                statuses=statuses,
                limit=SECTION_LIMIT,
                newest_first=name in ("completed", "failed"),
            )
            items = [service.recording_out(r, owner) for r, owner in rows]
            out[name] = {"items": items, "total": total}
    return out


@bp.get("/dvr")
@user_required
@hide
async def dvr_page() -> Any:
    svc = services()
    user: User = g.user
    service.dvr_scope(user)
    sections = await _sections(user)
    async with svc.db.session() as session:
        channels = (
            await session.execute(
                select(Channel.id, Channel.number, Channel.name)
                .where(Channel.tvh_uuid.is_not(None), Channel.enabled.is_(True))
                .order_by(Channel.number)
            )
        ).all()
        rule_rows, _total = await rules_service.list_rules(session, user, limit=1000, offset=0)
    rules = [rules_service.rule_out(r, owner) for r, owner in rule_rows]
    return await render_template(
        "dvr/index.html",
        user=user,
        csrf_token=g.get("csrf_token"),
        sections=sections,
        channels=[{"id": c.id, "number": c.number, "name": c.name} for c in channels],
        channel_names={c.id: c.name for c in channels},
        rules=rules,
        weekdays=WEEKDAYS,
        version=dvr_state(svc).changes.version,
        stream_key=auth_service.reveal_stream_key(svc.keyring, user),
    )


@bp.get("/dvr/partial")
@user_required
@hide
async def dvr_partial() -> Any:
    """The recordings sections alone, re-fetched by the page whenever the long poll reports a change."""
    user: User = g.user
    service.dvr_scope(user)
    return await render_template(
        "dvr/_recordings.html",
        sections=await _sections(user),
        version=dvr_state(services()).changes.version,
    )
