"""The /channels pages: the lineup table with bulk actions, the edit form, adding streams, guide matching."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from quart import Blueprint, Response, flash, render_template, request
from quart_schema import hide
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend.channels import picker, service, shape
from backend.channels.schemas import ChannelCreateIn, ChannelPatchIn, SourceIn
from backend.edge import services
from backend.epg.models import EpgSource
from backend.errors import AppError, Invalid
from backend.playlists.models import PlaylistSource
from backend.settings import service as settings_service
from backend.web.pages import _ctx, redirect

bp = Blueprint("channels_pages", __name__)

PAGE_SIZES = (50, 100, 250, 500)


def _html(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def _int(raw: str | None, default: int, low: int = 0, high: int = 10**9) -> int:
    try:
        return min(max(int(raw or default), low), high)
    except ValueError:
        return default


def _flag(raw: str | None) -> bool | None:
    return {"yes": True, "no": False}.get(raw or "")


class ListQuery:
    """The table's filters, sort and page from the query string (every link keeps the rest)."""

    def __init__(self) -> None:
        args = request.args
        self.q = args.get("q", "").strip()
        self.tag = args.get("tag", "")
        self.enabled = args.get("enabled", "")
        self.unmapped = args.get("unmapped", "")
        self.problems = args.get("problems", "")
        self.sort = args.get("sort", "number") if args.get("sort") in service.SORTS else "number"
        limit = _int(args.get("limit"), 100)
        self.limit = limit if limit in PAGE_SIZES else 100
        self.offset = _int(args.get("offset"), 0)

    def filters(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "tag": self.tag or None,
            "enabled": _flag(self.enabled),
            "unmapped": _flag(self.unmapped),
            "problems": self.problems == "yes" or None,
        }

    def url(self, **changes: Any) -> str:
        params = {
            "q": self.q,
            "tag": self.tag,
            "enabled": self.enabled,
            "unmapped": self.unmapped,
            "problems": self.problems,
            "sort": self.sort,
            "limit": self.limit,
            "offset": self.offset,
        }
        params.update(changes)
        clean = {k: v for k, v in params.items() if v not in (None, "") and not (k == "offset" and v == 0)}
        return "/channels" + ("?" + urlencode(clean) if clean else "")


@bp.get("/channels")
@hide
async def channels_page() -> Any:
    query = ListQuery()
    async with services().db.session() as session:
        channels, total = await service.list_channels(
            session, query.filters(), limit=query.limit, offset=query.offset, sort=query.sort
        )
        items = await shape.channels_out(session, channels)
        tags = await picker.tags(session)
        lineup_size = len(await service.channel_numbers(session)) if total == 0 else total
    return await render_template(
        "channels/index.html",
        **_ctx(
            items=items, total=total, query=query, tags=tags, page_sizes=PAGE_SIZES, lineup_size=lineup_size
        ),
    )


async def _form_context(session: Any) -> dict[str, Any]:
    guides = [
        {"id": i, "name": n}
        for i, n in await session.execute(select(EpgSource.id, EpgSource.name).order_by(EpgSource.name))
    ]
    return {"guides": guides, "tags": await picker.tags(session)}


def _sources_from_form(form: Any) -> list[dict[str, Any]]:
    """Source rows as the form posts them: ref "stream:ID", "url:URL" or "id:ID", and an enabled flag."""
    refs = form.getlist("source_ref")
    labels = form.getlist("source_label")
    enabled = form.getlist("source_enabled")
    rows = []
    for index, ref in enumerate(refs):
        kind, _sep, value = ref.partition(":")
        rows.append(
            {
                "kind": kind,
                "value": value,
                "label": labels[index] if index < len(labels) else value,
                "enabled": (enabled[index] if index < len(enabled) else "yes") == "yes",
            }
        )
    extra = form.get("new_url", "").strip()
    if extra:
        rows.append({"kind": "url", "value": extra, "label": extra, "enabled": True})
    return rows


def _source_models(rows: list[dict[str, Any]]) -> list[SourceIn]:
    out = []
    for index, row in enumerate(rows):
        if row["kind"] == "url":
            out.append(SourceIn(url=row["value"], enabled=row["enabled"]))
            continue
        try:
            number = int(row["value"])
        except ValueError:
            raise Invalid("A source is not valid", fields={f"sources.{index}": "invalid source"}) from None
        if row["kind"] == "stream":
            out.append(SourceIn(stream_id=number, enabled=row["enabled"]))
        else:
            out.append(SourceIn(id=number, enabled=row["enabled"]))
    return out


