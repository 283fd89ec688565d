"""Recurring rules: API validation, expansion against the guide, no duplicates across guide refreshes, preview."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backend.dvr.rules import apply_rules
from backend.dvr.service import DvrDefaults
from tests.dvr.conftest import (
    Guide,
    TokenClient,
    all_recordings,
    insert_recording,
    reconcile,
    recording,
    soon,
)

DEFAULTS = DvrDefaults(padding_before=2, padding_after=5, max_parallel=2)
HORIZON = timedelta(days=14)


async def apply(svc: Any, now: datetime | None = None) -> Any:
    async with svc.db.transaction() as session:
        return await apply_rules(session, DEFAULTS, HORIZON, now)


async def add_rule(client: TokenClient, **fields: Any) -> dict[str, Any]:
    resp = await client.post("/tic-api/recording-rules", json=fields)
    body = await resp.get_json()
    assert resp.status_code == 201, body
    return dict(body)


async def test_rule_validation(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    cases = [
        ({"title_pattern": "(unclosed", "match_mode": "regex"}, "INVALID_REGEX", "title_pattern"),
        ({"title_pattern": "x", "time_from": "25:00"}, "INVALID", "time_from"),
        ({"title_pattern": "x", "timezone": "Mars/Olympus"}, "INVALID", "timezone"),
        ({"title_pattern": "x", "timezone": "../../etc/passwd"}, "INVALID", "timezone"),
        ({"title_pattern": "x", "weekdays": [7]}, "INVALID", "weekdays.0"),
        ({"title_pattern": "x", "channel_ids": [404]}, "CHANNEL_NOT_FOUND", "channel_ids"),
        ({"title_pattern": "   "}, "INVALID_PATTERN", "title_pattern"),
    ]
    for payload, code, field in cases:
        resp = await boss.post("/tic-api/recording-rules", json=payload)
        body = await resp.get_json()
        assert resp.status_code == 400, (payload, body)
        assert body["code"] == code and field in body["fields"], body
    bad = await (
        await boss.post("/tic-api/recording-rules", json={"title_pattern": "a[b", "match_mode": "regex"})
    ).get_json()
    assert "unterminated character set" in bad["message"]
    rule = await add_rule(
        boss, title_pattern="News", timezone="Europe/Berlin", time_from="18:00", weekdays=[0, 4]
    )
    assert rule["name"] == "News" and rule["match_mode"] == "contains" and rule["enabled"] is True
    patched = await (
        await boss.patch(f"/tic-api/recording-rules/{rule['id']}", json={"time_from": None, "enabled": False})
    ).get_json()
    assert patched["time_from"] is None and patched["enabled"] is False and patched["weekdays"] == [0, 4]
    bad_patch = await boss.patch(
        f"/tic-api/recording-rules/{rule['id']}", json={"title_pattern": "(", "match_mode": "regex"}
    )
    assert (await bad_patch.get_json())["code"] == "INVALID_REGEX"
    listed = await (await boss.get("/tic-api/recording-rules")).get_json()
    assert listed["total"] == 1
    assert (await boss.delete(f"/tic-api/recording-rules/{rule['id']}")).status_code == 204
    assert (await boss.get(f"/tic-api/recording-rules/{rule['id']}")).status_code == 404


async def test_apply_schedules_matches_once(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    one = await guide.channel("One")
    two = await guide.channel("Two")
    hidden = await guide.channel("Hidden", published=False)
    base = soon(60)
    for day in range(3):
        start = base + timedelta(days=day)
        await guide.programme(one, start, 30, "Evening News", episode_num=f"ep{day}")
        await guide.programme(two, start, 60, "The evening news review")
        await guide.programme(hidden, start, 30, "Evening News")
        await guide.programme(one, start + timedelta(hours=1), 30, "Cooking")
    await guide.programme(one, base + timedelta(days=20), 30, "Evening News")  # beyond the horizon
    await guide.programme(one, base - timedelta(hours=3), 30, "Evening News")  # already over
    await add_rule(boss, title_pattern="evening NEWS", padding_after=10)
    report = await apply(svc)
    assert report.created == 6
    recs = await all_recordings(svc)
    assert {r.channel_id for r in recs} == {one.id, two.id}
    assert all(r.rule_id is not None and r.owner_id == boss.user_id and r.padding_after == 10 for r in recs)
    assert all(r.padding_before == DEFAULTS.padding_before for r in recs)
    again = await apply(svc)
    assert not again.changed and len(await all_recordings(svc)) == 6


async def test_guide_refresh_moves_recordings_instead_of_duplicating(
    configured: Any, boss: TokenClient, guide: Guide, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    base = soon(120)
    await guide.programme(ch, base, 30, "Series", season=1, episode=1)
    await guide.programme(ch, base + timedelta(minutes=30), 30, "Series", season=1, episode=2)
    await guide.programme(ch, base + timedelta(days=1), 45, "Film Club")
    await add_rule(boss, title_pattern="Series")
    await add_rule(boss, title_pattern="Film Club")
    await apply(svc)
    await reconcile(svc)
    before = {r.episode_key: r for r in await all_recordings(svc)}
    assert set(before) == {"s1e1", "s1e2", None}

    # The guide is re-imported: every programme gets a new id; episode 1 slips 10 minutes,
    # episode 2 moves three hours, the film (no episode data) starts 20 minutes later.
    await guide.clear_programmes()
    await guide.programme(ch, base + timedelta(minutes=10), 30, "Series", season=1, episode=1)
    await guide.programme(ch, base + timedelta(hours=3, minutes=30), 30, "Series", season=1, episode=2)
    await guide.programme(ch, base + timedelta(days=1, minutes=20), 45, "Film Club")
    report = await apply(svc)
    assert report.created == 0 and report.moved == 3
    after = {r.episode_key: r for r in await all_recordings(svc)}
    assert {k: r.id for k, r in after.items()} == {k: r.id for k, r in before.items()}
    assert after["s1e1"].start == base + timedelta(minutes=10)
    assert after["s1e2"].start == base + timedelta(hours=3, minutes=30)
    assert after[None].start == base + timedelta(days=1, minutes=20)
    assert all(r.needs_update for r in after.values())
    await reconcile(svc)
    entry = tvh.state.dvr_entries[after["s1e2"].tvh_uuid]
    assert entry["start"] == int((base + timedelta(hours=3, minutes=30)).timestamp())
    assert len(tvh.state.dvr_entries) == 3 and len(tvh.calls_to("api/dvr/entry/create")) == 3


async def test_programme_gone_from_the_guide_is_dropped(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    base = soon(120)
    await guide.programme(ch, base, 30, "Talk Show")
    await add_rule(boss, title_pattern="Talk Show")
    await apply(svc)
    await guide.clear_programmes()
    # The slot now holds something else: the airing was replaced.
    await guide.programme(ch, base, 30, "Breaking News Special")
    report = await apply(svc)
    assert report.dropped == 1
    (rec,) = await all_recordings(svc)
    assert rec.status == "cancelled" and rec.pending_action == "cancel"
    # A slot the guide says nothing about yet is left alone.
    await guide.clear_programmes()
    await guide.programme(ch, base + timedelta(days=2), 30, "Talk Show")
    await apply(svc)
    await guide.clear_programmes()
    report = await apply(svc)
    assert report.dropped == 0


async def test_cancelled_rule_recording_is_not_recreated(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    await guide.programme(ch, soon(120), 30, "Quiz")
    await add_rule(boss, title_pattern="Quiz")
    await apply(svc)
    (rec,) = await all_recordings(svc)
    assert (await boss.post(f"/tic-api/recordings/{rec.id}/cancel")).status_code == 200
    report = await apply(svc)
    assert report.created == 0 and len(await all_recordings(svc)) == 1


async def test_new_episodes_only(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    other = await guide.channel("Other")
    done = await insert_recording(svc, ch, title="Drama", minutes_ago=60 * 24 * 3)
    async with svc.db.transaction() as session:
        from backend.dvr.models import Recording

        row = await session.get(Recording, done)
        assert row is not None
        row.episode_key = "s3e1"
    base = soon(60)
    await guide.programme(ch, base, 50, "Drama", season=3, episode=1)  # already recorded
    await guide.programme(ch, base + timedelta(days=1), 50, "Drama", season=3, episode=2)  # new
    await guide.programme(
        other, base + timedelta(days=2), 50, "Drama", season=3, episode=2
    )  # repeat of a new one
    await guide.programme(ch, base + timedelta(days=3), 50, "Drama", sub_title="Christmas Special")
    await guide.programme(
        ch, base + timedelta(days=4), 50, "DRAMA", sub_title="christmas  special"
    )  # same, by subtitle
    await add_rule(boss, title_pattern="drama", new_episodes_only=True)
    report = await apply(svc)
    assert report.created == 2
    keys = sorted(r.episode_key or "" for r in await all_recordings(svc) if r.rule_id is not None)
    assert keys == ["s3e2", "sub:christmas special"]


async def test_channels_weekdays_and_time_window(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    one = await guide.channel("One")
    two = await guide.channel("Two")
    # Find the next Monday 00:00 in New York, then place airings around it (in UTC).
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    local = datetime.now(ny) + timedelta(days=1)
    monday = (local + timedelta(days=(7 - local.weekday()) % 7)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    slots = {
        "mon-evening": monday.replace(hour=20),
        "mon-late": monday.replace(hour=23, minute=30),
        "tue-early": (monday + timedelta(days=1)).replace(hour=1),
        "tue-noon": (monday + timedelta(days=1)).replace(hour=12),
        "wed-evening": (monday + timedelta(days=2)).replace(hour=20),
    }
    for name, when in slots.items():
        await guide.programme(one, when.astimezone(UTC), 30, f"Show {name}")
        await guide.programme(two, when.astimezone(UTC), 30, f"Show {name}")
    await add_rule(
        boss,
        title_pattern="show",
        channel_ids=[one.id],
        weekdays=[0, 1],
        time_from="22:00",
        time_to="02:00",
        timezone="America/New_York",
    )
    await apply(svc)
    recs = await all_recordings(svc)
    assert sorted(r.title for r in recs) == ["Show mon-late", "Show tue-early"]
    assert {r.channel_id for r in recs} == {one.id}


async def test_regex_rules_match_in_a_child_process(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    base = soon(60)
    for i, title in enumerate(["Match of the Day", "Match Point", "The Match", "Matchmakers"]):
        await guide.programme(ch, base + timedelta(hours=i), 30, title)
    await add_rule(boss, title_pattern=r"^match (of|point)\b", match_mode="regex")
    await apply(svc)
    assert sorted(r.title for r in await all_recordings(svc)) == ["Match Point", "Match of the Day"]


async def test_keep_last(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    rule = await add_rule(boss, title_pattern="Daily", keep_last=2)
    ids = [await insert_recording(svc, ch, title="Daily", minutes_ago=60 * 24 * d) for d in (1, 2, 3, 4)]
    async with svc.db.transaction() as session:
        from backend.dvr.models import Recording

        for rid in ids:
            row = await session.get(Recording, rid)
            assert row is not None
            row.rule_id = rule["id"]
    report = await apply(svc)
    assert report.pruned == 2
    kept = [r.id for r in await all_recordings(svc) if not r.deleted]
    assert kept == ids[:2]


async def test_preview_shows_next_seven_days_without_writing(
    boss: TokenClient, guide: Guide, svc: Any
) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    base = soon(60)
    first = await guide.programme(ch, base, 30, "Nature", season=1, episode=1)
    await guide.programme(ch, base + timedelta(days=1), 30, "Nature", season=1, episode=1)  # a repeat
    await guide.programme(ch, base + timedelta(days=2), 30, "Nature", season=1, episode=2)
    await guide.programme(ch, base + timedelta(days=9), 30, "Nature", season=1, episode=3)  # after 7 days
    resp = await boss.post("/tic-api/recordings", json={"programme_id": first.id})
    assert resp.status_code == 201
    scheduled = (await resp.get_json())["id"]
    body = await (
        await boss.post(
            "/tic-api/recording-rules/preview", json={"title_pattern": "nature", "new_episodes_only": True}
        )
    ).get_json()
    assert body["days"] == 7 and body["total"] == 3
    verdicts = [(i["episode"], i["would_record"], i["reason"]) for i in body["items"]]
    assert verdicts == [
        ("S01E01", False, f"already scheduled (recording {scheduled})"),
        ("S01E01", False, "this episode was already recorded or is scheduled"),
        ("S01E02", True, None),
    ]
    assert len(await all_recordings(svc)) == 1
    bad = await boss.post(
        "/tic-api/recording-rules/preview", json={"title_pattern": "((", "match_mode": "regex"}
    )
    assert bad.status_code == 400 and (await bad.get_json())["code"] == "INVALID_REGEX"


async def test_rule_change_queues_apply_and_the_job_reconciles(
    configured: Any, boss: TokenClient, guide: Guide, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    await guide.programme(ch, soon(90), 30, "Late Show")
    await add_rule(boss, title_pattern="Late Show")
    await svc.broker.resume()

    async def scheduled_in_tvh() -> bool:
        recs = await all_recordings(svc)
        return len(recs) == 1 and recs[0].tvh_uuid is not None

    from tests.dvr.conftest import eventually

    await eventually(scheduled_in_tvh, timeout=15)
    rec = (await all_recordings(svc))[0]
    assert (await recording(svc, rec.id)).tvh_uuid in tvh.state.dvr_entries
