"""A fake TVHeadend for tests: a real aiohttp server answering like the one recorded in tvheadend-api.md."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import ipaddress
import json
import logging
import re
import secrets
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

ZERO_UUID = "0" * 32
SW_VERSION = "4.3-2715~g80729d2f6"
API_VERSION = 19
TS_PACKET_SIZE = 188

#: A stand-in for TVHeadend's web UI (extjs.html): like the real one it uses relative URLs, opens
#: `comet/ws` with the `tvheadend-comet` protocol and POSTs form-encoded XHRs to `api/...`. It writes what
#: it receives into the page, for browser tests.
EXTJS_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Tvheadend</title></head>
<body><h1>Tvheadend</h1>
<div id="comet" data-state="connecting"></div>
<pre id="api"></pre>
<script>
(function () {
  var comet = document.getElementById("comet");
  var scheme = location.protocol === "https:" ? "wss:" : "ws:";
  var dir = location.pathname.replace(/[^/]*$/, "");
  var ws = new WebSocket(scheme + "//" + location.host + dir + "comet/ws", "tvheadend-comet");
  ws.onopen = function () { comet.dataset.state = "open"; };
  ws.onmessage = function (ev) {
    var line = document.createElement("div");
    line.className = "comet-message";
    line.textContent = ev.data;
    comet.appendChild(line);
  };
  ws.onclose = function (ev) { comet.dataset.state = "closed:" + ev.code; };
  var xhr = new XMLHttpRequest();
  xhr.open("POST", "api/serverinfo");
  xhr.setRequestHeader("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8");
  xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
  xhr.onload = function () { document.getElementById("api").textContent = xhr.status + " " + xhr.responseText; };
  xhr.send("");
})();
</script>
</body></html>
"""

# ---------------------------------------------------------------------------------------------------
# Small helpers: errors, JSON, coercion
# ---------------------------------------------------------------------------------------------------

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """Raised by a handler to answer with TVHeadend's HTML error page for `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def html_error(status: int, extra: str = "") -> web.Response:
    """Build the HTML error page TVHeadend sends for every error (never JSON)."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    body = (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n'
        f"<HTML><HEAD><TITLE>{title}</TITLE></HEAD><BODY><H1>{title}</H1>\r\n{extra}</BODY></HTML>\r\n"
    )
    return web.Response(status=status, text=body, content_type="text/html")


def json_response(obj: Any) -> web.Response:
    """Compact JSON with TVHeadend's exact content type."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {"Cache-Control": "no-cache", "Content-Type": "application/json; charset=UTF-8"}
    return web.Response(body=body, headers=headers)


def new_uuid() -> str:
    return secrets.token_hex(16)


def numeric_id(uuid: str) -> int:
    """A stable numeric id per object, like the `channelid`/`tagid` numbers playlists use."""
    return zlib.crc32(uuid.encode()) & 0x7FFFFFFF


_TRUE_STRINGS = {"1", "true", "yes", "on"}
_INT_TYPES = {"int", "u16", "u32", "s64", "time", "dbl"}


def coerce_scalar(ptype: str, value: Any) -> Any:
    """Coerce leniently the way TVHeadend does: "302" -> 302, "abc" -> 0, "yes" -> True."""
    if ptype == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value != 0
        if isinstance(value, str):
            return value.strip().lower() in _TRUE_STRINGS
        return False
    if ptype in _INT_TYPES:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    return int(float(value))
                except ValueError:
                    return 0
        return 0
    if ptype == "chnum":
        # Channel numbers are integers unless they carry a minor part, which reads back as a string.
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value) if value.is_integer() else f"{value:.6f}"
        if isinstance(value, str):
            text = value.strip()
            if re.fullmatch(r"\d+", text):
                return int(text)
            if re.fullmatch(r"\d+\.\d+", text):
                return text
        return 0
    if ptype == "langstr":
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return {"eng": "" if value is None else str(value)}
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def parse_auth_params(text: str) -> dict[str, str]:
    """Parse `k="v", k2=v2` pairs of an Authorization or WWW-Authenticate header."""
    pairs: dict[str, str] = {}
    for m in re.finditer(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', text):
        pairs[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    return pairs


_DIGEST_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
    "SHA-512-256": lambda b: hashlib.new("sha512_256", b).hexdigest(),
}


def ts_packets(count: int, pid: int = 0x100, start_cc: int = 0) -> bytes:
    """MPEG-TS packets: 0x47 sync byte, a PID, an incrementing continuity counter, stuffing payload."""
    out = bytearray()
    for i in range(count):
        cc = (start_cc + i) & 0x0F
        out += bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, 0x10 | cc]) + b"\xff" * 184
    return bytes(out)


# ---------------------------------------------------------------------------------------------------
# Class metadata: the properties of every idnode class the fake knows
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prop:
    id: str
    type: str
    default: Any = None
    rdonly: bool = False
    islist: bool = False
    omit_empty: bool = False


_PROP_TOKEN = re.compile(r"^([\w-]+):(\w+)(?:=(.+?))?([!*?]*)$")
_TYPE_DEFAULTS: dict[str, Any] = {"bool": False, "str": "", "perm": "", "langstr": {}}


def props(spec: str, **defaults: Any) -> tuple[Prop, ...]:
    """Parse `id:type[=json default][flags]` tokens; flags: `!` read-only, `*` list, `?` hidden if empty."""
    out = []
    for token in spec.split():
        m = _PROP_TOKEN.match(token)
        if m is None:
            raise ValueError(token)
        pid, ptype, default, flags = m.groups()
        islist = "*" in flags
        if pid in defaults:
            value = defaults[pid]
        elif default is not None:
            value = json.loads(default)
        else:
            value = [] if islist else _TYPE_DEFAULTS.get(ptype, 0)
        out.append(Prop(pid, ptype, value, rdonly="!" in flags, islist=islist, omit_empty="?" in flags))
    return tuple(out)


@dataclass(frozen=True)
class ClassDef:
    name: str
    caption: str
    event: str
    right: str
    props: tuple[Prop, ...]

    def prop(self, pid: str) -> Prop | None:
        for p in self.props:
            if p.id == pid:
                return p
        return None

    def meta(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "class": self.name,
            "event": self.event,
            "props": [prop_meta(p) for p in self.props],
        }


_META_TYPES = {"chnum": "s64", "dbl": "dbl"}


def prop_meta(p: Prop, value: Any = None, with_value: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": p.id,
        "type": _META_TYPES.get(p.type, p.type),
        "caption": p.id.replace("_", " ").capitalize(),
        "description": "",
        "default": p.default,
    }
    if p.islist:
        meta["list"] = 1
    if p.rdonly:
        meta["rdonly"] = True
    if p.id == "password":
        meta["password"] = True
    if with_value:
        meta["value"] = value
    return meta


_NETWORK_PROPS = props("""
    enabled:bool networkname:str pnetworkname:str? nid:u16 autodiscovery:int bouquet:bool
    skipinitscan:bool=true idlescan:bool sid_chnum:bool ignore_chnum:bool charset:str? localtime:int
    num_mux:u32! num_svc:u32! num_chn:u32! scanq_length:u32! wizard:bool! scan_create:bool=true
    service_sid:u16 priority:int=1 spriority:int=1 max_streams:u32 max_bandwidth:u32 max_timeout:u32=15
    icon_url:str? remove_scrambled:bool=true
""")
_IPTV_AUTO_PROPS = props("""
    url:str ctx_charset:str channel_number:s64 refetch_period:u32=60 ssl_peer_verify:bool tsid_zero:bool
    remove_args:str="ticket" ignore_args:str ignore_path:int
""")
_MUX_PROPS = props("""
    iptv_url:str iptv_muxname:str channel_number:s64 iptv_sname:str iptv_epgid:str iptv_icon:str iptv_tags:str
    iptv_interface:str iptv_atsc:bool iptv_substitute:bool iptv_send_reports:bool iptv_ret_url:str
    iptv_respawn:bool iptv_kill:int iptv_kill_timeout:int=5 iptv_env:str iptv_hdr:str iptv_buffer_limit:u32
    priority:int spriority:int charset:str enabled:int=1 epg:int=1 network:str! network_uuid:str! name:str!
    onid:u32=65536! tsid:u32=65536! scan_state:int scan_result:int! num_svc:u32! num_chn:u32! created:time!
    scan_first:time! scan_last:time!
""")
_SERVICE_PROPS = props("""
    network:str! multiplex:str! multiplex_uuid:str! sid:u16! lcn:u32 lcn_minor:u16 lcn2:u32 srcid:u32
    svcname:str provider:str dvb_servicetype:int=1 dvb_eit_processing:int dvb_subtitle_processing:int
    dvb_ignore_matching_subtitle:bool prefcapid:u32 prefcapid_lock:int force_caid:u16 pts_shift:int
    created:time! last_seen:time! enabled:bool=true auto:int channel:str*! priority:int encrypted:bool!
    caid:str! s_type_user:int=-1
""")
_CHANNEL_PROPS = props("""
    enabled:bool=true autoname:bool name:str number:chnum icon:str? epgauto:bool=true epglimit:int
    epggrab:str* dvr_pre_time:int dvr_pst_time:int epg_running:int=-1 services:str* tags:str* bouquet:str!
    epg_parent:str?
""")
_TAG_PROPS = props("""
    enabled:bool=true index:int name:str internal:bool private:bool icon:str icon_public_url:str!
    titled_icon:bool comment:str
""")
_DVR_PROPS = props("""
    enabled:bool=true create:time! watched:int start:time start_extra:time start_real:time! stop:time
    stop_extra:time stop_real:time! duration:time! channel:str channelname:str! image:str fanart_image:str
    title:langstr disp_title:str subtitle:langstr disp_subtitle:str summary:langstr disp_summary:str!
    description:langstr disp_description:str! disp_extratext:str! pri:int=6 retention:u32 removal:u32
    playposition:u32 playcount:u32 config_name:str owner:str creator:str filename:str! errorcode:u32!
    errors:u32! data_errors:u32! dvb_eid:u16 noresched:bool norerecord:bool fileremoved:int! autorec:str!
    autorec_caption:str! timerec:str! timerec_caption:str! parent:str! child:str! content_type:int
    copyright_year:u16 broadcast:u32! episode_disp:str url:str!? filesize:s64! status:str! sched_status:str!
    duplicate:time! first_aired:time comment:str category:str* keyword:str* genre:int* age_rating:u16
    rating_label_uuid:str
""")
_DVR_CONFIG_PROPS = props("""
    enabled:bool=true name:str profile:str pri:int retention-days:u32=2147483646 removal-days:u32=2147483647
    remove-after-playback:u32 pre-extra-time:s64 post-extra-time:s64 clone:bool=true rerecord-errors:u32
    data-error-threshold:u32=10000 storage:str="/recordings" storage-mfree:u32=1000 storage-mused:u32
    directory-permissions:perm="0775" file-permissions:perm="0664" charset:str="ASCII" pathname:str="$t$n.$x"
    cache:int=1 day-dir:bool channel-dir:bool title-dir:bool tag-files:bool=true epg-update-window:u32=86400
    autorec-maxcount:u32=50 record:int skip-commercials:bool=true warm-time:u32=30
""")
_ACCESS_PROPS = props("""
    index:int! enabled:bool=true username:str prefix:str="0.0.0.0/0,::/0" change:str* uilevel:int=-1
    uilevel_nochange:int=-1 default_tab:int streaming:str* profile:str* dvr:str* htsp_anonymize:bool
    dvr_config:str* webui:bool admin:bool conn_limit_type:int conn_limit:u32 channel_min:s64 channel_max:s64
    channel_tag_exclude:bool channel_tag:str* xmltv_output_format:int htsp_output_format:int comment:str
    wizard:bool!
""")
_PASSWD_PROPS = props("""
    enabled:bool=true username:str password:str password2:str! auth:str* authcode:str!? comment:str
    wizard:bool!
""")
_EPGGRAB_MOD_PROPS = props("""
    name:str! type:str! enabled:bool priority:int=3 path:str! dn_chnum:int scrape_extra:bool
    scrape_onto_desc:bool use_category_not_genre:bool
""")
_EPGGRAB_CHANNEL_PROPS = props("""
    enabled:bool=true modid:str! module:str! path:str! updated:time! id:str name:str names:str! number:s64
    channels:str* only_one:bool update:str*
""")
_CONFIG_PROPS = props(
    """
    server_name:str="Tvheadend" digest:int=1 digest_algo:int http_realm_name:str="tvheadend"
    http_server_name:str="HTS/tvheadend" cookie_expires:int=7 ticket_expires:int=300 proxy:bool
    cors_origin:str uilevel:int page_size_ui:int=50 epg_window:int=86400 epg_cutwindow:int=300
    iptv_tpool:int=2 http_user_agent:str wizard:str="hello"
    """,
    http_user_agent=f"TVHeadend/{SW_VERSION}",
)
_EPGGRAB_CONFIG_PROPS = props(
    """
    channel_rename:bool channel_renumber:bool channel_reicon:bool epgdb_periodicsave:u32
    epgdb_saveafterimport:bool epgdb_processparentallabels:bool cron:str int_initial:bool=true
    ota_initial:bool=true eit_processing_default:int=4 ota_cron:str ota_timeout:u32=600
    ota_genre_translation:str
    """,
    cron="# Default config (00:04 and 12:04 everyday)\n4 */12 * * *",
    ota_cron="# Default config (02:04 and 14:04 everyday)\n4 2 * * *",
)
_MAPPER_PROPS = props("""
    services:str* check_availability:bool encrypted:bool merge_same_name:bool merge_same_name_fuzzy:bool
    tidy_channel_name:bool type_tags:bool=true provider_tags:bool network_tags:bool
