"""Reading a big guide as two halves in two processes gives exactly what one reading gives."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ApiClient
from tests.epg.conftest import WIDE, create_source, epg_channels, get_source, run_import
from tests.fakes.upstream import FakeProvider, generate_corpus


async def split_at(admin: ApiClient, megabytes: int) -> None:
    resp = await admin.patch("/tic-api/settings", json={"epg_split_min_mb": megabytes})
    assert resp.status_code == 200, await resp.get_data(as_text=True)


@pytest.fixture
async def generated(provider: FakeProvider, tmp_path: Path) -> bytes:
    path = await generate_corpus("xmltv", tmp_path / "gen.xml", channels=120, days=3, port=provider.port)
    return path.read_bytes()


async def test_two_halves_store_the_same_guide_as_one_reading(
    admin: ApiClient, provider: FakeProvider, quiet: Any, generated: bytes
) -> None:
    assert len(generated) > 2 * 1024 * 1024
    provider.add_file("/g.xml", generated)
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)
    await split_at(admin, 1)

    halves = await run_import(admin, source["id"])

    assert halves["status"] == "succeeded", halves["error"]
    split_report = (await get_source(admin, source["id"]))["last_import_report"]
    assert split_report["halves"] == 2
    split_channels = await epg_channels(admin, source["id"])
    await split_at(admin, 10_000)

    whole = await run_import(admin, source["id"], force=True)

    whole_report = (await get_source(admin, source["id"]))["last_import_report"]
    assert whole_report["halves"] == 1
    # The same rows: the whole reading finds nothing new, changed or gone.
    assert "0 new or changed, 0 removed" in whole["message"]
    assert await epg_channels(admin, source["id"]) == split_channels
    for key in ("programmes", "programmes_seen", "channels", "filtered", "skipped", "max_programme_seconds"):
        assert split_report[key] == whole_report[key], key

    # A gzip file is unpacked first, then read in halves too.
    provider.add_file("/g.xml", gzip.compress(generated, mtime=0))
    await split_at(admin, 1)
    packed = await run_import(admin, source["id"], force=True)
    assert "0 new or changed, 0 removed" in packed["message"]
    assert (await get_source(admin, source["id"]))["last_import_report"]["halves"] == 2


async def test_an_error_in_the_second_half_is_reported_as_one_reading_would(
    admin: ApiClient, provider: FakeProvider, quiet: Any, generated: bytes
) -> None:
    cut = generated.index(b"<programme", len(generated) * 3 // 4)
    broken = generated[:cut] + b"<programme><title>no end</programme>\n" + generated[cut:]
    line = broken[:cut].count(b"\n") + 1
    provider.add_file("/g.xml", broken)
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)
    await split_at(admin, 1)

    task = await run_import(admin, source["id"])

    assert task["status"] == "failed" and "[XMLTV_MALFORMED]" in task["error"]
    assert f"at line {line}:" in task["error"], (line, task["error"])


async def test_programmes_waiting_for_a_stop_across_the_cut_are_read_whole(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    # One channel, programmes without stop times: each ends where the next begins, across the cut.
    first = datetime(2026, 1, 1, tzinfo=UTC)
    programmes = "\n".join(
        f'<programme start="{first + timedelta(hours=i):%Y%m%d%H%M%S} +0000" channel="c">'
        f"<title>{'x' * 900} {i}</title></programme>"
        for i in range(1500)
    )
    data = f'<?xml version="1.0"?>\n<tv>\n<channel id="c"><display-name>C</display-name></channel>\n{programmes}\n</tv>\n'
    assert len(data) > 1024 * 1024
    provider.add_file("/g.xml", data.encode())
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)
    await split_at(admin, 1)

    task = await run_import(admin, source["id"])

    after = await get_source(admin, source["id"])
    assert task["status"] == "succeeded", task["error"]
    # Every programme but the last gets the next one's start as its stop, as in one reading.
    report = after["last_import_report"]
    assert after["programme_count"] == 1499 and report["dropped_no_stop"] == 1 and report["halves"] == 1


async def test_channels_declared_after_the_cut_are_kept(
    admin: ApiClient, provider: FakeProvider, quiet: Any, generated: bytes
) -> None:
    start = generated.index(b"<channel ")
    end = generated.index(b"<programme")
    channels = generated[start:end]
    moved = generated[:start] + generated[end:].replace(b"</tv>", channels + b"</tv>")
    provider.add_file("/g.xml", moved)
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)
    await split_at(admin, 1)

    task = await run_import(admin, source["id"])

    assert task["status"] == "succeeded", task["error"]
    report = (await get_source(admin, source["id"]))["last_import_report"]
    assert report["halves"] == 2 and report["unknown_channels"] == 0 and report["declared_channels"] == 120
    assert all(c["display_names"] for c in (await epg_channels(admin, source["id"])).values())