def _values_from_form(form: Any) -> dict[str, Any]:
    """What the admin typed, kept as text so a failed save shows it again unchanged."""
    return {
        "name": form.get("name", ""),
        "number": form.get("number", "").strip(),
        "enabled": form.get("enabled") == "true",
        "tags": form.get("tags", ""),
        "logo_url": form.get("logo_url", "").strip(),
        "epg_id": form.get("epg_id", ""),
        "epg_channel_id": form.get("epg_channel_id", "").strip(),
        "guide_offset_minutes": form.get("guide_offset_minutes", "0").strip(),
        "sources": _sources_from_form(form),
        "shift": form.get("shift") == "yes",
    }


def _parsed(values: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    number = offset = epg_id = None
    try:
        number = int(values["number"]) if values["number"] else None
    except ValueError:
        errors["number"] = "a whole number, please"
    try:
        offset = int(values["guide_offset_minutes"] or 0)
    except ValueError:
        errors["guide_offset_minutes"] = "a whole number of minutes"
    try:
        epg_id = int(values["epg_id"]) if values["epg_id"] else None
    except ValueError:
        errors["epg_id"] = "pick a guide"
    if offset is not None and not -1440 <= offset <= 1440:
        errors["guide_offset_minutes"] = "between -1440 and 1440 minutes"
    if number is not None and not 1 <= number <= 999_999:
        errors["number"] = "between 1 and 999999"
    if errors:
        raise Invalid("Some fields need fixing", fields=errors)
    return {
        "name": values["name"],
        "number": number,
        "enabled": values["enabled"],
        "tags": [t for t in (p.strip() for p in values["tags"].split(",")) if t],
        "logo_url": values["logo_url"] or None,
        "epg_id": epg_id,
        "epg_channel_id": values["epg_channel_id"] or None,
        "guide_offset_minutes": offset,
        "sources": _source_models(values["sources"]),
    }


async def _render_form(
    values: dict[str, Any], channel: dict[str, Any] | None, errors: dict[str, str], status: int = 200
) -> Response:
    async with services().db.session() as session:
        extra = await _form_context(session)
    body = await render_template(
        "channels/edit.html", **_ctx(values=values, channel=channel, errors=errors, **extra)
    )
    return _html(body, status)


def _values_from_channel(channel: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": channel["name"],
        "number": str(channel["number"]),
        "enabled": channel["enabled"],
        "tags": ", ".join(channel["tags"]),
        "logo_url": channel["logo_url"] or "",
        "epg_id": str(channel["epg_id"] or ""),
        "epg_channel_id": channel["epg_channel_id"] or "",
        "guide_offset_minutes": str(channel["guide_offset_minutes"]),
        "sources": [
            {
                # Live streams and URLs by what they are (the search can then spot duplicates); a
                # source whose stream is gone by its row id, the only way to keep it.
                "kind": "id" if s["missing"] else s["kind"],
                "value": str(
                    s["id"] if s["missing"] else (s["stream_id"] if s["kind"] == "stream" else s["url"])
                ),
                "label": (s["name"] or s["url"] or "")
                + (f" ({s['playlist_name']})" if s["playlist_name"] else ""),
                "enabled": s["enabled"],
                "missing": s["missing"],
            }
            for s in channel["sources"]
        ],
        "shift": False,
    }


async def _load(channel_id: int) -> dict[str, Any]:
    async with services().db.session() as session:
        channel = await service.get_channel(session, channel_id)
        return (await shape.channels_out(session, [channel]))[0]


@bp.get("/channels/new")
@hide
async def new_channel_page() -> Any:
    values = {
        "name": "",
        "number": "",
        "enabled": True,
        "tags": "",
        "logo_url": "",
        "epg_id": "",
        "epg_channel_id": "",
        "guide_offset_minutes": "0",
        "sources": [],
        "shift": False,
    }
    return await _render_form(values, None, {})


@bp.get("/channels/<int:channel_id>")
@hide
async def edit_channel_page(channel_id: int) -> Any:
    channel = await _load(channel_id)
    return await _render_form(_values_from_channel(channel), channel, {})


async def _save(channel_id: int | None) -> Any:
    form = await request.form
    values = _values_from_form(form)
    channel = await _load(channel_id) if channel_id is not None else None
    try:
        fields = _parsed(values)
        async with services().db.transaction() as session:
            if channel_id is None:
                channel_id = await service.create_channel(
                    session, ChannelCreateIn(**fields), shift=values["shift"]
                )
            else:
                if fields["number"] is None:
                    del fields["number"]  # a blank number on an existing channel keeps its number
                await service.update_channel(
                    session, channel_id, ChannelPatchIn(**fields), shift=values["shift"]
                )
    except ValidationError as exc:
        errors = {".".join(str(p) for p in e["loc"]) or "_": str(e["msg"]) for e in exc.errors()}
        errors["_"] = "Some fields need fixing"
        return await _render_form(values, channel, errors, 400)
    except AppError as exc:
        errors = dict(exc.fields or {"_": exc.message})
        errors.setdefault("_", exc.message)
        return await _render_form(values, channel, errors, exc.status if exc.status < 500 else 400)
    except IntegrityError:
        return await _render_form(
            values, channel, {"_": "That number was taken meanwhile; try again", "number": "taken"}, 409
        )
    await service.lineup_changed(services().broker, logos=True)
    await flash(f"Channel “{values['name'].strip()}” saved.", "success")
    return redirect(f"/channels/{channel_id}")


@bp.post("/channels/new")
@hide
async def create_channel_submit() -> Any:
    return await _save(None)


@bp.post("/channels/<int:channel_id>")
@hide
async def update_channel_submit(channel_id: int) -> Any:
    return await _save(channel_id)


@bp.post("/channels/<int:channel_id>/delete")
@hide
async def delete_channel_submit(channel_id: int) -> Any:
    async with services().db.transaction() as session:
        deleted = await service.delete_channels(session, [channel_id])
        await service.delete_unused_tags(session)
    if deleted:
        await service.lineup_changed(services().broker)
        await flash("Channel deleted.", "success")
    else:
        await flash("That channel no longer exists.", "error")
    return redirect("/channels")


@bp.get("/channels/add")
@hide
async def add_channels_page() -> Any:
    playlist_id = _int(request.args.get("playlist_id"), 0) or None
    group = request.args.get("group")
    q = request.args.get("q", "")
    offset = _int(request.args.get("offset"), 0)
    not_in_lineup = request.args.get("not_in_lineup") == "yes"
    async with services().db.session() as session:
        playlists: list[dict[str, Any]] = [
            {"id": i, "name": n}
            for i, n in await session.execute(
                select(PlaylistSource.id, PlaylistSource.name).order_by(
                    PlaylistSource.position, PlaylistSource.id
                )
            )
        ]
        if playlist_id is None and playlists:
            playlist_id = int(playlists[0]["id"])
        groups = await picker.groups(session, playlist_id, include_vod=False) if playlist_id else []
        streams, total = await picker.streams(
            session,
            q=q,
            playlist_id=playlist_id,
            group=group,
            include_vod=False,
            not_in_lineup=not_in_lineup,
            limit=100,
            offset=offset,
        )
        next_number = max((await service.channel_numbers(session)).values(), default=0) + 1
    params = {
        "playlist_id": playlist_id,
        "group": group,
        "q": q,
        "not_in_lineup": "yes" if not_in_lineup else None,
    }
    base = "/channels/add?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return await render_template(
        "channels/add.html",
        **_ctx(
            playlists=playlists,
            playlist_id=playlist_id,
            groups=groups,
            group=group,
            q=q,
            streams=streams,
            total=total,
            offset=offset,
            base=base,
            next_number=next_number,
            not_in_lineup=not_in_lineup,
        ),
    )


@bp.get("/channels/match")
@hide
async def match_page() -> Any:
    svc = services()
    raw_ids = request.args.get("ids", "")
    ids = [int(p) for p in raw_ids.split(",") if p.strip().isdigit()]
    async with svc.db.session() as session:
        threshold = await settings_service.get_setting(session, svc.keyring, "epg_match_threshold")
        guides = (await _form_context(session))["guides"]
    return await render_template("channels/match.html", **_ctx(ids=ids, threshold=threshold, guides=guides))
