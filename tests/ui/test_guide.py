"""The TV guide page: rows paged, programmes placed by time, offsets, details, search, tag filter."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import update

from backend.channels.models import Channel
from tests.conftest import ApiClient
from tests.ui.seed import seed_lineup


async def text(resp: Any) -> str:
    assert resp.status_code == 200, await resp.get_data(as_text=True)
    return str(await resp.get_data(as_text=True))


async def test_guide_grid_shows_channels_and_programmes_now(admin: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=3, mapped=2)
    html = await text(await admin.get("/guide"))
    assert "Channel 1" in html and "Channel 3" in html
    assert "No guide mapped to this channel" in html
    # The block on air now is marked and the window starts at the current half hour.
    assert 'class="prog now' in html
    frac = float(re.search(r"--now-frac: ([0-9.\-]+)", html).group(1))  # type: ignore[union-attr]
    assert 0 <= frac < 1
    lefts = [float(x) for x in re.findall(r"left: ([0-9.]+)%; width", html)]
    assert lefts and min(lefts) == 0.0 and max(lefts) < 100


async def test_rows_are_paged(admin: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=45, mapped=1, hours=1, tag=None)
    html = await text(await admin.get("/guide"))
    assert html.count('class="guide-row"') == 40
    more = re.search(r'hx-get="(/guide/rows\?[^"]+)"', html).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert "offset=40" in more
    rest = await text(await admin.get(more))
    assert rest.count('class="guide-row"') == 5 and "guide-more" not in rest


async def test_tag_filter_and_time_offset(admin: ApiClient, svc: Any) -> None:
    ids = await seed_lineup(svc, channels=4, mapped=4)
    html = await text(await admin.get(f"/guide?tag={ids['tag_id']}"))
    assert html.count('class="guide-row"') == 2  # channels 1 and 3 carry the tag
    base = await text(await admin.get("/guide?hours=2"))
    async with svc.db.transaction() as session:
        await session.execute(
            update(Channel).where(Channel.id == ids["channel_ids"][0]).values(guide_offset_minutes=15)
        )
    shifted = await text(await admin.get("/guide?hours=2"))

    def first_row_lefts(page: str) -> list[str]:
        row = page.split('class="guide-row"')[1]
        return re.findall(r"left: ([0-9.]+)%", row)

    assert first_row_lefts(base) != first_row_lefts(shifted)


async def test_programme_details_and_search(admin: ApiClient, svc: Any) -> None:
    ids = await seed_lineup(svc, channels=2)
    prog = ids["programme_ids"][4]  # slot 4: sub-title and S01E02
    html = await text(await admin.get(f"/guide/programme/{prog}?channel={ids['channel_ids'][0]}"))
    assert "The one with the test" in html and "S01E02" in html and "Channel 1" in html
    assert "Recording needs the DVR" in html or "data-record" in html
    found = await text(await admin.get("/guide/search?q=news+at"))
    assert "News at" in found and "Channel" in found
    nothing = await text(await admin.get("/guide/search?q=zzzz"))
    assert "Nothing on your lineup" in nothing
    missing = await admin.get("/guide/programme/999999")
    assert missing.status_code == 404


async def test_bad_start_is_a_clear_400(admin: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=1)
    resp = await admin.get("/guide?start=yesterday-ish")
    assert resp.status_code == 400
    assert "ISO-8601" in await resp.get_data(as_text=True)


async def test_empty_lineup_says_what_to_do(admin: ApiClient) -> None:
    html = await text(await admin.get("/guide"))
    assert "No channels to show" in html and 'href="/channels"' in html


async def test_streamers_may_read_the_guide(streamer: ApiClient, admin: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=1)
    html = await text(await streamer.get("/guide"))
    assert "Channel 1" in html
