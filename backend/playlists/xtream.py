"""Xtream Codes player_api: URL building, account checks and JSON-to-M3uEntry mapping; no network."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from backend.errors import Invalid, UpstreamError
from backend.playlists.m3u import MAX_SKIPPED_KEPT, M3uEntry, SkippedEntry

log = logging.getLogger(__name__)

STREAM_EXTENSIONS = ("ts", "m3u8")


def normalize_server(server: str) -> str:
    """'host:port', 'http://host:port/' or a pasted '.../player_api.php' URL -> 'http://host:port'."""
    text = server.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018  # Raises ValueError for a port out of range.
    except ValueError:
        host = None
    if not host or parts.scheme not in ("http", "https"):
        raise Invalid(
            "The Xtream server must be an http(s) address such as http://example.com:8080",
            code="XTREAM_BAD_SERVER",
            fields={"server": "not an http(s) address"},
        )
    path = parts.path.rstrip("/")
    for page in ("/player_api.php", "/get.php", "/xmltv.php"):
        path = path.removesuffix(page)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def player_api_url(server: str, username: str, password: str, action: str | None = None) -> str:
    """The player_api.php URL for an action (None asks for the account and server info)."""
    params = {"username": username, "password": password}
    if action:
        params["action"] = action
    return f"{normalize_server(server)}/player_api.php?{urlencode(params)}"


def live_stream_url(server: str, username: str, password: str, stream_id: str, ext: str = "ts") -> str:
    """{server}/live/{username}/{password}/{stream_id}.{ext}, with the credentials percent-encoded."""
    _check_ext(ext)
    user, pw = quote(username, safe=""), quote(password, safe="")
    return f"{normalize_server(server)}/live/{user}/{pw}/{quote(stream_id, safe='')}.{ext}"


def _check_ext(ext: str) -> None:
    if ext not in STREAM_EXTENSIONS:
        raise Invalid(
            f"Stream format must be one of {', '.join(STREAM_EXTENSIONS)}",
            code="XTREAM_BAD_FORMAT",
            fields={"ext": "unsupported stream format"},
        )


def expect_list(payload: object, what: str) -> list[Any]:
    """Return a player_api list response, or raise the error the user needs to see.

    `what` names the request for the message, e.g. "live streams".
    """
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping):
        check_account(payload)
        raise UpstreamError(
            f"The Xtream server answered the {what} request with an object instead of a list",
            code="XTREAM_BAD_RESPONSE",
        )
    kind = "nothing" if payload is None else type(payload).__name__
    raise UpstreamError(
        f"The Xtream server answered the {what} request with {kind} instead of a list",
        code="XTREAM_BAD_RESPONSE",
    )


def check_account(payload: Mapping[str, Any]) -> None:
    """Raise if a player_api object carries a failed login or an inactive account in `user_info`."""
    info = payload.get("user_info")
    if not isinstance(info, Mapping):
        return
    if str(info.get("auth", "1")).strip() in ("0", "False", "false", ""):
        raise UpstreamError(
            "The Xtream server rejected the login; check the username and password",
            code="XTREAM_AUTH_FAILED",
        )
    status = info.get("status")
    if isinstance(status, str) and status.strip() and status.strip().lower() != "active":
        raise UpstreamError(
            f"The Xtream account is not active (status: {status.strip()[:40]})",
            code="XTREAM_ACCOUNT_INACTIVE",
        )


def category_names(categories: object) -> dict[str, str]:
    """category_id -> category_name from a get_live_categories response; bad items are ignored."""
    names: dict[str, str] = {}
    for item in expect_list(categories, "live categories"):
        if not isinstance(item, Mapping):
            continue
        cid = _text(item.get("category_id"))
        name = _text(item.get("category_name"))
        if cid is not None and name is not None:
            names[cid] = name
    return names


class XtreamLiveMapper:
    """Map get_live_streams items to M3uEntry records, as an Xtream m3u_plus export would list them.

    line_no is the 1-based position in the streams list. tv_archive becomes catchup "xc" (clients
    build the timeshift URL from the stream URL), tv_archive_duration becomes catchup_days. Items
    without a usable stream_id are skipped and reported like broken playlist lines.
    """

    def __init__(self, server: str, username: str, password: str, ext: str = "ts") -> None:
        # Validate up front, so a bad server or format fails before any item is mapped.
        _check_ext(ext)
        self._prefix = (
            f"{normalize_server(server)}/live/{quote(username, safe='')}/{quote(password, safe='')}/"
        )
        self._ext = ext
        self.skipped: list[SkippedEntry] = []
        self.skipped_total = 0

    def entries(self, streams: object, categories: object | None = None) -> Iterator[M3uEntry]:
        """Entries for a get_live_streams response; categories (get_live_categories) name the groups."""
        items = expect_list(streams, "live streams")
        groups = category_names(categories) if categories is not None else {}
        for position, item in enumerate(items, 1):
            entry = self._entry(position, item, groups)
            if entry is not None:
                yield entry

    def _entry(self, position: int, item: object, groups: Mapping[str, str]) -> M3uEntry | None:
        if not isinstance(item, Mapping):
            self._skip(position, "stream is not an object")
            return None
        stream_id = _text(item.get("stream_id"))
        if stream_id is None:
            self._skip(position, "stream has no stream_id")
            return None
        name = _text(item.get("name")) or f"Stream {stream_id}"
        category = _text(item.get("category_id"))
        if category is None:
            ids = item.get("category_ids")
            if isinstance(ids, list) and ids:
                category = _text(ids[0])
        archive = _truthy(item.get("tv_archive"))
        return M3uEntry(
            line_no=position,
            name=name,
            url=f"{self._prefix}{quote(stream_id, safe='')}.{self._ext}",
            duration=-1.0,
            tvg_id=_text(item.get("epg_channel_id")),
            tvg_name=name,
            tvg_logo=_web_url(item.get("stream_icon")),
            tvg_chno=_text(item.get("num")),
            group=groups.get(category) if category is not None else None,
            catchup="xc" if archive else None,
            catchup_source=None,
            catchup_days=_days(item.get("tv_archive_duration")) if archive else None,
            headers={},
            vlc_options={},
            kodi_props={},
            attrs={},
            is_vod=False,
            provider_stream_id=stream_id,
        )

    def _skip(self, position: int, reason: str) -> None:
        self.skipped_total += 1
        if len(self.skipped) < MAX_SKIPPED_KEPT:
            self.skipped.append(SkippedEntry(position, reason))


def _text(value: object) -> str | None:
    """A JSON scalar as stripped text: 12, 12.0 and "12" all give "12"; null, "" and objects give None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, int | str):
        # NUL is junk in a name or id, and PostgreSQL text cannot hold it.
        text = str(value).replace("\0", "").strip()
        return text or None
    return None


def _web_url(value: object) -> str | None:
    """Only http(s) logos: the admin UI and clients load them, so no javascript:, data: or file: URLs."""
    text = _text(value)
    return text if text is not None and text[:8].lower().startswith(("http://", "https://")) else None


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value)
    return text is not None and text.lower() not in ("0", "false", "no")


def _days(value: object) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        days = int(float(text))
    except (ValueError, OverflowError):
        return None
    return days if days > 0 else None
