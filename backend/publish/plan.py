"""The publish plan, computed purely from TVHeadend's state and TIC's desired lineup (no I/O)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["tag", "network", "mux", "channel"]
Action = Literal["create", "update", "delete"]
Row = dict[str, Any]
RecordKey = tuple[str, str]

#: How TIC recognises what it manages in TVHeadend (documented in docs/user-guide/tvheadend.md).
NETWORK_PREFIX = "TIC: "
MANUAL_NETWORK_KEY = "manual"
MANUAL_NETWORK_NAME = NETWORK_PREFIX + "Manual"
MARKER_TAG_KEY = "marker"
MARKER_TAG_NAME = "TIC"
TAG_COMMENT = "Managed by TIC"
MARKER_TAG_COMMENT = TAG_COMMENT + ": marks the channels TIC publishes"
_MUX_KEY = re.compile(r"\(TIC #(\d+)\)\s*$")

#: The mux fields TIC sets (`load_lineup` fills exactly these); compared with what TVHeadend holds.
MUX_FIELDS: tuple[str, ...] = (
    "iptv_url",
    "iptv_muxname",
    "iptv_sname",
    "iptv_epgid",
    "channel_number",
    "iptv_icon",
    "iptv_hdr",
    "priority",
    "enabled",
    "epg",
)
#: Rows per grid request when reading TVHeadend's state. TVHeadend builds the whole matching set for
#: every page and serialises only the page, so a lineup of thousands of muxes costs one full pass per
#: page: fewer, larger pages of a few fields each (about 1 MB for 2,000 mux rows) cost it less than
#: many small ones, and far less than the "All" page size of its own web UI.
READ_PAGE_SIZE = 2000
#: The fields the planner reads from each grid (TVHeadend's `list` argument; `uuid` always comes).
#: Mux and service rows have dozens of fields each: asking for these few keeps the replies
#: (and the time TVHeadend spends building them under its global lock) small. A field the planner
#: compares but that is missing here would read as "changed" on every publish.
GRID_FIELDS: dict[str, tuple[str, ...]] = {
    "tag": ("name", "enabled", "internal", "comment"),
    "network": ("networkname", "max_streams", "skipinitscan", "enabled"),
    "mux": ("network_uuid", "scan_state", "scan_result", *MUX_FIELDS),
    "service": ("multiplex_uuid", "sid", "enabled"),
    "channel": ("name", "number", "icon", "enabled", "tags", "services"),
}

#: Apply order: parents before children when creating, children before parents when deleting.
KIND_ORDER: dict[str, int] = {"tag": 0, "network": 1, "mux": 2, "channel": 3}
ACTION_ORDER: dict[str, int] = {"delete": 0, "update": 1, "create": 2}


def mux_name(channel_name: str, channel_source_id: int) -> str:
    """The mux name TIC writes: readable, and ending in a key that survives a lost uuid."""
    return f"{channel_name} (TIC #{channel_source_id})"


def mux_key_of(name: Any) -> str | None:
    m = _MUX_KEY.search(name) if isinstance(name, str) else None
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredTag:
    key: str
    name: str

    @property
    def fields(self) -> dict[str, Any]:
        comment = MARKER_TAG_COMMENT if self.key == MARKER_TAG_KEY else TAG_COMMENT
        return {"name": self.name, "enabled": True, "internal": False, "comment": comment}


@dataclass(frozen=True)
class DesiredNetwork:
    key: str
    name: str
    max_streams: int

    @property
    def fields(self) -> dict[str, Any]:
        # skipinitscan false: TVHeadend scans each new mux by itself, which is what produces its service.
        return {
            "networkname": self.name,
            "max_streams": self.max_streams,
            "skipinitscan": False,
            "enabled": True,
        }


@dataclass(frozen=True)
class DesiredMux:
    key: str
    network_key: str
    channel_key: str
    fields: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.fields["iptv_muxname"])


@dataclass(frozen=True)
class DesiredChannel:
    key: str
    name: str
    number: int
    icon: str
    tag_keys: tuple[str, ...]
    #: The channel's muxes, first source first (highest priority).
    mux_keys: tuple[str, ...]


@dataclass(frozen=True)
class Record:
    """What TIC recorded about an object it published: its uuid and a digest of each field it wrote."""

    uuid: str
    digests: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Lineup:
    tags: list[DesiredTag] = field(default_factory=list)
    networks: list[DesiredNetwork] = field(default_factory=list)
    muxes: list[DesiredMux] = field(default_factory=list)
    channels: list[DesiredChannel] = field(default_factory=list)
    records: dict[RecordKey, Record] = field(default_factory=dict)
    #: The bookkeeping rows exactly as stored when the lineup was loaded (a subset of `records`, which
    #: also takes uuids from TIC's own rows): what saving the records compares with.
    stored: dict[RecordKey, Record] = field(default_factory=dict)
    #: Channel sources left out (no URL, disabled playlist...), for the report.
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def same_as(self, other: Lineup) -> bool:
        """Whether `other` publishes the same thing (records and skipped sources aside).

        The desired objects are frozen dataclasses, so this is a plain comparison: much cheaper than
        hashing a serialised lineup of thousands of objects.
        """
        return (
            self.tags == other.tags
            and self.networks == other.networks
            and self.muxes == other.muxes
            and self.channels == other.channels
        )


@dataclass
class Snapshot:
    """TVHeadend's objects as its grids return them."""

    networks: list[Row] = field(default_factory=list)
    muxes: list[Row] = field(default_factory=list)
    services: list[Row] = field(default_factory=list)
    channels: list[Row] = field(default_factory=list)
    tags: list[Row] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------