""")

_DVB_NETWORK_CLASSES = {
    "dvb_network_dvbt": "DVB-T Network",
    "dvb_network_dvbc": "DVB-C Network",
    "dvb_network_dvbs": "DVB-S Network",
    "dvb_network_atsc_t": "ATSC-T Network",
    "dvb_network_atsc_c": "ATSC-C Network",
    "dvb_network_isdb_t": "ISDB-T Network",
    "dvb_network_isdb_c": "ISDB-C Network",
    "dvb_network_isdb_s": "ISDB-S Network",
    "dvb_network_cablecard": "CableCARD Network",
}

CLASSES: dict[str, ClassDef] = {
    c.name: c
    for c in (
        ClassDef(
            "iptv_auto_network",
            "IPTV Automatic Network",
            "mpegts_network",
            "admin",
            _NETWORK_PROPS + _IPTV_AUTO_PROPS,
        ),
        ClassDef("iptv_network", "IPTV Network", "mpegts_network", "admin", _NETWORK_PROPS),
        *(
            ClassDef(n, cap, "mpegts_network", "admin", _NETWORK_PROPS)
            for n, cap in _DVB_NETWORK_CLASSES.items()
        ),
        ClassDef("iptv_mux", "IPTV Multiplex", "mpegts_mux", "admin", _MUX_PROPS),
        ClassDef("iptv_service", "IPTV Service", "service", "admin", _SERVICE_PROPS),
        ClassDef("channel", "Channels / EPG - Channels", "channel", "admin", _CHANNEL_PROPS),
        ClassDef("channeltag", "Channels / EPG - Channel Tags", "channeltag", "admin", _TAG_PROPS),
        ClassDef("dvrentry", "Digital Video Recorder", "dvrentry", "dvr", _DVR_PROPS),
        ClassDef("dvrconfig", "DVR Configuration Profile", "dvrconfig", "admin", _DVR_CONFIG_PROPS),
        ClassDef("access", "Access Entries", "access", "admin", _ACCESS_PROPS),
        ClassDef("passwd", "Passwords", "passwd", "admin", _PASSWD_PROPS),
        ClassDef("epggrab_mod_ext_xmltv", "External: XMLTV", "epggrab_mod", "admin", _EPGGRAB_MOD_PROPS),
        ClassDef("epggrab_mod_int_xmltv", "Internal: XMLTV", "epggrab_mod", "admin", _EPGGRAB_MOD_PROPS),
        ClassDef("epggrab_mod_ota", "Over-the-air", "epggrab_mod", "admin", _EPGGRAB_MOD_PROPS),
        ClassDef(
            "epggrab_channel", "EPG Grabber Channel", "epggrab_channel", "admin", _EPGGRAB_CHANNEL_PROPS
        ),
    )
}
NETWORK_CLASSES = ("iptv_auto_network", "iptv_network", *_DVB_NETWORK_CLASSES)
SINGLETONS: dict[str, ClassDef] = {
    "config": ClassDef("config", "Configuration - Base", "config", "admin", _CONFIG_PROPS),
    "epggrab": ClassDef("epggrab", "Channels / EPG - EPG Grabber", "epggrab", "admin", _EPGGRAB_CONFIG_PROPS),
    "service_mapper": ClassDef("service_mapper", "Service Mapper", "service_mapper", "admin", _MAPPER_PROPS),
}


# ---------------------------------------------------------------------------------------------------
# State: the objects, their rendering, grids, DVR timing, EPG, comet mailboxes
# ---------------------------------------------------------------------------------------------------


@dataclass
class Node:
    """One idnode: `fields` is the live dict a test may read or change behind the client's back."""

    uuid: str
    cls: ClassDef
    fields: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Mailbox:
    boxid: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_seen: float = 0.0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    websocket: bool = False


@dataclass(frozen=True)
class Principal:
    """Who is calling: `username` None for anonymous requests."""

    username: str | None
    rights: frozenset[str]

    @property
    def authenticated(self) -> bool:
        return self.username is not None


@dataclass
class _Index:
    """Reverse links computed once per grid, so that rendering 1,000s of rows stays linear."""

    muxes_by_net: dict[str, list[str]] = field(default_factory=dict)
    svcs_by_mux: dict[str, list[str]] = field(default_factory=dict)
    chans_by_svc: dict[str, list[str]] = field(default_factory=dict)
    grabs_by_chan: dict[str, list[str]] = field(default_factory=dict)


def _defaults(cls: ClassDef) -> dict[str, Any]:
    return {p.id: copy.deepcopy(p.default) for p in cls.props}


def _first_lang(value: Any) -> str:
    if isinstance(value, dict) and value:
        return str(value.get("eng") or next(iter(value.values())))
    return ""


