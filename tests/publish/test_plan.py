"""The plan as a pure function: TVHeadend state + desired lineup -> creates, updates, deletes, drift."""

from __future__ import annotations

import copy
import itertools

from backend.publish.plan import (
    MARKER_TAG_COMMENT,
    MARKER_TAG_KEY,
    MARKER_TAG_NAME,
    TAG_COMMENT,
    DesiredChannel,
    DesiredMux,
    DesiredNetwork,
    DesiredTag,
    Lineup,
    Op,
    Plan,
    Record,
    Snapshot,
    compute_plan,
    field_digests,
    mux_key_of,
    mux_name,
)
from backend.publish.service import PlaylistInfo, stream_target

_ids = itertools.count(1)


def uid() -> str:
    return f"{next(_ids):032x}"


def lineup(*channels: tuple[str, int, list[str]], tags: dict[str, str] | None = None) -> Lineup:
    """Channels as (name, number, [urls]); one network "TIC: P" holds every mux."""
    out = Lineup(
        tags=[
            DesiredTag(MARKER_TAG_KEY, MARKER_TAG_NAME),
            *(DesiredTag(k, n) for k, n in (tags or {}).items()),
        ],
        networks=[DesiredNetwork("source:1", "TIC: P", 2)],
    )
    source_id = 100
    for index, (name, number, urls) in enumerate(channels, start=1):
        keys = []
        for position, url in enumerate(urls):
            source_id += 1
            keys.append(str(source_id))
            out.muxes.append(
                DesiredMux(
                    str(source_id),
                    "source:1",
                    str(index),
                    {
                        "iptv_url": url,
                        "iptv_muxname": mux_name(name, source_id),
                        "iptv_sname": name,
                        "iptv_epgid": f"{name}.tic",
                        "channel_number": number,
                        "iptv_icon": "",
                        "iptv_hdr": "",
                        "priority": len(urls) - position,
                        "enabled": 1,
                        "epg": 0,
                    },
                )
            )
        out.channels.append(
            DesiredChannel(str(index), name, number, "", tuple((tags or {}).keys()), tuple(keys))
        )
    return out


def apply_ops(snapshot: Snapshot, plan: Plan, *, scan: bool = True) -> Snapshot:
    """A tiny TVHeadend: applies the plan's ops; a created mux gets its service when `scan`."""
    s = copy.deepcopy(snapshot)
    tables = {"tag": s.tags, "network": s.networks, "mux": s.muxes, "channel": s.channels}
    for op in plan.ops:
        table = tables[op.kind]
        if op.action == "delete":
            table[:] = [r for r in table if r["uuid"] != op.uuid]
            if op.kind == "mux":
                s.services[:] = [v for v in s.services if v["multiplex_uuid"] != op.uuid]
        elif op.action == "update":
            next(r for r in table if r["uuid"] == op.uuid).update(op.fields)
        else:
            row = {"uuid": uid(), **op.fields}
            if op.kind == "mux":
                row["network_uuid"] = plan.claims[("network", op.parent_key or "")]
                if scan:
                    s.services.append(
                        {"uuid": uid(), "multiplex_uuid": row["uuid"], "sid": 1, "enabled": True}
                    )
            row["tags"] = [t for t in row.get("tags", []) if not str(t).startswith("new:")]
            table.append(row)
            plan.claims[(op.kind, op.key or "")] = row["uuid"]
    return s


PHASES = (({"tag", "network"}, {"create", "update"}), ({"mux"}, {"delete", "create", "update"}), (None, None))


def converge(snapshot: Snapshot, desired: Lineup, rounds: int = 4) -> Snapshot:
    """Apply like the publish does: parents, then muxes, then the rest, planning afresh in between."""
    for _ in range(rounds):
        if compute_plan(snapshot, desired).empty:
            return snapshot
        for kinds, acts in PHASES:
            plan = compute_plan(snapshot, desired)
            if kinds is not None:
                plan.ops = [op for op in plan.ops if op.kind in kinds and op.action in acts]
            snapshot = apply_ops(snapshot, plan)
    raise AssertionError(f"did not converge: {[op.to_dict() for op in compute_plan(snapshot, desired).ops]}")


def records_of(snapshot: Snapshot, desired: Lineup) -> dict[tuple[str, str], Record]:
    return dict(compute_plan(snapshot, desired).in_sync)


def actions(plan: Plan) -> list[tuple[str, str, str]]:
    return [(op.action, op.kind, op.name) for op in plan.ops]