@dataclass
class Op:
    action: Action
    kind: Kind
    name: str
    key: str | None = None
    uuid: str | None = None
    #: create: the whole conf; update: only the fields that differ (desired values).
    fields: dict[str, Any] = field(default_factory=dict)
    #: For people: field -> (current, desired), with uuids turned into names.
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: Why an update or create repairs TVHeadend rather than follows TIC: "changed" or "deleted".
    drift: str | None = None
    #: mux create: the key of its network (its uuid is known only once the network exists).
    parent_key: str | None = None
    #: Digests of the desired fields, recorded once the op succeeded.
    digests: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "uuid": self.uuid,
            "drift": self.drift,
            "changes": {k: {"from": old, "to": new} for k, (old, new) in self.changes.items()},
        }
        return out


@dataclass
class Plan:
    ops: list[Op] = field(default_factory=list)
    #: (kind, key) -> uuid of every desired object that exists in TVHeadend.
    claims: dict[RecordKey, str] = field(default_factory=dict)
    #: (kind, key) -> Record for claimed objects already exactly as desired.
    in_sync: dict[RecordKey, Record] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    #: Desired muxes that exist but have no usable service yet (not scanned, or the scan failed).
    without_service: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.ops

    def of(self, kinds: Iterable[str], actions: Iterable[str]) -> list[Op]:
        k, a = set(kinds), set(actions)
        return [op for op in self.ops if op.kind in k and op.action in a]

    def summary(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {a: {} for a in ("create", "update", "delete")}
        for op in self.ops:
            counts[op.action][op.kind] = counts[op.action].get(op.kind, 0) + 1
        return {
            "create": sum(counts["create"].values()),
            "update": sum(counts["update"].values()),
            "delete": sum(counts["delete"].values()),
            "by_kind": counts,
            "drift": sum(1 for op in self.ops if op.drift),
            "warnings": len(self.warnings),
            "without_service": len(self.without_service),
        }

    def drift(self) -> list[dict[str, Any]]:
        return [
            {
                "kind": op.kind,
                "name": op.name,
                "uuid": op.uuid,
                "what": op.drift,
                "fields": sorted(op.changes),
            }
            for op in self.ops
            if op.drift
        ]


# ---------------------------------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------------------------------


def _norm(current: Any, like: Any) -> Any:
    """`current` as TVHeadend returned it, in the type of the desired value, for a fair comparison."""
    if isinstance(like, bool):
        if isinstance(current, str):
            return current.strip().lower() in ("1", "true", "yes", "on")
        return bool(current)
    if isinstance(like, int):
        if isinstance(current, bool):
            return int(current)
        if isinstance(current, int):
            return current
        try:
            return int(str(current).strip())
        except ValueError:
            return current
    if isinstance(like, list | tuple):
        return sorted(set(current or []))
    return "" if current is None else str(current)


def field_digests(fields: Mapping[str, Any]) -> dict[str, str]:
    """A short digest per field: what TIC wrote, to tell later whether TIC or TVHeadend changed it."""
    out = {}
    for key, value in fields.items():
        normal = sorted(set(value)) if isinstance(value, list | tuple) else value
        # repr of str/int/bool/list-of-str is stable, and much cheaper than JSON for thousands of objects.
        out[key] = hashlib.blake2b(repr(normal).encode(), digest_size=6).hexdigest()
    return out


def _diff(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """Desired fields whose current value differs."""
    out: dict[str, Any] = {}
    for key, want in desired.items():
        have = _norm(current.get(key), want)
        target = sorted(set(want)) if isinstance(want, list | tuple) else want
        if have != target:
            out[key] = want
    return out


# ---------------------------------------------------------------------------------------------------
# The planner
# ---------------------------------------------------------------------------------------------------


class _Planner:
    def __init__(self, snapshot: Snapshot, lineup: Lineup) -> None:
        self.s = snapshot
        self.lineup = lineup
        self.plan = Plan()
        self.rec = lineup.records
        self.tags = {r["uuid"]: r for r in snapshot.tags}
        self.networks = {r["uuid"]: r for r in snapshot.networks}
        self.muxes = {r["uuid"]: r for r in snapshot.muxes}
        self.channels = {r["uuid"]: r for r in snapshot.channels}
        self.services_by_mux: dict[str, list[Row]] = {}
        for svc in snapshot.services:
            self.services_by_mux.setdefault(str(svc.get("multiplex_uuid", "")), []).append(svc)
        self.recorded = {kind: {r.uuid for (k, _), r in self.rec.items() if k == kind} for kind in KIND_ORDER}

    def _recorded_uuid(self, kind: str, key: str) -> str | None:
        record = self.rec.get((kind, key))
        return record.uuid if record else None

    def _drift(
        self, kind: str, key: str, uuid: str | None, changed: Mapping[str, Any], digests: Mapping[str, str]
    ) -> str | None:
        """Drift: TIC had published this object, and TVHeadend lost it or changed a field TIC did not."""
        record = self.rec.get((kind, key))
        if record is None:
            return None
        if uuid is None:
            return "deleted in TVHeadend"
        if record.uuid == uuid and any(record.digests.get(f) == digests.get(f) for f in changed):
            return "changed in TVHeadend"
        return None

    def _upsert(
        self,
        kind: Kind,
        key: str,
        name: str,
        uuid: str | None,
        current: Mapping[str, Any] | None,
        desired: dict[str, Any],
        *,
        create_fields: dict[str, Any] | None = None,
        display: Mapping[str, Any] | None = None,
        parent_key: str | None = None,
        hash_fields: Mapping[str, Any] | None = None,
    ) -> None:
        digests = field_digests(hash_fields if hash_fields is not None else desired)
        if uuid is None or current is None:
            conf = create_fields if create_fields is not None else desired
            self.plan.ops.append(
                Op(
                    "create",
                    kind,
                    name,
                    key=key,
                    fields=dict(conf),
                    changes={f: (None, _show(display, f, v)) for f, v in desired.items()},
                    drift=self._drift(kind, key, None, desired, digests),
                    parent_key=parent_key,
                    digests=digests,
                )
            )
            return
        self.plan.claims[(kind, key)] = uuid
        changed = _diff(current, desired)
        if not changed:
            self.plan.in_sync[(kind, key)] = Record(uuid, digests)
            return
        self.plan.ops.append(
            Op(
                "update",
                kind,
                name,
                key=key,
                uuid=uuid,
                fields=changed,
                changes={
                    f: (_show(display, f, current.get(f), current=True), _show(display, f, v))
                    for f, v in changed.items()
                },
                drift=self._drift(kind, key, uuid, changed, digests),
                digests=digests,
            )
        )

    def _delete(self, kind: Kind, rows: Iterable[Row], name_field: str) -> None:
        for row in rows:
            self.plan.ops.append(
                Op(
                    "delete",
                    kind,
                    str(row.get(name_field) or row.get("name") or row["uuid"]),
                    uuid=row["uuid"],
                )
            )

    # -- tags -------------------------------------------------------------------------------------

    def plan_tags(self) -> None:
        managed = {u for u, r in self.tags.items() if str(r.get("comment", "")).startswith(TAG_COMMENT)} | (
            self.recorded["tag"] & set(self.tags)
        )
        unclaimed = set(managed)
        by_name: dict[str, list[str]] = {}
        for u in sorted(managed):
            by_name.setdefault(str(self.tags[u].get("name", "")), []).append(u)
        unmanaged_names = {str(r.get("name")) for u, r in self.tags.items() if u not in managed}
        for tag in self.lineup.tags:
            uuid = self._recorded_uuid("tag", tag.key)
            if uuid not in unclaimed:
                uuid = next((u for u in by_name.get(tag.name, []) if u in unclaimed), None)
            if uuid is not None:
                unclaimed.discard(uuid)
            if tag.name in unmanaged_names:
                self.plan.warnings.append(
                    {
                        "kind": "tag",
                        "name": tag.name,
                        "message": "TVHeadend also has a tag of this name that TIC does not manage; "
                        "TIC keeps its own and leaves that one alone",
                    }
                )
            self._upsert("tag", tag.key, tag.name, uuid, self.tags.get(uuid or ""), tag.fields)
        self.managed_tags = managed
        self._delete("tag", (self.tags[u] for u in sorted(unclaimed)), "name")

    # -- networks ---------------------------------------------------------------------------------

    def plan_networks(self) -> None:
        managed = {
            u for u, r in self.networks.items() if str(r.get("networkname", "")).startswith(NETWORK_PREFIX)
        } | (self.recorded["network"] & set(self.networks))
        unclaimed = set(managed)
        for net in self.lineup.networks:
            uuid = self._recorded_uuid("network", net.key)
            if uuid not in self.networks:
                uuid = next(
                    (u for u in sorted(unclaimed) if self.networks[u].get("networkname") == net.name), None
                )
            if uuid is not None:
                unclaimed.discard(uuid)
            create = {**net.fields, "max_bandwidth": 0, "scan_create": True, "bouquet": False}
            self._upsert(
                "network",
                net.key,
                net.name,
                uuid,
                self.networks.get(uuid or ""),
                net.fields,
                create_fields=create,
            )
        self.managed_networks = managed
        self._delete("network", (self.networks[u] for u in sorted(unclaimed)), "networkname")

    # -- muxes ------------------------------------------------------------------------------------

    def plan_muxes(self) -> None:
        managed = {u for u, r in self.muxes.items() if r.get("network_uuid") in self.managed_networks} | (
            self.recorded["mux"] & set(self.muxes)
        )
        unclaimed = set(managed)
        by_key: dict[str, list[str]] = {}
        for u in sorted(managed):
            k = mux_key_of(self.muxes[u].get("iptv_muxname"))
            if k is not None:
                by_key.setdefault(k, []).append(u)
        for mux in self.lineup.muxes:
            net_uuid = self.plan.claims.get(("network", mux.network_key))
            uuid = self._recorded_uuid("mux", mux.key)
            if uuid not in unclaimed or self.muxes[uuid].get("network_uuid") != net_uuid:
                uuid = next(
                    (
                        u
                        for u in by_key.get(mux.key, [])
                        if u in unclaimed and self.muxes[u].get("network_uuid") == net_uuid
                    ),
                    None,
                )
            if net_uuid is None:
                uuid = None
            if uuid is not None:
                unclaimed.discard(uuid)
            self._upsert(
                "mux",
                mux.key,
                mux.name,
                uuid,
                self.muxes.get(uuid or ""),
                dict(mux.fields),
                parent_key=mux.network_key,
            )
        self.managed_muxes = managed
        self._delete("mux", (self.muxes[u] for u in sorted(unclaimed)), "iptv_muxname")

    def _service_of(self, mux_uuid: str | None) -> str | None:
        """The service a mux contributes to its channel: the enabled one with the lowest service id."""
        rows = [s for s in self.services_by_mux.get(mux_uuid or "", []) if s.get("enabled", True)]
        if not rows:
            return None
        return str(min(rows, key=lambda s: (int(s.get("sid") or 0), str(s["uuid"])))["uuid"])

    # -- channels ---------------------------------------------------------------------------------

    def plan_channels(self) -> None:
        marker = self.plan.claims.get(("tag", MARKER_TAG_KEY))
        marker_tags = {u for u in self.managed_tags if self.tags[u].get("name") == MARKER_TAG_NAME} | (
            {marker} if marker else set()
        )
        managed_services = {
            str(s["uuid"]) for m in self.managed_muxes for s in self.services_by_mux.get(m, [])
        }
        managed = {u for u, r in self.channels.items() if marker_tags & set(r.get("tags") or [])} | (
            self.recorded["channel"] & set(self.channels)
        )
        unclaimed = set(managed)
        by_service: dict[str, str] = {}
        for u in sorted(managed):
            for s in self.channels[u].get("services") or []:
                by_service.setdefault(str(s), u)
        unmanaged_names = {str(r.get("name")) for u, r in self.channels.items() if u not in managed}
        tag_uuid = {t.key: self.plan.claims.get(("tag", t.key)) for t in self.lineup.tags}
        mux_names = {
            str(s["uuid"]): self.muxes.get(m, {}).get("iptv_muxname", m)
            for m, rows in self.services_by_mux.items()
            for s in rows
        }
        tag_names = {u: str(r.get("name")) for u, r in self.tags.items()}
        tag_names.update({f"new:{t.key}": t.name for t in self.lineup.tags})
        for ch in self.lineup.channels:
            services = [
                s for s in (self._service_of(self.plan.claims.get(("mux", k))) for k in ch.mux_keys) if s
            ]
            tags = [tag_uuid.get(k) or f"new:{k}" for k in (MARKER_TAG_KEY, *ch.tag_keys)]
            uuid = self._recorded_uuid("channel", ch.key)
            if uuid not in unclaimed:
                uuid = next((by_service[s] for s in services if by_service.get(s) in unclaimed), None)
            if uuid is None:
                uuid = next(
                    (
                        u
                        for u in sorted(unclaimed)
                        if self.channels[u].get("name") == ch.name
                        and _norm(self.channels[u].get("number"), 0) == ch.number
                    ),
                    None,
                )
            if uuid is not None:
                unclaimed.discard(uuid)
            if ch.name in unmanaged_names:
                self.plan.warnings.append(
                    {
                        "kind": "channel",
                        "name": ch.name,
                        "message": "TVHeadend has another channel of this name that TIC does not manage; "
                        "TIC leaves it alone and links TIC's guide only to its own channel",
                    }
                )
            current = self.channels.get(uuid or "")
            own = {"name": ch.name, "number": ch.number, "icon": ch.icon, "enabled": True}
            display = {"tags": tag_names, "services": mux_names}
            if current is None:
                create = {**own, "tags": tags, "services": services, "epgauto": True, "autoname": False}
                self._upsert(
                    "channel",
                    ch.key,
                    ch.name,
                    None,
                    None,
                    {**own, "tags": tags, "services": services},
                    create_fields=create,
                    display=display,
                    hash_fields={**own, "tags": tags, "services": services},
                )
                continue
            # Tags and services TIC does not manage (added by hand in TVHeadend) are kept as they are.
            cur_tags = [str(t) for t in current.get("tags") or []]
            cur_services = [str(s) for s in current.get("services") or []]
            keep_tags = [t for t in cur_tags if t not in self.managed_tags]
            keep_services = [s for s in cur_services if s not in managed_services]
            desired = {**own, "tags": keep_tags + tags, "services": keep_services + services}
            self._upsert(
                "channel",
                ch.key,
                ch.name,
                uuid,
                {**current, "icon": current.get("icon", "")},
                desired,
                display=display,
                hash_fields={**own, "tags": tags, "services": services},
            )
        self._delete("channel", (self.channels[u] for u in sorted(unclaimed)), "name")

    def report_services(self) -> None:
        for mux in self.lineup.muxes:
            uuid = self.plan.claims.get(("mux", mux.key))
            if uuid is None or self._service_of(uuid) is not None:
                continue
            row = self.muxes[uuid]
            result = int(row.get("scan_result") or 0)
            state = int(row.get("scan_state") or 0)
            if result == 2:
                reason = "the scan failed: TVHeadend could not play this stream"
            elif state in (1, 2, 3):
                reason = "waiting for TVHeadend to scan it"
            elif int(row.get("enabled", 1) or 0) != 1:
                reason = "the mux is disabled"
            else:
                reason = "scanned, but no service was found"
            self.plan.without_service.append(
                {
                    "kind": "mux",
                    "name": mux.name,
                    "uuid": uuid,
                    "scan_result": result,
                    "scanning": state in (1, 2, 3),
                    "reason": reason,
                }
            )


def _show(display: Mapping[str, Any] | None, field_name: str, value: Any, current: bool = False) -> Any:
    """A value for people: tag and service uuids become names."""
    names = (display or {}).get(field_name)
    if names is None or not isinstance(value, list | tuple):
        return value
    return [names.get(str(v), str(v)) for v in value]


def compute_plan(snapshot: Snapshot, lineup: Lineup) -> Plan:
    """Everything that must change in TVHeadend for it to show `lineup`; never touches unmanaged objects."""
    planner = _Planner(snapshot, lineup)
    planner.plan_tags()
    planner.plan_networks()
    planner.plan_muxes()
    planner.plan_channels()
    planner.report_services()
    plan = planner.plan
    plan.ops.sort(key=lambda op: (KIND_ORDER[op.kind], ACTION_ORDER[op.action], op.name))
    return plan