class TvhState:
    """Everything the fake server knows; tests seed and inspect it directly."""

    def __init__(self, *, dvr_payload: bytes, config_dir: Path) -> None:
        self.nodes: dict[str, Node] = {}
        self.config: dict[str, Any] = _defaults(SINGLETONS["config"])
        self.epggrab_config: dict[str, Any] = _defaults(SINGLETONS["epggrab"])
        self.mapper_config: dict[str, Any] = _defaults(SINGLETONS["service_mapper"])
        self.mapper_status: dict[str, int] = {"total": 0, "ok": 0, "fail": 0, "ignore": 0}
        self.profiles: dict[str, str] = {new_uuid(): "pass", new_uuid(): "matroska", new_uuid(): "htsp"}
        self.epg_events: dict[int, dict[str, Any]] = {}
        self.dvr_files: dict[str, bytes] = {}
        self.dvr_payload = dvr_payload
        self.subscriptions: dict[int, dict[str, Any]] = {}
        self.clock_offset = 0.0
        self.config_dir = config_dir
        self.mailboxes: dict[str, Mailbox] = {}
        self._next_event_id = 1
        self._next_sid = 1
        self._next_sub_id = 1
        default_profile = next(iter(self.profiles))
        self.default_dvr_config = self.create("dvrconfig", {"profile": default_profile}, notify=False).uuid
        self._seed_epggrab_modules()

    # -- clock --------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (DVR entries start and finish by it)."""
        self.clock_offset += seconds

    # -- live views ----------------------------------------------------------------------------------

    def _view(self, *classes: str) -> dict[str, dict[str, Any]]:
        return {n.uuid: n.fields for n in self.nodes.values() if n.cls.name in classes}

    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        return self._view(*NETWORK_CLASSES)

    @property
    def muxes(self) -> dict[str, dict[str, Any]]:
        return self._view("iptv_mux")

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self._view("iptv_service")

    @property
    def channels(self) -> dict[str, dict[str, Any]]:
        return self._view("channel")

    @property
    def channeltags(self) -> dict[str, dict[str, Any]]:
        return self._view("channeltag")

    @property
    def dvr_entries(self) -> dict[str, dict[str, Any]]:
        return self._view("dvrentry")

    @property
    def dvr_configs(self) -> dict[str, dict[str, Any]]:
        return self._view("dvrconfig")

    @property
    def access_entries(self) -> dict[str, dict[str, Any]]:
        return self._view("access")

    @property
    def passwd_entries(self) -> dict[str, dict[str, Any]]:
        return self._view("passwd")

    @property
    def epggrab_modules(self) -> dict[str, dict[str, Any]]:
        return self._view("epggrab_mod_ext_xmltv", "epggrab_mod_int_xmltv", "epggrab_mod_ota")

    @property
    def epggrab_channels(self) -> dict[str, dict[str, Any]]:
        return self._view("epggrab_channel")

    def of(self, *classes: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.cls.name in classes]

    def row(self, uuid: str) -> dict[str, Any]:
        """The object as a grid row (with the computed fields)."""
        return self.render(self.nodes[uuid])

    # -- generic create / save / delete ----------------------------------------------------------------

    def create(
        self,
        cls_name: str,
        conf: Mapping[str, Any],
        *,
        raw: Mapping[str, Any] | None = None,
        notify: bool = True,
    ) -> Node:
        """Create an object: `conf` is coerced like an API call, `raw` sets fields verbatim (seeding)."""
        cls = CLASSES[cls_name]
        node = Node(new_uuid(), cls, _defaults(cls))
        self._apply(node, conf)
        node.fields.update(raw or {})
        self.nodes[node.uuid] = node
        if notify:
            self.notify_idnode(cls.event, "create", node.uuid)
        return node

    def _apply(self, node: Node, changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            prop = node.cls.prop(key)
            if prop is None or prop.rdonly:
                continue
            if prop.islist:
                items = value if isinstance(value, list) else ([] if value in (None, "") else [value])
                node.fields[key] = [coerce_scalar(prop.type, v) for v in items]
            else:
                node.fields[key] = coerce_scalar(prop.type, value)
            if node.cls.name == "dvrentry" and key in ("disp_title", "disp_subtitle"):
                target = key.removeprefix("disp_")
                node.fields[target] = {"eng": node.fields[key]}

    def save(self, node: Node, changes: Mapping[str, Any]) -> None:
        before = dict(node.fields)
        self._apply(node, changes)
        if node.cls.name == "iptv_mux" and "scan_state" in changes and node.fields["scan_state"] in (1, 2):
            node.fields["scan_state"] = 1
            node.extra["scan_requested"] = True
        if node.cls.name == "channel" and "epggrab" in changes:
            self._relink_epggrab(node)
        if node.cls.name == "dvrentry":
            node.fields["stop"] = max(node.fields["stop"], node.fields["start"])
        if node.cls.name.startswith("epggrab_mod") and before.get("enabled") != node.fields.get("enabled"):
            node.extra["enabled_changed"] = True
        self.notify_idnode(node.cls.event, "change", node.uuid)

    def delete(self, node: Node) -> None:
        self.nodes.pop(node.uuid, None)
        name = node.cls.name
        if name in NETWORK_CLASSES:
            for mux in self.of("iptv_mux"):
                if mux.fields["network_uuid"] == node.uuid:
                    self.delete(mux)
        elif name == "iptv_mux":
            for svc in self.of("iptv_service"):
                if svc.fields["multiplex_uuid"] == node.uuid:
                    self.delete(svc)
        elif name == "iptv_service":
            for ch in self.of("channel"):
                if node.uuid in ch.fields["services"]:
                    ch.fields["services"].remove(node.uuid)
        elif name == "channeltag":
            for ch in self.of("channel"):
                if node.uuid in ch.fields["tags"]:
                    ch.fields["tags"].remove(node.uuid)
        elif name == "channel":
            for ec in self.of("epggrab_channel"):
                if node.uuid in ec.fields["channels"]:
                    ec.fields["channels"].remove(node.uuid)
            for eid in [e for e, ev in self.epg_events.items() if ev["channelUuid"] == node.uuid]:
                del self.epg_events[eid]
        elif name == "dvrentry":
            self.dvr_files.pop(node.uuid, None)
        self.notify_idnode(node.cls.event, "delete", node.uuid)

    # -- seeding helpers -------------------------------------------------------------------------------

    def add_user(self, username: str, password: str | None, rights: Iterable[str]) -> str:
        """Create an access entry (plus a password entry unless `password` is None); returns its uuid."""
        rights = set(rights)
        access = self.create(
            "access",
            {
                "username": username,
                "comment": f"fake user {username}",
                "webui": "webui" in rights or "admin" in rights,
                "admin": "admin" in rights,
                "streaming": ["basic", "advanced", "htsp"] if "streaming" in rights else [],
                "dvr": ["basic", "htsp", "all", "all_rw", "failed"] if "dvr" in rights else [],
                "change": ["change_rights"] if "admin" in rights else [],
            },
            notify=False,
        )
        self._reindex_access(access)
        if password is not None:
            self.create("passwd", {"username": username, "password": password}, notify=False)
        return access.uuid

    def _reindex_access(self, newest: Node) -> None:
        # A new access entry is placed first (index 0); the others move down.
        others = sorted((n for n in self.of("access") if n is not newest), key=lambda n: n.fields["index"])
        newest.fields["index"] = 0
        for i, n in enumerate(others, start=1):
            n.fields["index"] = i

    def add_network(self, name: str = "TIC IPTV", cls: str = "iptv_network", **fields: Any) -> str:
        conf = {"networkname": name, **fields}
        node = self.create(cls, conf, notify=False)
        node.fields["enabled"] = fields.get("enabled", True)
        return node.uuid

    def add_mux(self, network_uuid: str, *, scanned: bool = True, **fields: Any) -> str:
        """Seed a mux; `scanned` makes it look already scanned OK, with its service."""
        node = self._new_mux(self.nodes[network_uuid], fields, notify=False)
        if scanned:
            self.finish_scan(node, notify=False)
        return node.uuid

    def add_channeltag(self, name: str, **fields: Any) -> str:
        return self.create("channeltag", {"name": name, **fields}, notify=False).uuid

    def add_channel(
        self,
        name: str,
        number: int | str = 0,
        *,
        services: Iterable[str] = (),
        tags: Iterable[str] = (),
        **fields: Any,
    ) -> str:
        conf = {"name": name, "number": number, "services": list(services), "tags": list(tags), **fields}
        node = self.create("channel", conf, notify=False)
        node.extra["id"] = numeric_id(node.uuid)
        return node.uuid

    def add_epg_event(self, channel_uuid: str, start: int, stop: int, title: str, **fields: Any) -> int:
        event_id = self._next_event_id
        self._next_event_id += 1
        self.epg_events[event_id] = {
            "eventId": event_id,
            "channelUuid": channel_uuid,
            "start": int(start),
            "stop": int(stop),
            "title": title,
            **fields,
        }
        return event_id

    def add_dvr_entry(
        self, channel_uuid: str, start: int, stop: int, title: str, *, missed: bool = False, **fields: Any
    ) -> str:
        """Seed a DVR entry; one in the past counts as recorded ("Completed OK") unless `missed`."""
        conf = {"channel": channel_uuid, "start": start, "stop": stop, "disp_title": title, **fields}
        node = self.create_dvr_entry(conf, owner="admin", notify=False)
        assert node is not None
        if not missed:
            node.extra.pop("missed", None)
        return node.uuid

    def remove_dvr_file(self, uuid: str) -> None:
        """Simulate the recording file vanishing from disk (the entry moves to grid_removed)."""
        node = self.nodes[uuid]
        node.fields["fileremoved"] = 1
        self.dvr_files.pop(uuid, None)

    # -- networks, muxes, services, scans ------------------------------------------------------------

    def _new_mux(self, network: Node, conf: Mapping[str, Any], *, notify: bool = True) -> Node:
        now = int(self.now())
        node = self.create("iptv_mux", conf, notify=notify)
        node.fields.update(network_uuid=network.uuid, created=now)
        if not network.fields.get("skipinitscan", True) and node.fields["enabled"] == 1:
            node.fields["scan_state"] = 1
            node.extra["scan_requested"] = True
        return node

    def finish_scan(self, mux: Node, *, notify: bool = True) -> None:
        """Complete a scan: a URL containing "404" fails; otherwise the mux gets its one service."""
        now = int(self.now())
        mux.extra.pop("scan_requested", None)
        mux.fields.update(scan_state=0, scan_last=now)
        if not mux.fields["scan_first"]:
            mux.fields["scan_first"] = now
        if "404" in mux.fields["iptv_url"]:
            mux.fields["scan_result"] = 2
        else:
            mux.fields.update(scan_result=1, onid=65281)
            if mux.fields["tsid"] == 65536:
                mux.fields["tsid"] = self._next_sid
            if not any(s.fields["multiplex_uuid"] == mux.uuid for s in self.of("iptv_service")):
                sid = self._next_sid
                self._next_sid += 1
                svc = self.create(
                    "iptv_service",
                    {"svcname": mux.fields["iptv_sname"] or f"Service {sid}", "provider": "TIC"},
                    raw={"multiplex_uuid": mux.uuid, "sid": sid, "created": now, "last_seen": now},
                    notify=False,
                )
                svc.extra["verified"] = True
                if notify:
                    self.notify({"create": [svc.uuid], "notificationClass": "service_raw"})
                    self.notify_idnode("service", "create", svc.uuid)
        if notify:
            self.notify_idnode("mpegts_mux", "change", mux.uuid)

    def map_services(self, services: list[str], options: Mapping[str, Any]) -> dict[str, int]:
        """Run the service mapper over `services`: one channel per service, named after iptv_sname."""
        status = {"total": len(services), "ok": 0, "fail": 0, "ignore": 0}
        mapped = {s for ch in self.of("channel") for s in ch.fields["services"]}
        for suuid in services:
            svc = self.nodes.get(suuid)
            if svc is None or svc.cls.name != "iptv_service" or not svc.fields["enabled"]:
                status["fail"] += 1
                continue
            if suuid in mapped:
                status["ignore"] += 1
                continue
            mux = self.nodes.get(svc.fields["multiplex_uuid"])
            mux_fields = mux.fields if mux else {}
            name = mux_fields.get("iptv_sname") or svc.fields["svcname"]
            tag_names: list[str] = []
            if options.get("type_tags", True):
                tag_names += ["TV channels", "SDTV"]
            if options.get("provider_tags") and svc.fields["provider"]:
                tag_names.append(svc.fields["provider"])
            if options.get("network_tags") and mux:
                net = self.nodes.get(mux.fields["network_uuid"])
                if net:
                    tag_names.append(net.fields["networkname"])
            tag_names += [t.strip() for t in re.split(r"[\n,]", mux_fields.get("iptv_tags", "")) if t.strip()]
            tags = [self._tag_by_name(t) for t in dict.fromkeys(tag_names)]
            existing = None
            if options.get("merge_same_name"):
                existing = next((c for c in self.of("channel") if c.fields["name"] == name), None)
            if existing is not None:
                existing.fields["services"].append(suuid)
                self.notify_idnode("channel", "change", existing.uuid)
            else:
                ch = self.create(
                    "channel",
                    {
                        "name": name,
                        "number": mux_fields.get("channel_number", 0),
                        "services": [suuid],
                        "tags": tags,
                        "autoname": True,
                    },
                )
                ch.extra["id"] = numeric_id(ch.uuid)
            mapped.add(suuid)
            status["ok"] += 1
        return status

    def _tag_by_name(self, name: str) -> str:
        for tag in self.of("channeltag"):
            if tag.fields["name"] == name:
                return tag.uuid
        return self.create("channeltag", {"name": name}).uuid

    # -- rendering -----------------------------------------------------------------------------------

    def _index(self) -> _Index:
        idx = _Index()
        for n in self.nodes.values():
            name = n.cls.name
            if name == "iptv_mux":
                idx.muxes_by_net.setdefault(n.fields["network_uuid"], []).append(n.uuid)
            elif name == "iptv_service":
                idx.svcs_by_mux.setdefault(n.fields["multiplex_uuid"], []).append(n.uuid)
            elif name == "channel":
                for suuid in n.fields["services"]:
                    idx.chans_by_svc.setdefault(suuid, []).append(n.uuid)
            elif name == "epggrab_channel":
                for cuuid in n.fields["channels"]:
                    idx.grabs_by_chan.setdefault(cuuid, []).append(n.uuid)
        return idx

    def render(self, node: Node, idx: _Index | None = None) -> dict[str, Any]:
        """The object as the API shows it: stored fields plus the computed ones, in class order."""
        row: dict[str, Any] = {"uuid": node.uuid}
        computed = self._computed(node, idx or self._index())
        for p in node.cls.props:
            value = computed.get(p.id, node.fields.get(p.id, p.default))
            if p.omit_empty and value in ("", None):
                continue
            row[p.id] = copy.deepcopy(value)
        return row

    def render_many(self, nodes: Iterable[Node]) -> list[dict[str, Any]]:
        idx = self._index()
        return [self.render(n, idx) for n in nodes]

    def _computed(self, node: Node, idx: _Index) -> dict[str, Any]:
        name = node.cls.name
        f = node.fields
        if name in NETWORK_CLASSES:
            muxes = idx.muxes_by_net.get(node.uuid, [])
            svcs = [s for m in muxes for s in idx.svcs_by_mux.get(m, [])]
            return {
                "num_mux": len(muxes),
                "num_svc": len(svcs),
                "num_chn": len({c for s in svcs for c in idx.chans_by_svc.get(s, [])}),
                "scanq_length": sum(1 for m in muxes if self.nodes[m].fields["scan_state"] in (1, 2)),
            }
        if name == "iptv_mux":
            net = self.nodes.get(f["network_uuid"])
            svcs = idx.svcs_by_mux.get(node.uuid, [])
            return {
                "network": net.fields["networkname"] if net else "",
                "name": f["iptv_muxname"] or f["iptv_url"],
                "num_svc": len(svcs),
                "num_chn": len({c for s in svcs for c in idx.chans_by_svc.get(s, [])}),
            }
        if name == "iptv_service":
            mux = self.nodes.get(f["multiplex_uuid"])
            net = self.nodes.get(mux.fields["network_uuid"]) if mux else None
            return {
                "network": net.fields["networkname"] if net else "",
                "multiplex": (mux.fields["iptv_muxname"] or mux.fields["iptv_url"]) if mux else "",
                "channel": list(idx.chans_by_svc.get(node.uuid, [])),
            }
        if name == "channel":
            return {
                "name": f["name"] or "{name-not-set}",
                "epggrab": list(idx.grabs_by_chan.get(node.uuid, [])),
            }
        if name == "passwd":
            secret = base64.b64encode(f"TVHeadend-Hide-{f['password']}".encode()).decode()
            return {"password2": secret}
        if name == "dvrentry":
            return self._dvr_computed(node)
        return {}

    # -- DVR -----------------------------------------------------------------------------------------

    def create_dvr_entry(self, conf: Mapping[str, Any], *, owner: str, notify: bool = True) -> Node | None:
        if "channel" not in conf:
            return None
        conf = dict(conf)
        channel = self.nodes.get(str(conf["channel"]))
        invalid = channel is None or channel.cls.name != "channel"
        if invalid:
            conf["channel"] = ""
        config_name = str(conf.get("config_name") or "")
        if config_name not in self.nodes:
            conf["config_name"] = self.default_dvr_config
        node = self.create("dvrentry", conf, notify=notify)
        f = node.fields
        f["stop"] = max(f["stop"], f["start"])
        f.update(owner=owner, creator=owner, create=int(self.now()))
        node.extra["invalid"] = invalid
        _start_real, stop_real = self._dvr_window(node)
        if not invalid and stop_real <= self.now():
            node.extra["missed"] = True
        return node

    def _dvr_window(self, node: Node) -> tuple[int, int]:
        f = node.fields
        config = self.nodes.get(f["config_name"])
        warm = config.fields["warm-time"] if config else 30
        start_real = f["start"] - warm - f["start_extra"] * 60
        stop_real = f["stop"] + f["stop_extra"] * 60
        return start_real, stop_real

    def dvr_state(self, node: Node) -> tuple[str, str]:
        """(status, sched_status) of an entry at the fake's current time."""
        x = node.extra
        start_real, stop_real = self._dvr_window(node)
        now = self.now()
        if x.get("invalid"):
            return "Invalid", "unknown"
        if x.get("missed"):
            return "Time missed", "completedError"
        if x.get("aborted_at") is not None:
            return "Aborted by user", "completedError"
        if x.get("stopped_at") is not None or now >= stop_real:
            if node.fields["fileremoved"]:
                return "File missing", "completed"
            return "Completed OK", "completed"
        if now < start_real or not node.fields["enabled"]:
            return "Scheduled for recording", "scheduled"
        return "Running", "recording"

    def dvr_file_bytes(self, node: Node) -> bytes | None:
        """The recording file as it is now (it grows while recording), or None when there is none."""
        _status, sched = self.dvr_state(node)
        if node.fields["fileremoved"] or sched in ("scheduled", "unknown") or node.extra.get("missed"):
            return None
        start_real, stop_real = self._dvr_window(node)
        end = node.extra.get("aborted_at") or node.extra.get("stopped_at") or self.now()
        if end < start_real:
            return None
        payload = self.dvr_files.get(node.uuid, self.dvr_payload)
        fraction = (end - start_real) / max(1, stop_real - start_real)
        if fraction >= 1.0:
            return payload
        size = int(len(payload) * fraction) // TS_PACKET_SIZE * TS_PACKET_SIZE
        return payload[: max(size, TS_PACKET_SIZE)]

    def _dvr_computed(self, node: Node) -> dict[str, Any]:
        f = node.fields
        status, sched = self.dvr_state(node)
        start_real, stop_real = self._dvr_window(node)
        channel = self.nodes.get(f["channel"])
        data = self.dvr_file_bytes(node)
        title = _first_lang(f["title"])
        subtitle = _first_lang(f["subtitle"])
        computed: dict[str, Any] = {
            "start_real": start_real,
            "stop_real": stop_real,
            "duration": stop_real - f["start"],
            "channelname": channel.fields["name"] if channel else "",
            "disp_title": title,
            "disp_subtitle": subtitle,
            "disp_summary": _first_lang(f["summary"]),
            "disp_description": _first_lang(f["description"]),
            "disp_extratext": subtitle,
            "status": status,
            "sched_status": sched,
            "filesize": len(data) if data is not None else 0,
            "filename": "",
        }
        if data is not None or f["fileremoved"]:
            storage = self.nodes[f["config_name"]].fields["storage"] if f["config_name"] in self.nodes else ""
            computed["filename"] = f"{storage}/{title or 'recording'}.ts"
        if data is not None:
            computed["url"] = f"dvrfile/{node.uuid}"
        return computed

    # -- EPG -----------------------------------------------------------------------------------------

    def epg_rows(self) -> list[dict[str, Any]]:
        by_channel: dict[str, list[dict[str, Any]]] = {}
        for ev in self.epg_events.values():
            by_channel.setdefault(ev["channelUuid"], []).append(ev)
        dvr_by_event = {n.fields["broadcast"]: n for n in self.of("dvrentry") if n.fields["broadcast"]}
        rows = []
        for channel_uuid, events in by_channel.items():
            channel = self.nodes.get(channel_uuid)
            events.sort(key=lambda e: e["start"])
            for i, ev in enumerate(events):
                row = {
                    "eventId": ev["eventId"],
                    "channelName": channel.fields["name"] if channel else "",
                    "channelUuid": channel_uuid,
                    "channelNumber": str(channel.fields["number"]) if channel else "0",
                    **{k: v for k, v in ev.items() if k not in ("eventId", "channelUuid")},
                }
                if i + 1 < len(events):
                    row["nextEventId"] = events[i + 1]["eventId"]
                dvr = dvr_by_event.get(ev["eventId"])
                if dvr is not None:
                    row["dvrUuid"] = dvr.uuid
                    row["dvrState"] = self.dvr_state(dvr)[1]
                rows.append(row)
        return rows

    def import_xmltv(self, data: bytes) -> tuple[int, int]:
        """Import an XMLTV document as the External XMLTV grabber would: returns (channels new, events new).

        Like the real server, the push that introduces a channel id only creates and links the
        grabber channel; that channel's programmes are imported on the next push.
        """
        root = ET.fromstring(data)
        module = next((n for n in self.of("epggrab_mod_ext_xmltv")), None)
        sock_path = module.fields["path"] if module else ""
        known = {n.fields["id"]: n for n in self.of("epggrab_channel") if n.fields["modid"] == "xmltv"}
        introduced: set[str] = set()
        new_channels = 0
        for el in root.findall("channel"):
            cid = el.get("id", "")
            names = [d.text or "" for d in el.findall("display-name")]
            if cid in known:
                continue
            linked = self._auto_link(cid, names)
            node = self.create(
                "epggrab_channel",
                {"id": cid, "name": names[0] if names else cid, "channels": linked},
                raw={
                    "modid": "xmltv",
                    "module": "XMLTV",
                    "path": sock_path,
                    "updated": int(self.now()),
                    "names": " ".join(f'"{n}"' for n in names),
                },
            )
            known[cid] = node
            introduced.add(cid)
            new_channels += 1
        new_events = 0
        for el in root.findall("programme"):
            cid = el.get("channel", "")
            grab = known.get(cid)
            if grab is None or cid in introduced or not grab.fields["enabled"]:
                continue
            try:
                start = int(datetime.strptime(el.get("start", ""), "%Y%m%d%H%M%S %z").timestamp())
                stop = int(datetime.strptime(el.get("stop", ""), "%Y%m%d%H%M%S %z").timestamp())
            except ValueError:
                continue
            extra: dict[str, Any] = {}
            for tag, key in (("sub-title", "subtitle"), ("desc", "description")):
                child = el.find(tag)
                if child is not None and child.text:
                    extra[key] = child.text
            for ep in el.findall("episode-num"):
                if ep.get("system") == "xmltv_ns" and ep.text:
                    parts = [*ep.text.split("."), "", ""][:2]
                    if parts[0].strip().isdigit():
                        extra["seasonNumber"] = int(parts[0]) + 1
                    if parts[1].strip().split("/")[0].isdigit():
                        extra["episodeNumber"] = int(parts[1].split("/")[0]) + 1
                elif ep.get("system") == "onscreen" and ep.text:
                    extra["episodeOnscreen"] = ep.text
            title = el.findtext("title") or ""
            for channel_uuid in grab.fields["channels"]:
                existing = next(
                    (
                        e
                        for e in self.epg_events.values()
                        if e["channelUuid"] == channel_uuid and e["start"] == start
                    ),
                    None,
                )
                if existing is not None:
                    existing.update(stop=stop, title=title, **extra)
                else:
                    self.add_epg_event(channel_uuid, start, stop, title, **extra)
                    new_events += 1
        return new_channels, new_events

    def _auto_link(self, epg_id: str, names: list[str]) -> list[str]:
        linked = []
        lowered = {n.lower() for n in names}
        for ch in self.of("channel"):
            if not ch.fields["epgauto"]:
                continue
            epgids = set()
            for suuid in ch.fields["services"]:
                svc = self.nodes.get(suuid)
                mux = self.nodes.get(svc.fields["multiplex_uuid"]) if svc else None
                if mux is not None and mux.fields["iptv_epgid"]:
                    epgids.add(mux.fields["iptv_epgid"])
            if epg_id in epgids or ch.fields["name"].lower() in lowered:
                linked.append(ch.uuid)
        return linked

    def _relink_epggrab(self, channel: Node) -> None:
        wanted = set(channel.fields.pop("epggrab", []))
        channel.fields["epggrab"] = []
        for ec in self.of("epggrab_channel"):
            links = ec.fields["channels"]
            if ec.uuid in wanted and channel.uuid not in links:
                links.append(channel.uuid)
            elif ec.uuid not in wanted and channel.uuid in links:
                links.remove(channel.uuid)

    def _seed_epggrab_modules(self) -> None:
        path = str(self.config_dir / "epggrab" / "xmltv.sock")
        for cls, name, kind, enabled, mod_path, title in (
            ("epggrab_mod_ext_xmltv", "XMLTV", "External", False, path, "External: XMLTV"),
            (
                "epggrab_mod_ota",
                "EIT: EPG Grabber",
                "Over-the-air",
                True,
                "",
                "Over-the-air: EIT: EPG Grabber",
            ),
            (
                "epggrab_mod_ota",
                "ATSC PSIP: EPG Grabber",
                "Over-the-air",
                True,
                "",
                "Over-the-air: ATSC PSIP: EPG Grabber",
            ),
            (
                "epggrab_mod_int_xmltv",
                "XMLTV: tv_grab_file is a simple grabber",
                "Internal",
                False,
                "/usr/bin/tv_grab_file",
                "Internal: XMLTV: tv_grab_file is a simple grabber",
            ),
        ):
            node = self.create(
                cls, {"enabled": enabled}, raw={"name": name, "type": kind, "path": mod_path}, notify=False
            )
            node.extra["title"] = title

    # -- users and rights ------------------------------------------------------------------------------

    def password_of(self, username: str) -> str | None:
        for n in self.of("passwd"):
            if n.fields["enabled"] and n.fields["username"] == username:
                return str(n.fields["password"])
        return None

    def rights_for(self, username: str | None, address: str) -> frozenset[str]:
        rights: set[str] = set()
        for n in sorted(self.of("access"), key=lambda n: n.fields["index"]):
            f = n.fields
            if not f["enabled"] or not _prefix_matches(f["prefix"], address):
                continue
            if f["username"] != "*" and f["username"] != username:
                continue
            if f["admin"]:
                rights |= {"admin", "webui"}
            if f["webui"]:
                rights.add("webui")
            if f["streaming"]:
                rights.add("streaming")
            if f["dvr"]:
                rights.add("dvr")
        return frozenset(rights)

    # -- comet -----------------------------------------------------------------------------------------

    def notify(self, message: dict[str, Any]) -> None:
        """Queue a comet message for every mailbox (poll and websocket)."""
        for box in self.mailboxes.values():
            box.messages.append(copy.deepcopy(message))
            box.wakeup.set()

    def notify_idnode(self, event: str, action: str, uuid: str) -> None:
        # Pending change notifications of one class merge into one message, as on the real server.
        for box in self.mailboxes.values():
            msg = next(
                (m for m in box.messages if m.get("notificationClass") == event and m.get("_idnode")),
                None,
            )
            if msg is None:
                msg = {"_idnode": True, "notificationClass": event}
                box.messages.append(msg)
            actions = [action] if action != "create" else ["create", "change"]
            for act in actions:
                msg.setdefault(act, [])
                if uuid not in msg[act]:
                    msg[act].append(uuid)
            box.wakeup.set()

    def drain(self, box: Mailbox) -> list[dict[str, Any]]:
        out = []
        for m in box.messages:
            m = dict(m)
            m.pop("_idnode", None)
            # Key order as observed: the action lists first, then the class.
            cls = m.pop("notificationClass", None)
            if cls is not None:
                m["notificationClass"] = cls
            out.append(m)
        box.messages.clear()
        box.wakeup.clear()
        return out


def _prefix_matches(prefix: str, address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    for part in prefix.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ip in ipaddress.ip_network(part, strict=False):
                return True
        except ValueError:
            continue
    return False


# ---------------------------------------------------------------------------------------------------
# Grid queries
# ---------------------------------------------------------------------------------------------------


def _matches(row: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    value = row.get(str(flt.get("field")))
    kind = flt.get("type", "string")
    want = flt.get("value")
    if kind == "string":
        if not isinstance(value, str | int) or isinstance(value, bool):
            return False
        try:
            return re.search(str(want), str(value), re.IGNORECASE) is not None
        except re.error:
            return False
    if kind == "numeric":
        try:
            left, right = float(value), float(want)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        comparison = flt.get("comparison", "eq")
        return {"gt": left > right, "lt": left < right}.get(comparison, left == right)
    if kind == "boolean":
        return bool(value) == coerce_scalar("bool", want)
    return True


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        try:
            return (0, float(value))
        except ValueError:
            return (1, value.lower())
    return (2, json.dumps(value, sort_keys=True))


def run_grid(
    rows: list[dict[str, Any]],
    args: Mapping[str, str],
    *,
    count_key: str = "total",
    default_sort: str | None = None,
) -> dict[str, Any]:
    """Apply filter, sort, paging and `list` like TVHeadend's grid endpoints."""
    if "filter" in args:
        try:
            filters = json.loads(args["filter"])
        except ValueError as exc:
            raise HttpError(400) from exc
        if isinstance(filters, dict):
            filters = [filters]
        if not isinstance(filters, list):
            raise HttpError(400)
        rows = [r for r in rows if all(_matches(r, f) for f in filters if isinstance(f, dict))]
    sort = args.get("sort") or default_sort
    # Without a sort the order is the server's internal one (by uuid here): stable, not creation order.
    if sort:
        rows.sort(
            key=lambda r: (_sort_key(r.get(sort)), str(r.get("uuid", ""))),
            reverse=args.get("dir", "ASC").upper() == "DESC",
        )
    else:
        rows.sort(key=lambda r: str(r.get("uuid", r.get("eventId", ""))))
    total = len(rows)
    start = max(0, int(coerce_scalar("int", args.get("start", "0"))))
    limit = int(coerce_scalar("int", args.get("limit", "50"))) if "limit" in args else 50
    page = rows[start : start + limit] if limit > 0 else rows[start:]
    if args.get("list"):
        names = [n.strip() for n in args["list"].split(",") if n.strip()]
        exclude = {n[1:] for n in names if n.startswith("-")}
        include = [n for n in names if not n.startswith("-")]
        if include:
            page = [{k: v for k, v in r.items() if k == "uuid" or k in include} for r in page]
        if exclude:
            page = [{k: v for k, v in r.items() if k not in exclude} for r in page]
    if count_key == "totalCount":
        return {"totalCount": total, "entries": page}
    return {"entries": page, "total": total}


# ---------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------


class Call(NamedTuple):
    """One API call the fake handled (after authentication): path is relative to the HTTP root."""

    method: str
    path: str
    args: dict[str, str]

    def json_arg(self, name: str) -> Any:
        return json.loads(self.args[name])


class RequestRecord(NamedTuple):
    """Every HTTP request the fake saw, with the status it answered (0 = connection dropped)."""

    method: str
    path: str
    status: int
    auth_scheme: str
    #: The digest algorithm the client answered with ("" unless Digest).
    algorithm: str = ""


@dataclass
class _Fault:
    status: int | None = None
    body: str | None = None
    content_type: str = "text/html"
    delay: float = 0.0
    drop: bool = False


@dataclass
class _Ctx:
    request: web.Request
    args: dict[str, str]
    principal: Principal
    path: str


Handler = Callable[[_Ctx], Awaitable[Any]]
_DROPPED = web.RequestKey("dropped", bool)
_WRITE_SUFFIXES = (
    "create",
    "create_by_event",
    "mux_create",
    "save",
    "delete",
    "stop",
    "cancel",
    "remove",
    "scan",
    "moveup",
    "movedown",
    "rename",
)


class FakeTvheadend:
    """A real aiohttp server on 127.0.0.1 that behaves like TVHeadend's HTTP API (see tvheadend-api.md)."""

    def __init__(
        self,
        *,
        http_root: str = "/tic-tvh",
        auth_mode: int = 1,
        users: Mapping[str, tuple[str | None, Iterable[str]]] | None = None,
        anonymous_rights: Iterable[str] = (),
        port: int = 0,
        scan_delay: float = 0.2,
        mapper_delay: float = 0.05,
        empty_stream_delay: float = 0.2,
        comet_ws_interval: float = 1.0,
        comet_poll_timeout: float = 10.0,
        nonce_lifetime: float = 30.0,
        nonce_use_lifetime: float = 120.0,
        stream_interval: float = 0.005,
        dvr_payload: bytes | None = None,
        config_dir: Path | None = None,
    ) -> None:
        self.http_root = "/" + http_root.strip("/") if http_root.strip("/") else ""
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if config_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="fake-tvh-")
            config_dir = Path(self._tmpdir.name)
        self.state = TvhState(dvr_payload=dvr_payload or ts_packets(2000), config_dir=config_dir)
        self.state.config["digest"] = auth_mode
        if users is None:
            users = {"admin": ("admin", {"admin", "dvr", "streaming", "webui"})}
        for name, (password, rights) in users.items():
            self.state.add_user(name, password, rights)
        anonymous = set(anonymous_rights)
        if anonymous:
            self.state.add_user("*", None, anonymous)
        self.scan_delay = scan_delay
        self.mapper_delay = mapper_delay
        self.empty_stream_delay = empty_stream_delay
        self.comet_ws_interval = comet_ws_interval
        self.comet_poll_timeout = comet_poll_timeout
        self.nonce_lifetime = nonce_lifetime
        self.nonce_use_lifetime = nonce_use_lifetime
        self.stream_interval = stream_interval
        self.response_delay = 0.0
        self.calls: list[Call] = []
        self.requests: list[RequestRecord] = []
        self.open_streams = 0
        self.streams_started = 0
        self.challenges_sent = 0
        self._requested_port = port
        self.port = 0
        self._nonces: dict[str, float] = {}
        self._opaque = hashlib.md5(secrets.token_bytes(8)).hexdigest()
        self._tickets: dict[str, tuple[str, float, Principal]] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._xmltv_server: asyncio.AbstractServer | None = None
        self._websockets: set[web.WebSocketResponse] = set()
        self._routes = self._api_routes()

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> FakeTvheadend:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(self._on_prepare)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._requested_port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._spawn(self._background_loop())
        return self

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for ws in list(self._websockets):
            await ws.close()
        await self._stop_xmltv_socket()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def __aenter__(self) -> FakeTvheadend:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.http_root}"

    @property
    def open_connections(self) -> int:
        """HTTP connections currently open to the fake (keep-alive ones included)."""
        if self._runner is None or self._runner.server is None:
            return 0
        return len(self._runner.server.connections)

    @property
    def xmltv_socket_path(self) -> str:
        return str(self.state.config_dir / "epggrab" / "xmltv.sock")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- fault injection and call log ------------------------------------------------------------------

    def _norm(self, path: str) -> str:
        path = re.sub(r"/{2,}", "/", "/" + path.lstrip("/"))
        if self.http_root and path.startswith(self.http_root + "/"):
            path = path[len(self.http_root) :]
        return path.lstrip("/")

    def fail_next(
        self,
        path: str,
        status: int,
        *,
        body: str | None = None,
        content_type: str = "text/html",
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `path` with `status` (HTML error page, or `body`)."""
        for _ in range(times):
            self._faults.setdefault(self._norm(path), deque()).append(
                _Fault(status=status, body=body, content_type=content_type)
            )

    def drop_next(self, path: str) -> None:
        """Apply the next call of `path`, then close the connection without answering (a lost reply)."""
        self._faults.setdefault(self._norm(path), deque()).append(_Fault(drop=True))

    def delay_next(self, path: str, seconds: float) -> None:
        """Wait `seconds` before handling the next call of `path` (the change still applies afterwards)."""
        self._faults.setdefault(self._norm(path), deque()).append(_Fault(delay=seconds))

    def write_calls(self) -> list[Call]:
        """API calls that change something (creates, saves, deletes, DVR actions, scans)."""
        return [
            c
            for c in self.calls
            if c.path.startswith("api/") and c.path.rsplit("/", 1)[-1] in _WRITE_SUFFIXES
        ]

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == self._norm(path)]

    def clear_calls(self) -> None:
        self.calls.clear()
        self.requests.clear()

    def expire_nonces(self) -> None:
        """Forget every digest nonce, as if they had all timed out."""
        self._nonces.clear()

    def notify(self, notification_class: str, **fields: Any) -> None:
        """Queue an arbitrary comet message (e.g. a `logmessage`) for every mailbox."""
        self.state.notify({**fields, "notificationClass": notification_class})

    # -- request pipeline ----------------------------------------------------------------------------

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = str(self.state.config.get("http_server_name") or "HTS/tvheadend")
        origin = self.state.config.get("cors_origin")
        if origin:
            response.headers["Access-Control-Allow-Origin"] = str(origin)
            response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "x-requested-with,authorization,content-type"
            response.headers["Access-Control-Allow-Credentials"] = "true"

    def _drop(self, request: web.Request) -> web.Response:
        # Closing the transport before any byte is written is how the real server "answers" these.
        request[_DROPPED] = True
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=200)

    def _redirect(self, location: str) -> web.Response:
        return web.Response(status=302, headers={"Location": location}, text="", content_type="text/html")

    def _record(self, request: web.Request, path: str, status: int) -> None:
        scheme, _, rest = request.headers.get("Authorization", "").partition(" ")
        algorithm = (
            parse_auth_params(rest).get("algorithm", "MD5").upper() if scheme.lower() == "digest" else ""
        )
        self.requests.append(RequestRecord(request.method, path, status, scheme.lower(), algorithm))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = re.sub(r"/{2,}", "/", request.raw_path.split("?", 1)[0])
        response = await self._handle_inner(request, path)
        self._record(request, path, 0 if request.get(_DROPPED) else response.status)
        return response

    async def _handle_inner(self, request: web.Request, path: str) -> web.StreamResponse:
        method = request.method
        if method == "OPTIONS":
            return web.Response(status=200, body=b"")
        if method not in ("GET", "POST", "HEAD"):
            return self._drop(request)
        if method == "POST" and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return self._drop(request)
        args = await self._read_args(request)
        rel = self._relative(path)
        if rel == "ping":
            return web.Response(text="PONG", content_type="text/plain")
        auth = self._authenticate(request, rel, args)
        if isinstance(auth, web.Response):
            return auth
        principal = auth
        if rel is None:
            if not principal.authenticated and not principal.rights:
                return self._challenge()
            return self._redirect(self.http_root + path)
        if not principal.rights:
            return self._challenge() if not principal.authenticated else html_error(403)
        if rel == "":
            return self._redirect("extjs.html")
        self.calls.append(Call(method, rel, dict(args)))
        fault = self._faults.get(rel)
        current = fault.popleft() if fault else None
        if fault is not None and not fault:
            del self._faults[rel]
        delay = self.response_delay + (current.delay if current else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if current is not None and current.status is not None:
            if current.body is not None:
                return web.Response(
                    status=current.status, text=current.body, content_type=current.content_type
                )
            return html_error(current.status)
        try:
            response = await self._route(_Ctx(request, args, principal, rel))
        except HttpError as exc:
            response = html_error(exc.status)
        if current is not None and current.drop:
            return self._drop(request)
        return response

    def _relative(self, path: str) -> str | None:
        if not self.http_root:
            return path.lstrip("/")
        if path == self.http_root:
            return ""
        if path.startswith(self.http_root + "/"):
            return path[len(self.http_root) + 1 :]
        return None

    async def _read_args(self, request: web.Request) -> dict[str, str]:
        if request.method in ("GET", "HEAD"):
            return {k: v for k, v in reversed(list(request.query.items()))}
        body = await request.read()
        # POST arguments come only from a form-urlencoded body; the query string and JSON are ignored.
        if request.content_type != "application/x-www-form-urlencoded":
            return {}
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v for k, v in reversed(pairs)}

    async def _route(self, ctx: _Ctx) -> web.StreamResponse:
        path = ctx.path
        if path.startswith("api/"):
            route = self._routes.get(path[4:])
            if route is None:
                raise HttpError(404)
            handler, right = route
            self._require(ctx.principal, right)
            result = await handler(ctx)
            return result if isinstance(result, web.StreamResponse) else json_response(result)
        head, _, rest = path.partition("/")
        if head == "comet":
            self._require(ctx.principal, "webui")
            if rest == "poll":
                return json_response(await self._comet_poll(ctx))
            if rest == "ws":
                return await self._comet_ws(ctx)
            if rest == "debug":
                return json_response({})
            raise HttpError(404)
        if head == "stream":
            self._require(ctx.principal, "streaming")
            return await self._stream(ctx, rest)
        if head == "playlist":
            self._require(ctx.principal, "streaming")
            return self._playlist(ctx, rest)
        if head == "dvrfile":
            self._require(ctx.principal, "dvr")
            return await self._dvrfile(ctx, rest)
        if path == "xmltv/channels":
            self._require(ctx.principal, "streaming")
            return self._xmltv_channels()
        if path == "extjs.html":
            return web.Response(text=EXTJS_PAGE, content_type="text/html")
        if path == "login":
            return web.Response(text="<html><body>Tvheadend</body></html>", content_type="text/html")
        raise HttpError(404)

    def _require(self, principal: Principal, right: str) -> None:
        if right not in principal.rights:
            raise HttpError(403 if principal.authenticated else 401)

    # -- authentication --------------------------------------------------------------------------------

    def _authenticate(
        self, request: web.Request, rel: str | None, args: Mapping[str, str]
    ) -> Principal | web.Response:
        address = request.remote or "127.0.0.1"
        header = request.headers.get("Authorization", "")
        ticket = args.get("ticket") if request.method in ("GET", "HEAD") else None
        if ticket and rel is not None:
            entry = self._tickets.get(ticket)
            if entry is not None and entry[1] > time.monotonic() and ("/" + rel).startswith(entry[0]):
                return entry[2]
        if not header:
            return Principal(None, self.state.rights_for(None, address))
        mode = int(self.state.config["digest"])
        scheme, _, rest = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and mode in (0, 2):
            try:
                decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return self._challenge()
            username, _, password = decoded.partition(":")
            stored = self.state.password_of(username)
            if stored is None or not secrets.compare_digest(stored.encode(), password.encode()):
                return html_error(403)
            return Principal(username, self.state.rights_for(username, address))
        if scheme == "digest" and mode in (1, 2):
            params = parse_auth_params(rest)
            nonce = params.get("nonce", "")
            expiry = self._nonces.get(nonce)
            now = time.monotonic()
            if expiry is None or expiry < now:
                self._nonces.pop(nonce, None)
                return self._challenge()
            username = params.get("username", "")
            stored = self.state.password_of(username)
            hash_fn = _DIGEST_HASHES.get(params.get("algorithm", "MD5").upper())
            if stored is None or hash_fn is None:
                return html_error(403)
            ha1 = hash_fn(f"{username}:{params.get('realm', '')}:{stored}".encode())
            ha2 = hash_fn(f"{request.method}:{params.get('uri', '')}".encode())
            if params.get("qop"):
                expected = hash_fn(
                    ":".join(
                        (ha1, nonce, params.get("nc", ""), params.get("cnonce", ""), params["qop"], ha2)
                    ).encode()
                )
            else:
                expected = hash_fn(f"{ha1}:{nonce}:{ha2}".encode())
            if not secrets.compare_digest(expected, params.get("response", "")):
                return html_error(403)
            self._nonces[nonce] = now + self.nonce_use_lifetime
            return Principal(username, self.state.rights_for(username, address))
        return self._challenge()

    def _challenge(self) -> web.Response:
        self.challenges_sent += 1
        root = self.http_root
        resp = html_error(
            401, f'<P><A HREF="{root}/">Default login</A></P><P><A HREF="{root}/login">New login</A></P>'
        )
        realm = self.state.config.get("http_realm_name") or "tvheadend"
        if int(self.state.config["digest"]) == 0:
            resp.headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
            return resp
        now = time.monotonic()
        for stale in [n for n, exp in self._nonces.items() if exp < now]:
            del self._nonces[stale]
        nonce = secrets.token_hex(20)
        self._nonces[nonce] = now + self.nonce_lifetime
        algorithms = {1: ["SHA-256", "MD5"], 2: ["SHA-512-256", "MD5"]}.get(
            int(self.state.config.get("digest_algo", 0)), ["MD5"]
        )
        for algorithm in algorithms:
            algo = f", algorithm={algorithm}" if len(algorithms) > 1 else ""
            resp.headers.add(
                "WWW-Authenticate",
                f'Digest realm="{realm}", qop=auth, nonce="{nonce}", opaque="{self._opaque}"{algo}',
            )
        return resp

    # -- argument helpers ------------------------------------------------------------------------------

    @staticmethod
    def _json_arg(args: Mapping[str, str], name: str) -> Any:
        if name not in args:
            raise HttpError(400)
        try:
            return json.loads(args[name])
        except ValueError as exc:
            raise HttpError(400) from exc

    @staticmethod
    def _uuids_arg(args: Mapping[str, str], name: str = "uuid") -> tuple[list[str], bool]:
        """A uuid argument: a plain string or a JSON array. Returns (uuids, was_array)."""
        raw = args[name].strip()
        if raw.startswith("["):
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise HttpError(400) from exc
            return [str(v) for v in value], True
        if raw.startswith('"'):
            with contextlib.suppress(ValueError):
                return [str(json.loads(raw))], False
        return [raw], False

    def _node(self, uuid: str, *classes: str) -> Node | None:
        node = self.state.nodes.get(uuid)
        if node is None or (classes and node.cls.name not in classes):
            return None
        return node

    def _grid(self, nodes: Iterable[Node], args: Mapping[str, str], **kw: Any) -> dict[str, Any]:
        return run_grid(self.state.render_many(nodes), args, **kw)

    def _can(self, principal: Principal, node: Node) -> bool:
        return node.cls.right in principal.rights

    # -- API routes ----------------------------------------------------------------------------------

    def _api_routes(self) -> dict[str, tuple[Handler, str]]:
        r: dict[str, tuple[Handler, str]] = {
            "serverinfo": (self._serverinfo, "webui"),
            "pathlist": (self._pathlist, "webui"),
            "classes": (self._classes, "webui"),
            "config/capabilities": (self._capabilities, "webui"),
            "config/load": (self._config_load, "admin"),
            "config/save": (self._config_save, "admin"),
            "idnode/load": (self._idnode_load, "webui"),
            "idnode/save": (self._idnode_save, "webui"),
            "idnode/delete": (self._idnode_delete, "webui"),
            "idnode/class": (self._idnode_class, "webui"),
            "idnode/moveup": (self._idnode_move, "admin"),
            "idnode/movedown": (self._idnode_move, "admin"),
            "mpegts/network/builders": (self._network_builders, "admin"),
            "mpegts/network/create": (self._network_create, "admin"),
            "mpegts/network/grid": (self._network_grid, "admin"),
            "mpegts/network/class": (self._network_class, "admin"),
            "mpegts/network/mux_class": (self._mux_class, "admin"),
            "mpegts/network/scan": (self._network_scan, "admin"),
            "mpegts/network/mux_create": (self._mux_create, "admin"),
            "mpegts/mux/grid": (self._mux_grid, "admin"),
            "mpegts/service/grid": (self._service_grid, "admin"),
            "service/list": (self._service_list, "admin"),
            "service/mapper/save": (self._mapper_save, "admin"),
            "service/mapper/load": (self._mapper_load, "admin"),
            "service/mapper/status": (self._mapper_status, "admin"),
            "service/mapper/stop": (self._empty, "admin"),
            "channel/create": (self._channel_create, "admin"),
            "channel/grid": (self._channel_grid, "webui"),
            "channel/list": (self._channel_list, "webui"),
            "channel/rename": (self._channel_rename, "admin"),
            "channel/class": (self._class_of("channel"), "webui"),
            "channeltag/create": (self._channeltag_create, "admin"),
            "channeltag/grid": (self._channeltag_grid, "webui"),
            "channeltag/list": (self._channeltag_list, "webui"),
            "epggrab/module/list": (self._epggrab_module_list, "admin"),
            "epggrab/config/load": (self._epggrab_config_load, "admin"),
            "epggrab/config/save": (self._epggrab_config_save, "admin"),
            "epggrab/channel/grid": (self._epggrab_channel_grid, "admin"),
            "epggrab/channel/list": (self._epggrab_channel_list, "admin"),
            "epggrab/internal/rerun": (self._empty, "admin"),
            "epg/events/grid": (self._epg_events_grid, "webui"),
            "profile/list": (self._profile_list, "webui"),
            "dvr/config/grid": (self._dvr_config_grid, "dvr"),
            "dvr/entry/create": (self._dvr_create, "dvr"),
            "dvr/entry/create_by_event": (self._dvr_create_by_event, "dvr"),
            "dvr/entry/grid": (self._dvr_grid(None), "dvr"),
            "dvr/entry/grid_upcoming": (self._dvr_grid({"scheduled", "recording"}), "dvr"),
            "dvr/entry/grid_finished": (self._dvr_grid({"completed"}), "dvr"),
            "dvr/entry/grid_failed": (self._dvr_grid({"completedError", "unknown"}), "dvr"),
            "dvr/entry/grid_removed": (self._dvr_grid({"removed"}), "dvr"),
            "dvr/entry/stop": (self._dvr_action("stop"), "dvr"),
            "dvr/entry/cancel": (self._dvr_action("cancel"), "dvr"),
            "dvr/entry/remove": (self._dvr_action("remove"), "dvr"),
            "access/entry/grid": (self._class_grid("access", sort="index"), "admin"),
            "access/entry/create": (self._access_create, "admin"),
            "access/entry/userlist": (self._userlist, "admin"),
            "passwd/entry/grid": (self._class_grid("passwd"), "admin"),
            "passwd/entry/create": (self._class_create("passwd"), "admin"),
            "status/subscriptions": (self._status_subscriptions, "admin"),
            "status/inputs": (self._status_inputs, "admin"),
            "status/connections": (self._status_connections, "admin"),
            "status/activity": (self._status_activity, "admin"),
            "connections/cancel": (self._empty, "admin"),
        }
        return r

    async def _empty(self, ctx: _Ctx) -> Any:
        return {}

    # general ----------------------------------------------------------------------------------------

    async def _serverinfo(self, ctx: _Ctx) -> Any:
        info: dict[str, Any] = {"sw_version": SW_VERSION, "api_version": API_VERSION, "name": "Tvheadend"}
        if self.http_root:
            info["webroot"] = self.http_root
        info["capabilities"] = ["caclient", "tvadapters", "trace"]
        return info

    async def _pathlist(self, ctx: _Ctx) -> Any:
        return sorted(self._routes)

    async def _classes(self, ctx: _Ctx) -> Any:
        return sorted([*CLASSES, *SINGLETONS])

    async def _capabilities(self, ctx: _Ctx) -> Any:
        return ["caclient", "tvadapters", "timeshift", "trace"]

    def _singleton_load(self, cls: ClassDef, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "entries": [
                {
                    "uuid": ZERO_UUID,
                    "id": ZERO_UUID,
                    "text": cls.caption,
                    "caption": cls.caption,
                    "class": cls.name,
                    "event": cls.event,
                    "params": [prop_meta(p, values.get(p.id), with_value=True) for p in cls.props],
                }
            ]
        }

    def _singleton_save(
        self, cls: ClassDef, values: dict[str, Any], args: Mapping[str, str]
    ) -> dict[str, Any]:
        node = self._json_arg(args, "node")
        if not isinstance(node, dict):
            raise HttpError(400)
        holder = Node(ZERO_UUID, cls, values)
        self.state._apply(holder, node)
        self.state.notify_idnode(cls.event, "change", ZERO_UUID)
        return node

    async def _config_load(self, ctx: _Ctx) -> Any:
        return self._singleton_load(SINGLETONS["config"], self.state.config)

    async def _config_save(self, ctx: _Ctx) -> Any:
        self._singleton_save(SINGLETONS["config"], self.state.config, ctx.args)
        return {}

    # idnode -----------------------------------------------------------------------------------------

    async def _idnode_load(self, ctx: _Ctx) -> Any:
        args = ctx.args
        if "uuid" in args:
            uuids, _ = self._uuids_arg(args)
            nodes = [n for u in uuids if (n := self.state.nodes.get(u)) is not None]
        elif "class" in args:
            cls = args["class"]
            if cls not in CLASSES:
                raise HttpError(400)
            nodes = self.state.of(cls)
            if args.get("enum") == "1":
                return {
                    "entries": [
                        {"key": n.uuid, "val": self._title(n)} for n in nodes if self._can(ctx.principal, n)
                    ]
                }
        else:
            raise HttpError(400)
        nodes = [n for n in nodes if self._can(ctx.principal, n)]
        wanted = {x for x in args.get("list", "").split(",") if x}
        if args.get("grid") == "1":
            rows = self.state.render_many(nodes)
            return {
                "entries": [
                    {k: v for k, v in r.items() if not wanted or k == "uuid" or k in wanted} for r in rows
                ]
            }
        entries = []
        for n in nodes:
            row = self.state.render(n)
            entry: dict[str, Any] = {
                "uuid": n.uuid,
                "id": n.uuid,
                "text": self._title(n),
                "caption": n.cls.caption,
                "class": n.cls.name,
                "event": n.cls.event,
                "params": [
                    prop_meta(p, row.get(p.id, p.default), with_value=True)
                    for p in n.cls.props
                    if not wanted or p.id in wanted
                ],
            }
            if args.get("meta") == "1":
                entry["meta"] = n.cls.meta()
            entries.append(entry)
        return {"entries": entries}

    def _title(self, node: Node) -> str:
        f = node.fields
        if node.cls.name == "channel":
            return str(f["name"] or "{name-not-set}")
        if node.cls.name == "dvrentry":
            return _first_lang(f["title"])
        for key in ("name", "networkname", "username", "svcname", "iptv_muxname"):
            if f.get(key):
                return str(f[key])
        return str(node.extra.get("title", node.uuid))

    async def _idnode_save(self, ctx: _Ctx) -> Any:
        if "node" not in ctx.args:
            raise HttpError(403)
        data = self._json_arg(ctx.args, "node")
        if isinstance(data, dict) and isinstance(data.get("uuid"), list):
            items, single = [{**data, "uuid": u} for u in data["uuid"]], False
        elif isinstance(data, dict):
            items, single = [data], True
        elif isinstance(data, list):
            items, single = [d for d in data if isinstance(d, dict)], False
        else:
            raise HttpError(400)
        matched = 0
        for item in items:
            uuid = item.get("uuid")
            node = self.state.nodes.get(uuid) if isinstance(uuid, str) else None
            if node is None:
                if single:
                    raise HttpError(400)
                continue
            if not self._can(ctx.principal, node):
                raise HttpError(403)
            self.state.save(node, {k: v for k, v in item.items() if k != "uuid"})
            await self._after_save(node)
            matched += 1
        if not matched:
            raise HttpError(400)
        return {}

    async def _after_save(self, node: Node) -> None:
        if node.extra.pop("enabled_changed", False) and node.cls.name == "epggrab_mod_ext_xmltv":
            if node.fields["enabled"]:
                await self._start_xmltv_socket()
            else:
                await self._stop_xmltv_socket()

    async def _idnode_delete(self, ctx: _Ctx) -> Any:
        if "uuid" not in ctx.args:
            raise HttpError(403)
        uuids, is_array = self._uuids_arg(ctx.args)
        for uuid in uuids:
            node = self.state.nodes.get(uuid)
            if node is None:
                if not is_array:
                    raise HttpError(404)
                continue
            if not self._can(ctx.principal, node):
                raise HttpError(403)
            self.state.delete(node)
        return {}

    async def _idnode_class(self, ctx: _Ctx) -> Any:
        cls = CLASSES.get(ctx.args.get("name", "")) or SINGLETONS.get(ctx.args.get("name", ""))
        if cls is None:
            raise HttpError(400)
        return cls.meta()

    async def _idnode_move(self, ctx: _Ctx) -> Any:
        uuids, _ = self._uuids_arg(ctx.args) if "uuid" in ctx.args else ([], False)
        for uuid in uuids:
            node = self._node(uuid, "access")
            if node is None:
                raise HttpError(404)
            ordered = sorted(self.state.of("access"), key=lambda n: n.fields["index"])
            i = ordered.index(node)
            j = i - 1 if ctx.path.endswith("moveup") else i + 1
            if 0 <= j < len(ordered):
                ordered[i], ordered[j] = ordered[j], ordered[i]
            for k, n in enumerate(ordered):
                n.fields["index"] = k
        return {}

    def _class_of(self, name: str) -> Handler:
        async def handler(ctx: _Ctx) -> Any:
            return CLASSES[name].meta()

        return handler

    def _class_grid(self, name: str, sort: str | None = None) -> Handler:
        async def handler(ctx: _Ctx) -> Any:
            return self._grid(self.state.of(name), ctx.args, default_sort=sort)

        return handler

    def _class_create(self, name: str) -> Handler:
        async def handler(ctx: _Ctx) -> Any:
            conf = self._json_arg(ctx.args, "conf")
            if not isinstance(conf, dict):
                raise HttpError(400)
            return {"uuid": self.state.create(name, conf).uuid}

        return handler

    # networks, muxes, services ----------------------------------------------------------------------

    async def _network_builders(self, ctx: _Ctx) -> Any:
        return {"entries": [CLASSES[c].meta() for c in NETWORK_CLASSES]}

    async def _network_create(self, ctx: _Ctx) -> Any:
        cls = ctx.args.get("class")
        if cls not in NETWORK_CLASSES:
            raise HttpError(400)
        conf = self._json_arg(ctx.args, "conf")
        if not isinstance(conf, dict):
            raise HttpError(400)
        node = self.state.create(cls, conf)
        # Observed: the new network is enabled even though the class default says otherwise.
        node.fields["enabled"] = True
        return {"uuid": node.uuid}

    async def _network_grid(self, ctx: _Ctx) -> Any:
        return self._grid(self.state.of(*NETWORK_CLASSES), ctx.args)

    async def _network_class(self, ctx: _Ctx) -> Any:
        node = self._node(ctx.args.get("uuid", ""), *NETWORK_CLASSES)
        return (node.cls if node else CLASSES["iptv_network"]).meta()

    async def _mux_class(self, ctx: _Ctx) -> Any:
        return CLASSES["iptv_mux"].meta()

    async def _network_scan(self, ctx: _Ctx) -> Any:
        if "uuid" not in ctx.args:
            raise HttpError(400)
        uuids, is_array = self._uuids_arg(ctx.args)
        for uuid in uuids:
            net = self._node(uuid, *NETWORK_CLASSES)
            if net is None:
                if not is_array:
                    raise HttpError(404)
                continue
            for mux in self.state.of("iptv_mux"):
                if mux.fields["network_uuid"] == uuid and mux.fields["enabled"] == 1:
                    mux.fields["scan_state"] = 1
                    mux.extra["scan_requested"] = True
        return {}

    async def _mux_create(self, ctx: _Ctx) -> Any:
        net = self._node(ctx.args.get("uuid", ""), *NETWORK_CLASSES)
        if net is None:
            raise HttpError(400)
        conf = self._json_arg(ctx.args, "conf")
        if not isinstance(conf, dict):
            raise HttpError(400)
        return {"uuid": self.state._new_mux(net, conf).uuid}

    def _hidden(self, node: Node, hidemode: str) -> bool:
        """Default hides muxes of disabled networks and unverified services; `all` also disabled ones."""
        if hidemode == "none":
            return False
        mux = node if node.cls.name == "iptv_mux" else self.state.nodes.get(node.fields["multiplex_uuid"])
        net = self.state.nodes.get(mux.fields["network_uuid"]) if mux else None
        if net is not None and not net.fields["enabled"]:
            return True
        if node.cls.name == "iptv_service" and not node.extra.get("verified"):
            return True
        # Mux `enabled` is an int (-1 ignore, 0 off, 1 on), service `enabled` a bool; False == 0 covers both.
        return hidemode == "all" and node.fields["enabled"] in (0, -1)

    async def _mux_grid(self, ctx: _Ctx) -> Any:
        mode = ctx.args.get("hidemode", "default")
        return self._grid([m for m in self.state.of("iptv_mux") if not self._hidden(m, mode)], ctx.args)

    async def _service_grid(self, ctx: _Ctx) -> Any:
        mode = ctx.args.get("hidemode", "default")
        return self._grid([s for s in self.state.of("iptv_service") if not self._hidden(s, mode)], ctx.args)

    async def _service_list(self, ctx: _Ctx) -> Any:
        return {"entries": [{"key": s.uuid, "val": self._title(s)} for s in self.state.of("iptv_service")]}

    # service mapper ---------------------------------------------------------------------------------

    async def _mapper_save(self, ctx: _Ctx) -> Any:
        node = self._json_arg(ctx.args, "node")
        if not isinstance(node, dict):
            raise HttpError(400)
        holder = Node(ZERO_UUID, SINGLETONS["service_mapper"], self.state.mapper_config)
        self.state._apply(holder, node)
        services = list(self.state.mapper_config.get("services", []))
        self.state.mapper_config["services"] = []
        self.state.mapper_status = {"total": 0, "ok": 0, "fail": 0, "ignore": 0}
        self.state.notify({"reload": 1, "notificationClass": "service_mapper"})
        options = dict(self.state.mapper_config)
        self._spawn(self._run_mapper(services, options))
        return {}

    async def _run_mapper(self, services: list[str], options: dict[str, Any]) -> None:
        await asyncio.sleep(self.mapper_delay)
        status = self.state.map_services(services, options)
        self.state.mapper_status = status
        self.state.notify({**status, "active": 0, "notificationClass": "servicemapper"})

    async def _mapper_load(self, ctx: _Ctx) -> Any:
        return self._singleton_load(SINGLETONS["service_mapper"], self.state.mapper_config)

    async def _mapper_status(self, ctx: _Ctx) -> Any:
        return dict(self.state.mapper_status)

    # channels and tags ------------------------------------------------------------------------------

    async def _channel_create(self, ctx: _Ctx) -> Any:
        conf = self._json_arg(ctx.args, "conf")
        if not isinstance(conf, dict):
            raise HttpError(400)
        node = self.state.create("channel", conf)
        node.extra["id"] = numeric_id(node.uuid)
        return {"uuid": node.uuid}

    def _visible(self, nodes: list[Node], ctx: _Ctx) -> list[Node]:
        show_all = ctx.args.get("all") == "1" and "admin" in ctx.principal.rights
        return nodes if show_all else [n for n in nodes if n.fields["enabled"]]

    async def _channel_grid(self, ctx: _Ctx) -> Any:
        return self._grid(self._visible(self.state.of("channel"), ctx), ctx.args)

    async def _channel_list(self, ctx: _Ctx) -> Any:
        nodes = sorted(self._visible(self.state.of("channel"), ctx), key=lambda n: self._title(n).lower())
        return {"entries": [{"key": n.uuid, "val": self._title(n)} for n in nodes]}

    async def _channel_rename(self, ctx: _Ctx) -> Any:
        old, new = ctx.args.get("from"), ctx.args.get("to")
        if not old or new is None:
            raise HttpError(400)
        for ch in self.state.of("channel"):
            if ch.fields["name"] == old:
                self.state.save(ch, {"name": new})
        return {}

    async def _channeltag_create(self, ctx: _Ctx) -> Any:
        conf = self._json_arg(ctx.args, "conf")
        if not isinstance(conf, dict):
            raise HttpError(400)
        return {"uuid": self.state.create("channeltag", conf).uuid}

    async def _channeltag_grid(self, ctx: _Ctx) -> Any:
        return self._grid(self._visible(self.state.of("channeltag"), ctx), ctx.args)

    async def _channeltag_list(self, ctx: _Ctx) -> Any:
        nodes = self._visible(self.state.of("channeltag"), ctx)
        return {"entries": [{"key": n.uuid, "val": n.fields["name"]} for n in nodes]}

    # EPG grabbers and events ------------------------------------------------------------------------

    async def _epggrab_module_list(self, ctx: _Ctx) -> Any:
        mods = self.state.of("epggrab_mod_ext_xmltv", "epggrab_mod_int_xmltv", "epggrab_mod_ota")
        return {
            "entries": [
                {
                    "uuid": m.uuid,
                    "status": "epggrabmodEnabled" if m.fields["enabled"] else "epggrabmodNone",
                    "title": m.extra["title"],
                }
                for m in mods
            ]
        }

    async def _epggrab_config_load(self, ctx: _Ctx) -> Any:
        return self._singleton_load(SINGLETONS["epggrab"], self.state.epggrab_config)

    async def _epggrab_config_save(self, ctx: _Ctx) -> Any:
        self._singleton_save(SINGLETONS["epggrab"], self.state.epggrab_config, ctx.args)
        return {}

    async def _epggrab_channel_grid(self, ctx: _Ctx) -> Any:
        return self._grid(self.state.of("epggrab_channel"), ctx.args)

    async def _epggrab_channel_list(self, ctx: _Ctx) -> Any:
        return {
            "entries": [{"key": n.uuid, "val": n.fields["name"]} for n in self.state.of("epggrab_channel")]
        }

    async def _epg_events_grid(self, ctx: _Ctx) -> Any:
        args = ctx.args
        rows = self.state.epg_rows()
        if args.get("channel"):
            wanted = args["channel"]
            rows = [r for r in rows if wanted in (r["channelUuid"], r["channelName"])]
        if args.get("channelTag"):
            tag = args["channelTag"]
            tagged = {c.uuid for c in self.state.of("channel") if tag in c.fields["tags"]}
            rows = [r for r in rows if r["channelUuid"] in tagged]
        if args.get("title"):
            # `fulltext=1` also searches the subtitle and description, as on the real server.
            keys = ("title", "subtitle", "description") if args.get("fulltext") == "1" else ("title",)
            try:
                pattern = re.compile(args["title"], re.IGNORECASE)
            except re.error as exc:
                raise HttpError(400) from exc
            rows = [r for r in rows if any(pattern.search(str(r.get(k, ""))) for k in keys)]
        if args.get("mode") == "now":
            now = self.state.now()
            rows = [r for r in rows if r["start"] <= now < r["stop"]]
        return run_grid(rows, args, count_key="totalCount", default_sort="start")

    async def _profile_list(self, ctx: _Ctx) -> Any:
        return {"entries": [{"key": k, "val": v} for k, v in self.state.profiles.items()]}

    # DVR --------------------------------------------------------------------------------------------

    async def _dvr_config_grid(self, ctx: _Ctx) -> Any:
        return self._grid(self.state.of("dvrconfig"), ctx.args)

    async def _dvr_create(self, ctx: _Ctx) -> Any:
        conf = self._json_arg(ctx.args, "conf")
        if not isinstance(conf, dict):
            raise HttpError(400)
        node = self.state.create_dvr_entry(conf, owner=ctx.principal.username or "")
        return {"uuid": node.uuid} if node is not None else {}

    async def _dvr_create_by_event(self, ctx: _Ctx) -> Any:
        args = ctx.args
        if "entries" in args:
            requests = self._json_arg(args, "entries")
            if not isinstance(requests, list):
                raise HttpError(400)
        elif "event_id" in args:
            requests = [{k: args[k] for k in ("event_id", "config_uuid", "comment") if k in args}]
        else:
            raise HttpError(400)
        created = []
        for req in requests:
            if not isinstance(req, dict):
                continue
            event = self.state.epg_events.get(int(coerce_scalar("int", req.get("event_id", 0))))
            if event is None:
                continue
            conf = {
                "channel": event["channelUuid"],
                "start": event["start"],
                "stop": event["stop"],
                "disp_title": event.get("title", ""),
                "disp_subtitle": event.get("subtitle", ""),
                "description": event.get("description", ""),
                "config_name": req.get("config_uuid", ""),
                "comment": req.get("comment", ""),
            }
            node = self.state.create_dvr_entry(conf, owner=ctx.principal.username or "")
            if node is not None:
                node.fields["broadcast"] = event["eventId"]
                created.append(node.uuid)
        return {"uuid": created} if created else {}

    def _dvr_grid(self, states: set[str] | None) -> Handler:
        async def handler(ctx: _Ctx) -> Any:
            nodes = self.state.of("dvrentry")
            if states is not None:
                if states == {"removed"}:
                    nodes = [n for n in nodes if n.fields["fileremoved"]]
                else:
                    nodes = [
                        n
                        for n in nodes
                        if self.state.dvr_state(n)[1] in states
                        and not (states == {"completed"} and n.fields["fileremoved"])
                    ]
            return self._grid(nodes, ctx.args, default_sort="start_real")

        return handler

    def _dvr_action(self, action: str) -> Handler:
        async def handler(ctx: _Ctx) -> Any:
            if "uuid" not in ctx.args:
                raise HttpError(400)
            uuids, is_array = self._uuids_arg(ctx.args)
            for uuid in uuids:
                node = self._node(uuid, "dvrentry")
                if node is None:
                    if not is_array:
                        raise HttpError(404)
                    continue
                self._apply_dvr_action(node, action)
            return {}

        return handler

    def _apply_dvr_action(self, node: Node, action: str) -> None:
        _status, sched = self.state.dvr_state(node)
        now = self.state.now()
        if action == "stop":
            if sched == "recording":
                node.extra["stopped_at"] = now
                self.state.notify_idnode("dvrentry", "change", node.uuid)
        elif action == "cancel":
            if sched == "scheduled":
                self.state.delete(node)
            elif sched == "recording":
                node.extra["aborted_at"] = now
                self.state.notify_idnode("dvrentry", "change", node.uuid)
        elif action == "remove":
            self.state.delete(node)

    # access and passwords ---------------------------------------------------------------------------

    async def _access_create(self, ctx: _Ctx) -> Any:
        conf = self._json_arg(ctx.args, "conf")
        if not isinstance(conf, dict):
            raise HttpError(400)
        node = self.state.create("access", conf)
        self.state._reindex_access(node)
        return {"uuid": node.uuid}

    async def _userlist(self, ctx: _Ctx) -> Any:
        return {"entries": []}

    # status -----------------------------------------------------------------------------------------

    def _subscription_rows(self) -> list[dict[str, Any]]:
        rows = [dict(s) for s in self.state.subscriptions.values()]
        for node in self.state.of("dvrentry"):
            if self.state.dvr_state(node)[1] != "recording":
                continue
            channel = self.state.nodes.get(node.fields["channel"])
            rows.append(
                {
                    "id": numeric_id(node.uuid) % 100000,
                    "start": self.state._dvr_window(node)[0],
                    "errors": 0,
                    "state": "Running",
                    "username": node.fields["owner"],
                    "title": f"DVR: {_first_lang(node.fields['title'])}",
                    "channel": channel.fields["name"] if channel else "",
                    "profile": "pass",
                    "in": 0,
                    "out": 0,
                    "total_in": 0,
                    "total_out": 0,
                }
            )
        for mux in self.state.of("iptv_mux"):
            if mux.fields["scan_state"] == 3:
                rows.append(
                    {
                        "id": numeric_id(mux.uuid) % 100000,
                        "start": int(self.state.now()),
                        "errors": 0,
                        "state": "Running",
                        "title": "scan",
                        "in": 0,
                        "out": 0,
                        "total_in": 0,
                        "total_out": 0,
                    }
                )
        return rows

    async def _status_subscriptions(self, ctx: _Ctx) -> Any:
        rows = self._subscription_rows()
        return {"entries": rows, "totalCount": len(rows)}

    async def _status_inputs(self, ctx: _Ctx) -> Any:
        busy = len(self._subscription_rows())
        entries = [
            {
                "uuid": ZERO_UUID[:-1] + "1",
                "input": "IPTV #1",
                "stream": "",
                "subs": busy,
                "weight": 0,
                "pids": [],
                "signal": 0,
                "snr": 0,
                "ber": 0,
                "unc": 0,
                "bps": 0,
                "cc": 0,
                "te": 0,
            }
        ]
        return {"entries": entries, "totalCount": len(entries)}

    async def _status_connections(self, ctx: _Ctx) -> Any:
        return {"entries": [], "totalCount": 0}

    async def _status_activity(self, ctx: _Ctx) -> Any:
        now = int(self.state.now())
        return {
            "current_time": now,
            "next_activity": now + 3600,
            "activities": {"dvr": 0, "ota_grabber": 0, "int_grabber": 0, "mux_scheduler": 0},
            "subscription_count": len(self._subscription_rows()),
            "connection_count": 0,
        }

    # -- comet ---------------------------------------------------------------------------------------

    def _new_mailbox(self, principal: Principal, request: web.Request) -> Mailbox:
        now = time.monotonic()
        # Idle mailboxes are discarded after about a minute, as on the real server.
        for boxid in [
            b for b, box in self.state.mailboxes.items() if not box.websocket and now - box.last_seen > 60
        ]:
            del self.state.mailboxes[boxid]
        box = Mailbox(hashlib.sha1(secrets.token_bytes(16)).hexdigest(), last_seen=now)
        rights = principal.rights
        box.messages.append(
            {
                "notificationClass": "accessUpdate",
                "uilevel": "basic",
                "theme": "blue",
                "page_size": 50,
                "quicktips": 1,
                "chname_num": 1,
                "chname_src": 0,
                "date_mask": "",
                "label_formatting": 0,
                "default_tab": 0,
                "dvr_show_seconds": 1,
                "username": principal.username or "",
                "address": request.remote or "127.0.0.1",
                "dvr": int("dvr" in rights),
                "admin": int("admin" in rights),
                "time": int(self.state.now()),
                "cookie_expires": 7,
                "ticket_expires": 300,
                "info_area": "login,storage,time",
                "freediskspace": 83783200768,
                "useddiskspace": 220524,
                "totaldiskspace": 270553174016,
                "wizard": self.state.config.get("wizard", ""),
            }
        )
        box.messages.append({"notificationClass": "setServerIpPort", "ip": "127.0.0.1", "port": self.port})
        self.state.mailboxes[box.boxid] = box
        return box

    async def _comet_poll(self, ctx: _Ctx) -> dict[str, Any]:
        box = self.state.mailboxes.get(ctx.args.get("boxid", ""))
        if box is None:
            # An unknown boxid silently creates a new mailbox with the initial messages again.
            box = self._new_mailbox(ctx.principal, ctx.request)
            return {"boxid": box.boxid, "messages": self.state.drain(box)}
        box.last_seen = time.monotonic()
        await asyncio.sleep(0.1)
        if ctx.args.get("immediate") != "1" and not box.messages:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(box.wakeup.wait(), self.comet_poll_timeout)
        box.last_seen = time.monotonic()
        return {"boxid": box.boxid, "messages": self.state.drain(box)}

    async def _comet_ws(self, ctx: _Ctx) -> web.StreamResponse:
        if ctx.request.headers.get("Upgrade", "").lower() != "websocket":
            raise HttpError(415)
        ws = web.WebSocketResponse(protocols=("tvheadend-comet",))
        # The real server names the protocol even when the client did not ask for it.
        ws.headers["Sec-WebSocket-Protocol"] = "tvheadend-comet"
        await ws.prepare(ctx.request)
        self._websockets.add(ws)
        box = self.state.mailboxes.get(ctx.args.get("boxid", "")) or self._new_mailbox(
            ctx.principal, ctx.request
        )
        box.websocket = True
        reader = asyncio.ensure_future(self._ws_reader(ws))
        first = True
        try:
            while not ws.closed and not self._closing:
                done, _ = await asyncio.wait({reader}, timeout=self.comet_ws_interval)
                if done:
                    break
                messages = self.state.drain(box)
                if first:
                    await ws.send_str(
                        json.dumps({"boxid": box.boxid, "messages": messages}, separators=(",", ":"))
                    )
                    first = False
                elif messages:
                    await ws.send_str(json.dumps({"messages": messages}, separators=(",", ":")))
        except ConnectionError:
            log.debug("fake TVHeadend: comet websocket client went away")
        finally:
            reader.cancel()
            self._websockets.discard(ws)
            self.state.mailboxes.pop(box.boxid, None)
            await ws.close()
        return ws

    async def _ws_reader(self, ws: web.WebSocketResponse) -> None:
        # Client frames are read (so that close frames are seen) and otherwise ignored.
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    # -- streaming -----------------------------------------------------------------------------------

    def _find_channel(self, kind: str, key: str) -> Node | None:
        for ch in self.state.of("channel"):
            f = ch.fields
            if (
                (kind == "channel" and ch.uuid == key)
                or (kind == "channelid" and str(ch.extra.get("id", numeric_id(ch.uuid))) == key)
                or (kind == "channelnumber" and str(f["number"]) == key)
                or (kind == "channelname" and f["name"] == key)
            ):
                return ch
        return None

    async def _stream(self, ctx: _Ctx, rest: str) -> web.StreamResponse:
        kind, _, key = rest.partition("/")
        content_type = "video/mp2t"
        title = ""
        if kind in ("channel", "channelid", "channelnumber", "channelname"):
            channel = self._find_channel(kind, key)
            if channel is None:
                raise HttpError(400)
            if not channel.fields["services"]:
                # A channel without services: the connection is accepted, then closed without a reply.
                await asyncio.sleep(self.empty_stream_delay)
                return self._drop(ctx.request)
            title = channel.fields["name"]
        elif kind == "service":
            if self._node(key, "iptv_service") is None:
                raise HttpError(400)
        elif kind == "mux":
            if self._node(key, "iptv_mux") is None:
                raise HttpError(400)
            content_type = "application/octet-stream"
        else:
            raise HttpError(404)
        response = web.StreamResponse(headers={"Connection": "Close"})
        response.content_type = content_type
        response.force_close()
        sub_id = self.state._next_sub_id
        self.state._next_sub_id += 1
        sub: dict[str, Any] = {
            "id": sub_id,
            "start": int(self.state.now()),
            "errors": 0,
            "state": "Running",
            "username": ctx.principal.username or "",
            "hostname": ctx.request.remote or "",
            "client": ctx.request.headers.get("User-Agent", ""),
            "title": "HTTP",
            "channel": title,
            "profile": ctx.args.get("profile", "pass"),
            "in": 0,
            "out": 0,
            "total_in": 0,
            "total_out": 0,
        }
        self.open_streams += 1
        self.streams_started += 1
        self.state.subscriptions[sub_id] = sub
        self.state.notify({"reload": 1, "notificationClass": "subscriptions"})
        try:
            await response.prepare(ctx.request)
            cc = 0
            while not self._closing:
                chunk = ts_packets(7, start_cc=cc)
                cc = (cc + 7) & 0x0F
                await response.write(chunk)
                sub["total_in"] += len(chunk)
                sub["total_out"] += len(chunk)
                await asyncio.sleep(self.stream_interval)
        except ConnectionError:
            # The client went away; that is how every endless stream ends.
            log.debug("fake TVHeadend: stream client went away")
        finally:
            self.open_streams -= 1
            self.state.subscriptions.pop(sub_id, None)
            self.state.notify({"reload": 1, "notificationClass": "subscriptions"})
        return response

    # -- playlists -----------------------------------------------------------------------------------

    def _issue_ticket(self, path: str, principal: Principal) -> str:
        ticket = secrets.token_hex(20)
        expires = time.monotonic() + int(self.state.config.get("ticket_expires", 300))
        self._tickets[ticket] = (path, expires, principal)
        return ticket

    def _channel_entries(self, channels: list[Node], base: str, ctx: _Ctx, ticket: bool) -> list[str]:
        lines = []
        channels = sorted(channels, key=lambda c: (_sort_key(c.fields["number"]), c.fields["name"]))
        for ch in channels:
            if not ch.fields["enabled"]:
                continue
            path = f"{self.http_root}/stream/channelid/{ch.extra.get('id', numeric_id(ch.uuid))}"
            query = (
                f"?ticket={self._issue_ticket(path, ctx.principal)}&profile=pass"
                if ticket
                else "?profile=pass"
            )
            lines.append(
                f'#EXTINF:-1 tvg-id="{ch.uuid}" tvg-chno="{ch.fields["number"]}",{ch.fields["name"]}'
            )
            lines.append(f"{base}{path}{query}")
        return lines

    def _playlist(self, ctx: _Ctx, rest: str) -> web.StreamResponse:
        if rest == "":
            return self._redirect(f"{self.http_root}/playlist/channels")
        base = f"http://{ctx.request.host}"
        parts = rest.split("/")
        ticket = parts[0] in ("ticket", "auth")
        if ticket:
            parts = parts[1:]
        if parts and parts[0] == "e2" and parts[1:] == ["channels"]:
            lines = ["#NAME Tvheadend Channels"]
            for ch in sorted(self.state.of("channel"), key=lambda c: _sort_key(c.fields["number"])):
                url = f"{base}{self.http_root}/stream/channelid/{ch.extra.get('id', numeric_id(ch.uuid))}"
                lines += [
                    f"#SERVICE 1:0:0:0:0:0:0:0:0:0:{url}:{ch.fields['name']}",
                    f"#DESCRIPTION {ch.fields['name']}",
                ]
            return web.Response(text="\n".join(lines) + "\n", content_type="application/x-e2-bouquet")
        if parts and parts[0] == "satip" and parts[1:] == ["channels"]:
            return web.Response(text="#EXTM3U\n", content_type="audio/x-mpegurl")
        kind = parts[0] if parts else ""
        key = "/".join(parts[1:])
        channels = self.state.of("channel")
        lines = ["#EXTM3U"]
        if kind in ("channels", "channels.m3u", "channels.m3u8") and not key:
            lines += self._channel_entries(channels, base, ctx, ticket)
        elif kind in ("channel", "channelid", "channelnumber", "channelname"):
            found = self._find_channel(kind, key)
            if found is None:
                raise HttpError(400)
            lines += self._channel_entries([found], base, ctx, ticket)
        elif kind == "tags" and not key:
            for t in self.state.of("channeltag"):
                lines.append(f'#EXTINF:-1 type="playlist",{t.fields["name"]}')
                lines.append(f"{base}{self.http_root}/playlist/tagid/{numeric_id(t.uuid)}?profile=pass")
        elif kind in ("tag", "tagname", "tagid"):
            tag = next(
                (
                    t
                    for t in self.state.of("channeltag")
                    if (kind == "tag" and key in (t.uuid, t.fields["name"]))
                    or (kind == "tagname" and key == t.fields["name"])
                    or (kind == "tagid" and key == str(numeric_id(t.uuid)))
                ),
                None,
            )
            if tag is None:
                raise HttpError(400)
            lines += self._channel_entries(
                [c for c in channels if tag.uuid in c.fields["tags"]], base, ctx, ticket
            )
        elif kind == "recordings" and not key:
            for node in self.state.of("dvrentry"):
                data = self.state.dvr_file_bytes(node)
                if data is None:
                    continue
                f = node.fields
                path = f"{self.http_root}/dvrfile/{node.uuid}"
                query = f"?ticket={self._issue_ticket(path, ctx.principal)}" if ticket else ""
                stamp = datetime.fromtimestamp(f["start"], tz=UTC).strftime("%Y-%m-%dT%H:%M:%S%z")
                lines += [
                    f"#EXTINF:{f['stop'] - f['start']},{_first_lang(f['title'])}",
                    f"#EXT-X-TARGETDURATION:{f['stop'] - f['start']}",
                    f"#EXT-X-STREAM-INF:PROGRAM-ID={node.uuid},BANDWIDTH=19",
                    f"#EXT-X-PROGRAM-DATE-TIME:{stamp}",
                    f"{base}{path}{query}",
                ]
        else:
            raise HttpError(400)
        return web.Response(text="\n".join(lines) + "\n", content_type="audio/x-mpegurl")

    def _xmltv_channels(self) -> web.StreamResponse:
        root = ET.Element("tv", {"generator-info-name": "TVHeadend-" + SW_VERSION})
        for ch in self.state.of("channel"):
            el = ET.SubElement(root, "channel", {"id": ch.uuid})
            ET.SubElement(el, "display-name").text = ch.fields["name"]
            ET.SubElement(el, "display-name").text = str(ch.fields["number"])
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
        return web.Response(body=body, content_type="text/xml")

    # -- recordings ----------------------------------------------------------------------------------

    async def _dvrfile(self, ctx: _Ctx, uuid: str) -> web.StreamResponse:
        node = self._node(uuid, "dvrentry")
        data = self.state.dvr_file_bytes(node) if node is not None else None
        if node is None or data is None:
            raise HttpError(404)
        size = len(data)
        start, end, status = 0, size - 1, 200
        range_header = ctx.request.headers.get("Range")
        if range_header:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if m is None or (not m.group(1) and not m.group(2)):
                raise HttpError(416)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                resp = html_error(416)
                resp.headers["Content-Range"] = f"bytes */{size}"
                return resp
            status = 206
        title = _first_lang(node.fields["title"]) or "recording"
        headers = {
            "Cache-Control": "max-age=10",
            "Accept-Ranges": "bytes",
            "Content-Length": str(end - start + 1),
            "Content-Disposition": f"attachment; filename=\"{title}.ts\"; filename*=UTF-8''{quote(title)}.ts",
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "video/mp2t"
        self.open_streams += 1
        try:
            await response.prepare(ctx.request)
            if ctx.request.method != "HEAD":
                for offset in range(start, end + 1, 65536):
                    await response.write(data[offset : min(offset + 65536, end + 1)])
                    await asyncio.sleep(0)
            await response.write_eof()
        except ConnectionError:
            log.debug("fake TVHeadend: recording download client went away")
        finally:
            self.open_streams -= 1
        return response

    # -- background work: scans, XMLTV socket ----------------------------------------------------------

    async def _background_loop(self) -> None:
        # Scans run in the background like on the real server: PEND, then ACTIVE, then done.
        while not self._closing:
            for mux in self.state.of("iptv_mux"):
                if mux.extra.get("scan_requested") and not mux.extra.get("scanning"):
                    net = self.state.nodes.get(mux.fields["network_uuid"])
                    if mux.fields["enabled"] == 1 and net is not None and net.fields["enabled"]:
                        mux.extra["scanning"] = True
                        self._spawn(self._scan(mux))
            await asyncio.sleep(0.02)

    async def _scan(self, mux: Node) -> None:
        try:
            await asyncio.sleep(self.scan_delay / 2)
            if mux.uuid not in self.state.nodes:
                return
            mux.fields["scan_state"] = 3
            self.state.notify_idnode("mpegts_mux", "change", mux.uuid)
            await asyncio.sleep(self.scan_delay / 2)
            if mux.uuid in self.state.nodes:
                self.state.finish_scan(mux)
        finally:
            mux.extra.pop("scanning", None)

    async def _start_xmltv_socket(self) -> None:
        if self._xmltv_server is not None:
            return
        path = Path(self.xmltv_socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self._xmltv_server = await asyncio.start_unix_server(self._xmltv_client, path=str(path))

    async def _stop_xmltv_socket(self) -> None:
        if self._xmltv_server is None:
            return
        self._xmltv_server.close()
        await self._xmltv_server.wait_closed()
        self._xmltv_server = None
        Path(self.xmltv_socket_path).unlink(missing_ok=True)

    async def _xmltv_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The import happens after EOF, like the real External XMLTV grabber.
        data = await reader.read()
        writer.close()
        try:
            channels, events = self.state.import_xmltv(data)
        except ET.ParseError:
            log.warning("fake TVHeadend: XMLTV push was not valid XML")
            return
        log.info("fake TVHeadend: XMLTV import channels new=%s broadcasts new=%s", channels, events)