def unmanaged() -> Snapshot:
    """What a user already has in TVHeadend: an OTA network, its mux, service, channel and tags."""
    net, mux, svc, ch, tag = uid(), uid(), uid(), uid(), uid()
    return Snapshot(
        networks=[
            {"uuid": net, "networkname": "DVB-T", "max_streams": 0, "skipinitscan": True, "enabled": True}
        ],
        muxes=[{"uuid": mux, "network_uuid": net, "iptv_muxname": "Mux (TIC #101)", "iptv_url": ""}],
        services=[{"uuid": svc, "multiplex_uuid": mux, "sid": 1, "enabled": True}],
        channels=[
            {"uuid": ch, "name": "BBC One", "number": 1, "tags": [tag], "services": [svc], "enabled": True}
        ],
        tags=[{"uuid": tag, "name": "TV channels", "comment": "", "enabled": True}],
    )


def test_empty_tvheadend_gets_everything_created_in_dependency_order() -> None:
    desired = lineup(
        ("One", 101, ["http://a/1", "http://b/1"]), ("Two", 102, ["http://a/2"]), tags={"7": "News"}
    )
    plan = compute_plan(Snapshot(), desired)
    assert {op.action for op in plan.ops} == {"create"}
    assert [op.kind for op in plan.ops] == [
        "tag",
        "tag",
        "network",
        "mux",
        "mux",
        "mux",
        "channel",
        "channel",
    ]
    marker = next(op for op in plan.ops if op.key == MARKER_TAG_KEY)
    assert marker.fields["comment"] == MARKER_TAG_COMMENT
    network = next(op for op in plan.ops if op.kind == "network")
    assert network.fields["networkname"] == "TIC: P" and network.fields["max_streams"] == 2
    assert network.fields["skipinitscan"] is False
    one = [op for op in plan.ops if op.kind == "mux" and op.fields["iptv_sname"] == "One"]
    assert [m.fields["priority"] for m in one] == [2, 1]
    assert plan.summary()["create"] == 8 and plan.drift() == []


def test_plan_of_the_result_is_empty_and_records_everything() -> None:
    desired = lineup(
        ("One", 101, ["http://a/1", "http://b/1"]), ("Two", 102, ["http://a/2"]), tags={"7": "News"}
    )
    state = converge(Snapshot(), desired)
    plan = compute_plan(state, desired)
    assert plan.empty
    assert set(plan.in_sync) == {
        ("tag", "marker"),
        ("tag", "7"),
        ("network", "source:1"),
        *(("mux", m.key) for m in desired.muxes),
        ("channel", "1"),
        ("channel", "2"),
    }
    one = next(c for c in state.channels if c["name"] == "One")
    assert len(one["services"]) == 2, "both sources merge into one channel"


def test_unmanaged_objects_are_never_touched_even_with_a_marker_like_mux_name() -> None:
    desired = lineup(("One", 101, ["http://a/1"]))
    start = unmanaged()
    state = converge(start, desired)
    plan = compute_plan(state, lineup())  # the lineup emptied: everything of TIC's goes
    touched = {op.uuid for op in plan.ops}
    for table in ("networks", "muxes", "channels", "tags"):
        for row in getattr(start, table):
            assert row["uuid"] not in touched
    assert sorted((op.action, op.kind) for op in plan.ops) == [("delete", "channel"), ("delete", "mux")]
    after = apply_ops(state, plan)
    for table in ("networks", "muxes", "services", "channels", "tags"):
        for row in getattr(start, table):
            assert row in getattr(after, table)


def test_an_unmanaged_channel_with_the_same_name_gets_a_warning_not_a_change() -> None:
    start = unmanaged()
    desired = lineup(("BBC One", 1, ["http://a/1"]))
    plan = compute_plan(start, desired)
    assert [w["kind"] for w in plan.warnings] == ["channel"]
    assert all(op.uuid != start.channels[0]["uuid"] for op in plan.ops)
    assert sum(1 for op in plan.ops if op.kind == "channel" and op.action == "create") == 1


def test_changed_lineup_is_an_update_and_not_drift() -> None:
    desired = lineup(("One", 101, ["http://a/1"]))
    state = converge(Snapshot(), desired)
    renamed = lineup(("Uno", 101, ["http://a/1"]))
    renamed.records = records_of(state, desired)
    plan = compute_plan(state, renamed)
    assert sorted((op.kind, op.action) for op in plan.ops) == [("channel", "update"), ("mux", "update")]
    channel = next(op for op in plan.ops if op.kind == "channel")
    assert channel.fields == {"name": "Uno"} and channel.drift is None
    assert channel.changes["name"] == ("One", "Uno")


