"""Typed async client for TVHeadend's HTTP API: authentication, paging and error mapping."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from yarl import URL

from backend.errors import UpstreamError
from backend.tvheadend.auth import AuthMode, TvhAuth

log = logging.getLogger(__name__)

DvrGridKind = Literal["all", "upcoming", "finished", "failed", "removed"]
Row = dict[str, Any]

#: Rows per grid request. TVHeadend defaults to 50; a giant limit would make TVHeadend build one huge
#: reply, so grids are read page by page.
PAGE_SIZE = 500

_UUID_RE = re.compile(r"^[0-9a-f]{32}$")
_RIGHTS_HINT = (
    "TIC needs a TVHeadend user with an access entry granting admin, web interface, streaming and "
    "DVR rights, and a password entry for the same username"
)


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


class TvheadendError(UpstreamError):
    """TVHeadend answered with something TIC cannot use; `code` says what, the message what to fix."""

    code = "TVH_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        transient: bool = False,
        upstream_status: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, transient=transient, code=code, status=status)
        #: The HTTP status TVHeadend answered with (None when no answer came).
        self.upstream_status = upstream_status


class TvheadendAuthError(TvheadendError):
    """TVHeadend wants credentials (TVH_AUTH_REQUIRED) or refused them (TVH_FORBIDDEN)."""


class TvheadendNotFound(TvheadendError):
    """The path or the object does not exist on TVHeadend (TVH_NOT_FOUND)."""


class TvheadendUnavailable(TvheadendError):
    """No usable answer at all: unreachable, timed out, or the connection dropped; worth retrying."""

    status = 503


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerInfo:
    sw_version: str
    api_version: int
    name: str
    webroot: str | None
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class ConnectionCheck:
    """What `test_connection` found out about the server and TIC's user on it."""

    sw_version: str
    api_version: int
    auth_mode: AuthMode
    is_admin: bool
    has_dvr: bool
    webroot: str | None


@dataclass(frozen=True)
class MapperStatus:
    total: int
    ok: int
    fail: int
    ignore: int


@dataclass(frozen=True)
class _Reply:
    status: int
    content_type: str
    body: bytes
    challenges: tuple[str, ...]
    location: str | None


def _encode_form(args: Mapping[str, Any]) -> dict[str, str]:
    """Form fields as TVHeadend reads them: structured values are JSON strings, flags are 1/0."""
    form: dict[str, str] = {}
    for key, value in args.items():
        if value is None:
            continue
        if isinstance(value, bool):
            form[key] = "1" if value else "0"
        elif isinstance(value, str):
            form[key] = value
        elif isinstance(value, int | float):
            form[key] = str(value)
        else:
            form[key] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return form


def _uuid_list(uuids: str | Sequence[str]) -> str | list[str]:
    return uuids if isinstance(uuids, str) else list(uuids)


# ---------------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------------


