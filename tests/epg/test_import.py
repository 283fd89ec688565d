"""Every corpus guide imported through the API from a fake provider, with hand-checked programmes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, select

from backend.epg.models import EpgChannel, Programme
from tests.conftest import CORPUS, ApiClient
from tests.epg.conftest import WIDE, create_source, epg_channels, get_source, run_import
from tests.fakes.upstream import FakeProvider

# (channels, programmes) each guide leaves in the database with a 100-year window. They are the
# figures of corpus/SOURCES.md less what a guide cannot place: a channel's last programme without
# a stop time (ontvtonight: 98; amp, overlap), programmes that stop at or before their start
# (intervals, overlap), and ids that only programmes mention count as channels (the xmltv-project
# samples declare none).
EXPECTED: dict[str, tuple[int, int]] = {
    "dispatcharr__test_epg.xml": (3, 4),
    "i-mjh-nz__Kayo_epg.xml": (13, 1300),
    "i-mjh-nz__MeTV_epg.xml": (1, 235),
    "i-mjh-nz__PBS_all.xml": (146, 5221),
    "i-mjh-nz__PlutoTV_us.xml.gz": (421, 7172),
    "i-mjh-nz__SamsungTVPlus_kr.xml": (179, 1425),
    "i-mjh-nz__nz_epg.xml.gz": (45, 5510),
    "i-mjh-nz__world_epg.xml": (4, 259),
    "iptv-org-epg__energeek.cl.xml": (5, 294),
    "iptv-org-epg__epg.iptvx.one.xml": (1, 230),
    "iptv-org-epg__epg.tmacaraibes.com.xml": (1, 318),
    "iptv-org-epg__epgshare01.online.xml": (2, 203),
    "iptv-org-epg__guide_ontvtonight.com_2021.xml": (98, 2593),
    "iptv-org-epg__guide_programme-tv.net_2021.xml": (273, 9204),
    "iptv-org-epg__guide_tv.yandex.ru_2021.xml": (14, 516),
    "iptv-org-epg__guide_tvplus.com.tr_2024.xml": (144, 4525),
    "iptv-org-epg__guide_zap2it-disney_2025.xml": (4, 360),
    "iptv-org-epg__vantagetv.ee.xml": (3, 332),
    "iptv-org-epg__x1co.com.br.xml": (1, 91),
    "jellyfin-xmltv__schedulesdirect.xml": (2, 2),
    "xmltv-project__amp.xml": (1, 1),
    "xmltv-project__clump.xml": (1, 2),
    "xmltv-project__intervals.xml": (1, 4),
    "xmltv-project__length.xml": (1, 1),
    "xmltv-project__overlap.xml": (5, 8),
}
# Guides with nothing usable fail cleanly, with the code and words of the refusal.
REFUSED: dict[str, tuple[str, str]] = {
    "xmltv-project__empty.xml": ("XMLTV_EMPTY", "no channels and no programmes"),
    # Its one programme has no stop and nothing after it on its channel to end it.
    "xmltv-project__test.xml": ("XMLTV_NO_USABLE_PROGRAMMES", "without a stop time"),
}
# (title, start) -> fields the API must show; times worked out by hand from the file's own offsets.
HAND_CHECKED: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "i-mjh-nz__nz_epg.xml.gz": [
        # 20260823080000 +1200: New Zealand time is twelve hours ahead, so the day before in UTC.
        (
            "Mongolian Death Worm",
            "2026-08-22T20:00:00Z",
            {"stop": "2026-08-22T21:45:00Z", "xmltv_channel_id": "mjh-sky-ptms"},
        ),
        ("The Haunted Museum", "2026-08-22T20:00:00Z", {"season": 1, "episode": 2, "episode_num": "S01E02"}),
    ],
    "iptv-org-epg__guide_tvplus.com.tr_2024.xml": [
        # xmltv_ns "4.350.0/1" is zero-based: season 5, episode 351, as its onscreen S05E351 says.
        (
            "Ben Bilirim",
            "2024-12-16T16:00:00Z",
            {"stop": "2024-12-16T18:00:00Z", "season": 5, "episode": 351},
        ),
    ],
    "i-mjh-nz__MeTV_epg.xml": [
        (
            "Wagon Train",
            "2026-08-22T15:00:00Z",
            {"sub_title": "The Hiram Winthrop Story", "season": 5, "episode": 36},
        ),
    ],
    "i-mjh-nz__PBS_all.xml": [
        # 20260822010000 -0400 is 05:00 UTC.
        (
            "Amanpour and Company",
            "2026-08-22T05:00:00Z",
            {"stop": "2026-08-22T06:00:00Z", "season": 8, "episode": 233},
        ),
    ],
    "iptv-org-epg__x1co.com.br.xml": [
        # Odd seconds at -0300: 08:42:50 local is 11:42:50 UTC.
        ("Bob Esponja", "2026-05-03T11:42:50Z", {"stop": "2026-05-03T11:52:22Z", "sub_title": "T5 Ep37"}),
    ],
    "xmltv-project__amp.xml": [("News", "2002-10-10T08:00:00Z", {"stop": "2002-10-10T08:55:00Z"})],
    "iptv-org-epg__epg.tmacaraibes.com.xml": [
        # The source prefers Spanish among four languages; 00:00 at -0400 is 04:00 UTC.
        ("GLOBAL", "2026-05-03T04:00:00Z", {"description": "Toda la música africana y caribeña."}),
    ],
}
LANGUAGES = {"iptv-org-epg__epg.tmacaraibes.com.xml": "es"}


async def find_programme(client: ApiClient, source_id: int, title: str, start: str) -> dict[str, Any]:
    query = urlencode({"q": title, "source_id": source_id, "limit": 500})
    body = await (await client.get(f"/tic-api/programmes?{query}")).get_json()
    found = [p for p in body["items"] if p["title"] == title and p["start"] == start]
    assert found, f"no {title!r} at {start}: {[(p['title'], p['start']) for p in body['items']][:5]}"
    return found[0]


async def test_every_corpus_guide_imports_through_the_api(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    """All 27 guides, one source each, in one app (an app per guide would triple the suite's time)."""
    assert len(EXPECTED) + len(REFUSED) == len(list((CORPUS / "xmltv").iterdir())) == 27
    problems: list[str] = []
    for name in sorted([*EXPECTED, *REFUSED]):
        try:
            await check_corpus_guide(name, admin, provider, quiet)
        except AssertionError as exc:
            problems.append(f"{name}: {exc}")
    assert not problems, "\n".join(problems)


async def check_corpus_guide(name: str, admin: ApiClient, provider: FakeProvider, quiet: Any) -> None:
    provider.add_corpus_file(f"/{name}", f"xmltv/{name}")
    source = await create_source(
        admin, name=name, url=provider.url(f"/{name}"), preferred_language=LANGUAGES.get(name), **WIDE
    )

    task = await run_import(admin, source["id"])

    after = await get_source(admin, source["id"])
    if name in REFUSED:
        code, words = REFUSED[name]
        assert task["status"] == "failed" and code in task["error"] and words in task["error"], task["error"]
        assert after["last_import_status"] == "failed" and words in after["last_import_error"]
        assert after["programme_count"] == 0
        return
    assert task["status"] == "succeeded", task["error"]
    channels, programmes = EXPECTED[name]
    assert (after["channel_count"], after["programme_count"]) == (channels, programmes)
    assert after["last_import_status"] == "succeeded" and after["last_import_error"] is None
    async with quiet.db.session() as session:
        stored = await session.scalar(select(func.count()).where(Programme.source_id == source["id"]))
        rows = await session.scalar(select(func.count()).where(EpgChannel.source_id == source["id"]))
        counted = await session.scalar(
            select(func.sum(EpgChannel.programme_count)).where(EpgChannel.source_id == source["id"])
        )
    assert (stored, rows, counted) == (programmes, channels, programmes)
    for title, start, fields in HAND_CHECKED.get(name, []):
        programme = await find_programme(admin, source["id"], title, start)
        assert {key: programme[key] for key in fields} == fields, programme


async def test_channels_keep_names_icons_numbers_and_counts(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    provider.add_corpus_file("/pbs.xml", "xmltv/i-mjh-nz__PBS_all.xml")
    provider.add_corpus_file("/kayo.xml", "xmltv/i-mjh-nz__Kayo_epg.xml")
    pbs = await create_source(admin, name="PBS", url=provider.url("/pbs.xml"), **WIDE)
    kayo = await create_source(admin, name="Kayo", url=provider.url("/kayo.xml"), **WIDE)
    assert (await run_import(admin, pbs["id"]))["status"] == "succeeded"
    assert (await run_import(admin, kayo["id"]))["status"] == "succeeded"

    pbs_channels = await epg_channels(admin, pbs["id"])
    wttw = pbs_channels["WTTW"]
    # Three display-names in file order: call sign, network and virtual channel number.
    assert len(wttw["display_names"]) == 3 and wttw["number"] == wttw["display_names"][2][0]
    assert (
        wttw["programme_count"] > 0 and wttw["first_start"].endswith("Z") and wttw["last_stop"].endswith("Z")
    )
    kayo_channels = await epg_channels(admin, kayo["id"])
    numbered = [c for c in kayo_channels.values() if c["number"]]
    assert numbered, "Kayo channels carry <lcn> numbers"
    assert all("&amp;" not in (c["icon"] or "") for c in kayo_channels.values())
    assert any("&" in (c["icon"] or "") for c in kayo_channels.values())

    filtered = await (await admin.get(f"/tic-api/epgs/{pbs['id']}/channels?q=wttw&limit=5")).get_json()
    assert filtered["total"] >= 1 and all("WTTW" in item["channel_id"] for item in filtered["items"])
    paged = await (await admin.get(f"/tic-api/epgs/{pbs['id']}/channels?limit=10&offset=10")).get_json()
    assert paged["total"] == 146 and len(paged["items"]) == 10


async def test_same_file_is_skipped_and_a_forced_import_changes_nothing(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    provider.add_corpus_file("/kayo.xml", "xmltv/i-mjh-nz__Kayo_epg.xml")
    source = await create_source(admin, url=provider.url("/kayo.xml"), **WIDE)
    first = await run_import(admin, source["id"])
    async with quiet.db.session() as session:
        ids = set(
            (await session.scalars(select(Programme.id).where(Programme.source_id == source["id"]))).all()
        )

    again = await run_import(admin, source["id"])
    forced = await run_import(admin, source["id"], force=True)

    assert first["status"] == again["status"] == forced["status"] == "succeeded"
    assert "has not changed" in again["message"]
    assert "0 new or changed, 0 removed" in forced["message"]
    async with quiet.db.session() as session:
        kept = set(
            (await session.scalars(select(Programme.id).where(Programme.source_id == source["id"]))).all()
        )
    # Unchanged programmes are kept as they are (same rows), not deleted and inserted again.
    assert kept == ids and len(ids) == 1300


async def test_a_changed_guide_only_touches_what_changed(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    original = (CORPUS / "xmltv" / "iptv-org-epg__x1co.com.br.xml").read_bytes()
    provider.add_file("/g.xml", original)
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)
    await run_import(admin, source["id"])
    changed = original.replace(
        b'<title lang="pt">Bob Esponja</title>', b'<title lang="pt">Bob Esponja!</title>', 1
    )
    assert changed != original
    provider.add_file("/g.xml", changed)

    task = await run_import(admin, source["id"])

    assert task["status"] == "succeeded" and "1 new or changed, 1 removed" in task["message"]
    after = await get_source(admin, source["id"])
    assert after["programme_count"] == 91
    assert after["last_import_report"]["unchanged"] == 90
    async with quiet.db.session() as session:
        titles = (
            await session.scalars(select(Programme.title).where(Programme.source_id == source["id"]))
        ).all()
    assert "Bob Esponja!" in titles


async def test_window_keeps_only_the_days_asked_for(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    provider.add_corpus_file("/old.xml", "xmltv/iptv-org-epg__guide_tv.yandex.ru_2021.xml")
    source = await create_source(admin, url=provider.url("/old.xml"), past_days=1, future_days=14)

    task = await run_import(admin, source["id"])

    # A 2021 guide with the default window has nothing left to show: refused, clearly.
    assert task["status"] == "failed" and "XMLTV_NOTHING_IN_WINDOW" in task["error"]
    assert "outside the days this source keeps" in task["error"]
    resp = await admin.patch(f"/tic-api/epgs/{source['id']}", json={"past_days": 36500})
    assert resp.status_code == 200
    retried = await run_import(admin, source["id"])
    assert retried["status"] == "succeeded"
    assert (await get_source(admin, source["id"]))["programme_count"] == 516