def test_changes_made_in_tvheadend_are_drift_and_put_back() -> None:
    desired = lineup(("One", 101, ["http://a/1"]))
    state = converge(Snapshot(), desired)
    desired.records = records_of(state, desired)
    channel = state.channels[0]
    channel["name"] = "Renamed by hand"
    mux_uuid = state.muxes[0]["uuid"]
    state.muxes.clear()
    state.services.clear()
    plan = compute_plan(state, desired)
    drift = {(d["kind"], d["what"]) for d in plan.drift()}
    assert drift == {("channel", "changed in TVHeadend"), ("mux", "deleted in TVHeadend")}
    assert not any(op.uuid == mux_uuid for op in plan.ops)
    converge(state, desired)


def test_a_mux_whose_uuid_was_lost_is_found_by_its_key_and_not_duplicated() -> None:
    desired = lineup(("One", 101, ["http://a/1"]))
    state = converge(Snapshot(), desired)
    # The create's reply was lost: TIC has no record, TVHeadend has the mux and the channel.
    plan = compute_plan(state, desired)
    assert plan.empty
    assert mux_key_of(state.muxes[0]["iptv_muxname"]) == desired.muxes[0].key


def test_tags_and_services_added_by_hand_to_a_managed_channel_are_kept() -> None:
    desired = lineup(("One", 101, ["http://a/1"]))
    state = converge(Snapshot(), desired)
    own_tag, own_service = uid(), uid()
    state.tags.append({"uuid": own_tag, "name": "Mine", "comment": ""})
    state.channels[0]["tags"].append(own_tag)
    state.channels[0]["services"].append(own_service)
    assert compute_plan(state, desired).empty


def test_a_managed_tag_added_by_hand_is_removed_from_the_channel() -> None:
    desired = lineup(("One", 101, ["http://a/1"]), tags={"7": "News"})
    state = converge(Snapshot(), desired)
    stray = uid()
    state.tags.append({"uuid": stray, "name": "Old", "comment": TAG_COMMENT})
    state.channels[0]["tags"].append(stray)
    plan = compute_plan(state, desired)
    assert sorted((op.kind, op.action) for op in plan.ops) == [("channel", "update"), ("tag", "delete")]
    update = next(op for op in plan.ops if op.kind == "channel")
    assert stray not in update.fields["tags"]


def test_mux_without_service_is_reported_with_the_reason() -> None:
    desired = lineup(("One", 101, ["http://a/1"]))
    plan = compute_plan(Snapshot(), desired)
    state = apply_ops(Snapshot(), plan, scan=False)
    state.muxes[0].update(scan_state=0, scan_result=2)
    state = apply_ops(state, compute_plan(state, desired), scan=False)
    final = compute_plan(state, desired)
    assert final.empty
    assert [p["reason"] for p in final.without_service] == [
        "the scan failed: TVHeadend could not play this stream"
    ]


def test_field_digests_ignore_list_order() -> None:
    assert field_digests({"tags": ["a", "b"]}) == field_digests({"tags": ["b", "a"]})
    assert field_digests({"name": "a"}) != field_digests({"name": "b"})


def test_op_serialises_for_the_preview() -> None:
    op = Op(
        "update",
        "channel",
        "One",
        key="1",
        uuid="u",
        fields={"name": "Uno"},
        changes={"name": ("One", "Uno")},
    )
    assert op.to_dict() == {
        "action": "update",
        "kind": "channel",
        "name": "One",
        "uuid": "u",
        "drift": None,
        "changes": {"name": {"from": "One", "to": "Uno"}},
    }


def test_stream_target_turns_pipe_and_source_headers_into_iptv_hdr() -> None:
    source = PlaylistInfo(1, "P", True, None, "Agent/1", {"X-Token": "abc"})
    url, hdr = stream_target(
        "http://h/s.ts|Referer=http%3A%2F%2Fr%2F&User-Agent=Kodi", {"Origin": "o\r\nEvil: 1"}, source
    )
    assert url == "http://h/s.ts"
    assert hdr == "User-Agent: Kodi\nX-Token: abc\nOrigin: o  Evil: 1\nReferer: http://r/\n"
    assert stream_target("udp://239.0.0.1:1234", {"A": "b"}, None) == ("udp://239.0.0.1:1234", "")


def test_same_as_tells_a_changed_lineup_from_a_reloaded_one() -> None:
    desired = lineup(("One", 101, ["http://a/1", "http://b/1"]), tags={"7": "News"})
    reloaded = copy.deepcopy(desired)
    reloaded.records = {("channel", "1"): Record(uid())}
    assert desired.same_as(reloaded), "records and skipped sources are not part of what is published"
    moved = copy.deepcopy(desired)
    mux = moved.muxes[1]
    moved.muxes[1] = DesiredMux(mux.key, mux.network_key, mux.channel_key, {**mux.fields, "priority": 9})
    assert not desired.same_as(moved)
    renamed = copy.deepcopy(desired)
    renamed.tags[1] = DesiredTag("7", "Sport")
    assert not desired.same_as(renamed)