class TvheadendClient:
    """One TVHeadend server, reached through the app's shared aiohttp session.

    `base_url` includes TVHeadend's HTTP root (e.g. `http://tvheadend:9981/tic-tvh`). Every call is a
    form-urlencoded POST (TVHeadend ignores JSON bodies and query strings on POST). Credentials go
    out as pre-emptive Basic until the server answers with a Digest challenge (TVHeadend's default is
    Digest only); from then on the nonce is cached and reused with an incrementing count, and a
    401 with a fresh challenge is retried once transparently.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        username: str = "",
        password: str = "",
        timeout: float = 15.0,
    ) -> None:
        url = URL(base_url.rstrip("/"))
        # Credentials typed into the URL are used as such, but the URL kept (and logged) is without them.
        if url.user and not username:
            username, password = url.user, url.password or ""
        self._base = url.with_user(None).with_password(None)
        self._session = session
        self._username = username
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_seconds = timeout
        self._auth = TvhAuth(username, password)
        self._reachable = True

    # -- properties ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self._base)

    @property
    def server(self) -> str:
        """host:port, for messages; never carries credentials."""
        return f"{self._base.host}:{self._base.port}"

    @property
    def auth_mode(self) -> AuthMode:
        """How this client authenticates: "none" without credentials, else the scheme the server accepted."""
        return self._auth.mode

    # -- low-level calls -------------------------------------------------------------------------------

    async def call(
        self, path: str, args: Mapping[str, Any] | None = None, *, idempotent: bool = False
    ) -> Any:
        """POST `api/<path>` with `args` and return the decoded JSON.

        `idempotent` calls (reads) are retried once when the connection drops before the reply; writes
        never are, because TVHeadend may already have applied them.
        """
        form = _encode_form(args or {})
        attempts = 2 if idempotent else 1
        for attempt in range(1, attempts + 1):
            try:
                reply = await self._send_authenticated(path, form)
            except TvheadendUnavailable as exc:
                if exc.code != "TVH_CONNECTION_LOST" or attempt == attempts:
                    raise
                log.debug("TVHeadend dropped the connection on %s; retrying once", path)
                continue
            return self._decode(reply, path, form)
        raise AssertionError("unreachable")  # pragma: no cover

    async def grid(
        self, path: str, params: Mapping[str, Any] | None = None, *, page_size: int = PAGE_SIZE
    ) -> list[Row]:
        """Read every row of a grid, `page_size` rows per request, until `total` (or `totalCount`) is met.

        Pages are read one after the other: TVHeadend builds every page under its global lock, so
        concurrent pages would only queue there.
        """
        rows: list[Row] = []
        seen: set[str] = set()
        start = 0
        while True:
            data = await self.call(
                path, {**(params or {}), "start": start, "limit": page_size}, idempotent=True
            )
            entries = data.get("entries") if isinstance(data, dict) else None
            total = data.get("total", data.get("totalCount")) if isinstance(data, dict) else None
            if not isinstance(entries, list) or not isinstance(total, int):
                raise TvheadendError(
                    f"TVHeadend answered {path} without the grid fields 'entries' and 'total': "
                    f"check that the TVHeadend URL points at TVHeadend ({self.server})",
                    code="TVH_BAD_RESPONSE",
                    upstream_status=200,
                )
            for entry in entries:
                # Without a sort the order is TVHeadend's internal one; skip rows seen on an earlier page
                # in case objects were created between two pages.
                uuid = entry.get("uuid") if isinstance(entry, dict) else None
                if isinstance(uuid, str):
                    if uuid in seen:
                        continue
                    seen.add(uuid)
                rows.append(entry)
            start += len(entries)
            if not entries or len(entries) < page_size or start >= total:
                return rows

    # -- authentication and transport ------------------------------------------------------------------

    def _url(self, path: str) -> URL:
        return self._base.with_path(f"{self._base.path.rstrip('/')}/api/{path.lstrip('/')}")

    async def _send_authenticated(self, path: str, form: Mapping[str, str]) -> _Reply:
        url = self._url(path)
        reply = await self._send(url, path, form, self._auth.header("POST", url))
        if reply.status == 401 and self._auth.learn(reply.challenges):
            # A fresh nonce (first contact, or the cached one expired) or another scheme: retry once.
            reply = await self._send(url, path, form, self._auth.header("POST", url))
        return reply

    async def _send(self, url: URL, path: str, form: Mapping[str, str], authorization: str | None) -> _Reply:
        headers = {"Accept": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        try:
            async with self._session.post(
                url, data=dict(form), headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                body = await resp.read()
                reply = _Reply(
                    status=resp.status,
                    content_type=resp.content_type,
                    body=body,
                    challenges=tuple(resp.headers.getall("WWW-Authenticate", ())),
                    location=resp.headers.get("Location"),
                )
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            self._mark_down(reason)
            raise TvheadendUnavailable(
                f"Cannot reach TVHeadend at {self.server} ({reason}): check the TVHeadend URL in Settings "
                "and that TVHeadend is running",
                code="TVH_UNREACHABLE",
                transient=True,
            ) from exc
        except TimeoutError as exc:
            self._mark_down("timeout")
            raise TvheadendUnavailable(
                f"TVHeadend at {self.server} did not answer {path} within {self._timeout_seconds:g} s: "
                "it may be overloaded or stuck; TIC will retry later",
                code="TVH_TIMEOUT",
                transient=True,
            ) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise TvheadendUnavailable(
                f"TVHeadend at {self.server} closed the connection before answering {path}; a change may or "
                "may not have been applied, so TIC re-reads TVHeadend before trying again",
                code="TVH_CONNECTION_LOST",
                transient=True,
            ) from exc
        except aiohttp.ClientError as exc:
            self._mark_down(type(exc).__name__)
            raise TvheadendUnavailable(
                f"Cannot talk to TVHeadend at {self.server} ({type(exc).__name__}): check the TVHeadend URL "
                "in Settings",
                code="TVH_UNREACHABLE",
                transient=True,
            ) from exc
        self._mark_up()
        log.debug("TVHeadend %s -> %s", path, reply.status)
        return reply

    def _mark_down(self, reason: str) -> None:
        # Log the transition only, not every failing call (Home Assistant style).
        if self._reachable:
            self._reachable = False
            log.warning("TVHeadend at %s is unavailable (%s)", self.server, reason)

    def _mark_up(self) -> None:
        if not self._reachable:
            self._reachable = True
            log.info("TVHeadend at %s is reachable again", self.server)

    # -- status mapping --------------------------------------------------------------------------------

    def _decode(self, reply: _Reply, path: str, form: Mapping[str, str]) -> Any:
        status = reply.status
        endpoint = f"api/{path}"
        if status == 200:
            if "json" not in reply.content_type:
                raise TvheadendError(
                    f"TVHeadend answered {endpoint} with {reply.content_type or 'no content type'} instead "
                    f"of JSON: check that the TVHeadend URL ({self.base_url}) points at TVHeadend, including "
                    "its HTTP root, and not at a login page or another web server",
                    code="TVH_BAD_RESPONSE",
                    upstream_status=status,
                )
            try:
                return json.loads(reply.body)
            except ValueError as exc:
                raise TvheadendError(
                    f"TVHeadend answered {endpoint} with invalid JSON: check that the TVHeadend URL "
                    f"({self.base_url}) points at TVHeadend",
                    code="TVH_BAD_RESPONSE",
                    upstream_status=status,
                ) from exc
        if status == 400:
            keys = ", ".join(sorted(form)) or "none"
            raise TvheadendError(
                f"TVHeadend rejected {endpoint} with 400 Bad Request (argument names: {keys}); TVHeadend "
                "gives no detail: usually a required argument is missing or malformed, or a referenced "
                "object no longer exists",
                code="TVH_BAD_REQUEST",
                upstream_status=status,
            )
        if status == 401:
            if self._username:
                message = (
                    f"TVHeadend still asked for credentials for {endpoint} after TIC sent them: check the "
                    "TVHeadend username and password in Settings, and that TVHeadend's authentication type "
                    "is Digest or 'Both plain and digest'"
                )
            else:
                message = (
                    "TVHeadend asked for credentials: set the TVHeadend username and password in Settings"
                )
            raise TvheadendAuthError(message, code="TVH_AUTH_REQUIRED", upstream_status=status)
        if status == 403:
            raise TvheadendAuthError(
                f"TVHeadend refused {endpoint} for user '{self._username}': the password is wrong, the user "
                f"does not exist, or it lacks the rights this call needs; {_RIGHTS_HINT}",
                code="TVH_FORBIDDEN",
                upstream_status=status,
            )
        if status == 404:
            raise TvheadendNotFound(
                f"TVHeadend answered 404 Not Found for {endpoint}: the object no longer exists, or the "
                f"TVHeadend URL ({self.base_url}) is wrong; it must include TVHeadend's HTTP root, "
                "e.g. http://tvheadend:9981/tic-tvh",
                code="TVH_NOT_FOUND",
                upstream_status=status,
            )
        if status >= 500:
            raise TvheadendError(
                f"TVHeadend failed with HTTP {status} on {endpoint}; TIC will retry later",
                code="TVH_SERVER_ERROR",
                transient=True,
                upstream_status=status,
            )
        if 300 <= status < 400:
            raise TvheadendError(
                f"TVHeadend redirected {endpoint} to {reply.location or '?'}: the TVHeadend URL in Settings "
                "probably lacks TVHeadend's HTTP root (for example http://tvheadend:9981/tic-tvh)",
                code="TVH_BAD_RESPONSE",
                upstream_status=status,
            )
        raise TvheadendError(
            f"TVHeadend answered {endpoint} with unexpected HTTP {status}",
            code="TVH_BAD_RESPONSE",
            upstream_status=status,
        )

    def _created_uuid(self, data: Any, endpoint: str) -> str:
        uuid = data.get("uuid") if isinstance(data, dict) else None
        if not isinstance(uuid, str):
            raise TvheadendError(
                f"TVHeadend answered {endpoint} without the uuid of a new object: nothing was created",
                code="TVH_BAD_RESPONSE",
                upstream_status=200,
            )
        return uuid

    async def _create(self, path: str, args: Mapping[str, Any]) -> str:
        return self._created_uuid(await self.call(path, args), f"api/{path}")

    # -- server ----------------------------------------------------------------------------------------

    async def server_info(self) -> ServerInfo:
        data = await self.call("serverinfo", idempotent=True)
        if not isinstance(data, dict) or "sw_version" not in data:
            raise TvheadendError(
                f"TVHeadend answered api/serverinfo without a version: check that {self.base_url} is "
                "TVHeadend",
                code="TVH_BAD_RESPONSE",
                upstream_status=200,
            )
        return ServerInfo(
            sw_version=str(data["sw_version"]),
            api_version=int(data.get("api_version", 0)),
            name=str(data.get("name", "")),
            webroot=data.get("webroot"),
            capabilities=tuple(str(c) for c in data.get("capabilities", ())),
        )

    async def test_connection(self) -> ConnectionCheck:
        """Check the server and what TIC's user may do: admin (config/load) and DVR (dvr/entry/grid)."""
        info = await self.server_info()
        is_admin = await self._probe("config/load", {})
        has_dvr = await self._probe("dvr/entry/grid", {"limit": 1})
        return ConnectionCheck(
            sw_version=info.sw_version,
            api_version=info.api_version,
            auth_mode=self.auth_mode,
            is_admin=is_admin,
            has_dvr=has_dvr,
            webroot=info.webroot,
        )

    async def _probe(self, path: str, args: Mapping[str, Any]) -> bool:
        # Called after serverinfo succeeded with the same login, so a refusal here means a missing
        # right: 403 for a named user, 401 for an anonymous one.
        try:
            await self.call(path, args, idempotent=True)
        except TvheadendAuthError:
            return False
        return True

    async def config_load(self) -> dict[str, Any]:
        """The base configuration as {id: value} (e.g. `digest`, `server_name`)."""
        return self._load_values(await self.call("config/load", idempotent=True), "api/config/load")

    async def config_save(self, node: Mapping[str, Any]) -> None:
        await self.call("config/save", {"node": dict(node)})

    def _load_values(self, data: Any, endpoint: str) -> dict[str, Any]:
        try:
            params = data["entries"][0]["params"]
            return {str(p["id"]): p.get("value") for p in params}
        except (KeyError, IndexError, TypeError) as exc:
            raise TvheadendError(
                f"TVHeadend answered {endpoint} without the expected 'entries'/'params'",
                code="TVH_BAD_RESPONSE",
                upstream_status=200,
            ) from exc

    # -- networks, muxes, services ---------------------------------------------------------------------

    async def network_grid(self) -> list[Row]:
        return await self.grid("mpegts/network/grid")

    async def network_create(self, cls: str, conf: Mapping[str, Any]) -> str:
        """Create a network of class `cls` (e.g. "iptv_network"); returns its uuid."""
        return await self._create("mpegts/network/create", {"class": cls, "conf": dict(conf)})

    async def network_scan(self, network_uuid: str) -> None:
        await self.call("mpegts/network/scan", {"uuid": network_uuid})

    async def mux_grid(self, hidemode: Literal["default", "none", "all"] = "none") -> list[Row]:
        """All muxes; `hidemode` "none" by default so muxes of disabled networks are not silently missing."""
        return await self.grid("mpegts/mux/grid", {"hidemode": None if hidemode == "default" else hidemode})

    async def mux_create(self, network_uuid: str, conf: Mapping[str, Any]) -> str:
        return await self._create("mpegts/network/mux_create", {"uuid": network_uuid, "conf": dict(conf)})

    async def service_grid(self, hidemode: Literal["default", "none", "all"] = "none") -> list[Row]:
        return await self.grid(
            "mpegts/service/grid", {"hidemode": None if hidemode == "default" else hidemode}
        )

    async def service_mapper_save(self, services: Sequence[str], **options: bool) -> None:
        """Queue `services` for mapping to channels; options such as `type_tags`, `merge_same_name`.

        Mapping runs asynchronously on the server: poll `service_mapper_status`.
        """
        await self.call("service/mapper/save", {"node": {"services": list(services), **options}})

    async def service_mapper_status(self) -> MapperStatus:
        data = await self.call("service/mapper/status", idempotent=True)
        if not isinstance(data, dict):
            raise TvheadendError(
                "TVHeadend answered api/service/mapper/status without counters",
                code="TVH_BAD_RESPONSE",
                upstream_status=200,
            )
        return MapperStatus(
            total=int(data.get("total", 0)),
            ok=int(data.get("ok", 0)),
            fail=int(data.get("fail", 0)),
            ignore=int(data.get("ignore", 0)),
        )

    # -- channels and tags -----------------------------------------------------------------------------

    async def channel_grid(self, all: bool = True) -> list[Row]:
        """Channels; disabled ones are only included with `all` (TVHeadend hides them by default)."""
        return await self.grid("channel/grid", {"all": 1 if all else None})

    async def channel_create(self, conf: Mapping[str, Any]) -> str:
        return await self._create("channel/create", {"conf": dict(conf)})

    async def channeltag_grid(self, all: bool = True) -> list[Row]:
        return await self.grid("channeltag/grid", {"all": 1 if all else None})

    async def channeltag_create(self, conf: Mapping[str, Any]) -> str:
        return await self._create("channeltag/create", {"conf": dict(conf)})

    # -- generic idnode calls --------------------------------------------------------------------------

    async def idnode_load(self, uuids: str | Sequence[str], fields: Sequence[str] = ()) -> list[Row]:
        """Objects as flat rows (grid=1); unknown uuids are simply absent from the result."""
        args: dict[str, Any] = {"uuid": _uuid_list(uuids), "grid": 1}
        if fields:
            args["list"] = ",".join(fields)
        data = await self.call("idnode/load", args, idempotent=True)
        entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise TvheadendError(
                "TVHeadend answered api/idnode/load without 'entries'",
                code="TVH_BAD_RESPONSE",
                upstream_status=200,
            )
        return entries

    async def idnode_save(self, node: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Partial update of one object (`{"uuid": …, field: value}`) or of several (a list of those)."""
        payload: Any = dict(node) if isinstance(node, Mapping) else [dict(n) for n in node]
        await self.call("idnode/save", {"node": payload})

    async def idnode_delete(self, uuids: str | Sequence[str]) -> None:
        """Delete objects. One uuid raises TVH_NOT_FOUND when unknown; a list skips unknown ones."""
        await self.call("idnode/delete", {"uuid": _uuid_list(uuids)})

    # -- EPG -------------------------------------------------------------------------------------------

    async def epggrab_module_list(self) -> list[Row]:
        data = await self.call("epggrab/module/list", idempotent=True)
        return list(data.get("entries", [])) if isinstance(data, dict) else []

    async def epggrab_config_load(self) -> dict[str, Any]:
        return self._load_values(
            await self.call("epggrab/config/load", idempotent=True), "api/epggrab/config/load"
        )

    async def epggrab_config_save(self, node: Mapping[str, Any]) -> None:
        await self.call("epggrab/config/save", {"node": dict(node)})

    async def epg_events_grid(self, channel: str | None = None, **params: Any) -> list[Row]:
        """EPG events (optionally of one channel uuid or name); counted by `totalCount`."""
        return await self.grid("epg/events/grid", {"channel": channel, **params})

    # -- DVR -------------------------------------------------------------------------------------------

    async def dvr_config_grid(self) -> list[Row]:
        return await self.grid("dvr/config/grid")

    async def dvr_entry_create(self, conf: Mapping[str, Any]) -> str:
        """Create a DVR entry; `conf["channel"]` must be a channel uuid.

        TVHeadend answers 200 even for a channel name or an unknown uuid (the entry is then "Invalid"),
        so the uuid's shape is checked here.
        """
        channel = conf.get("channel")
        if not isinstance(channel, str) or not _UUID_RE.match(channel):
            raise TvheadendError(
                "A TVHeadend DVR entry needs the channel's TVHeadend uuid (32 hex digits): publish the "
                "channel to TVHeadend first",
                code="TVH_BAD_REQUEST",
            )
        return await self._create("dvr/entry/create", {"conf": dict(conf)})

    async def dvr_entry_create_by_event(
        self, event_id: int, config_uuid: str = "", comment: str | None = None
    ) -> list[str]:
        data = await self.call(
            "dvr/entry/create_by_event",
            {"event_id": event_id, "config_uuid": config_uuid, "comment": comment},
        )
        uuids = data.get("uuid") if isinstance(data, dict) else None
        if not isinstance(uuids, list) or not uuids:
            raise TvheadendNotFound(
                f"TVHeadend created no recording for EPG event {event_id}: the event no longer exists in "
                "TVHeadend's guide",
                code="TVH_NOT_FOUND",
                upstream_status=200,
            )
        return [str(u) for u in uuids]

    async def dvr_entry_grid(self, kind: DvrGridKind = "all") -> list[Row]:
        """DVR entries: all, or `upcoming` (scheduled and recording), `finished`, `failed`, `removed`."""
        return await self.grid("dvr/entry/grid" if kind == "all" else f"dvr/entry/grid_{kind}")

    async def dvr_entry_stop(self, uuids: str | Sequence[str]) -> None:
        """Stop recordings now, keeping the file ("Completed OK"); scheduled entries are unaffected."""
        await self.call("dvr/entry/stop", {"uuid": _uuid_list(uuids)})

    async def dvr_entry_cancel(self, uuids: str | Sequence[str]) -> None:
        """Cancel: deletes scheduled entries; aborts running recordings ("Aborted by user")."""
        await self.call("dvr/entry/cancel", {"uuid": _uuid_list(uuids)})

    async def dvr_entry_remove(self, uuids: str | Sequence[str]) -> None:
        """Delete finished recordings together with their files."""
        await self.call("dvr/entry/remove", {"uuid": _uuid_list(uuids)})

    # -- users -----------------------------------------------------------------------------------------

    async def access_entry_grid(self) -> list[Row]:
        return await self.grid("access/entry/grid")

    async def access_entry_create(self, conf: Mapping[str, Any]) -> str:
        return await self._create("access/entry/create", {"conf": dict(conf)})

    async def passwd_entry_grid(self) -> list[Row]:
        """Password entries. TVHeadend returns passwords in clear text here: never log these rows."""
        return await self.grid("passwd/entry/grid")

    async def passwd_entry_create(self, conf: Mapping[str, Any]) -> str:
        return await self._create("passwd/entry/create", {"conf": dict(conf)})

    # -- status ----------------------------------------------------------------------------------------

    async def status_subscriptions(self) -> list[Row]:
        data = await self.call("status/subscriptions", idempotent=True)
        return list(data.get("entries", [])) if isinstance(data, dict) else []
