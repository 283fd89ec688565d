"""Bad guides and download faults: each fails with a clear message and the guide in use stays whole.

Each test imports a good guide first (the "old guide", 91 programmes), then serves a bad one at
the same URL and imports again. Cases of one kind share a test and an app (an app per case would
make the suite several times slower); every case is checked and named on failure.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, select

from backend.epg.models import Programme
from tests.conftest import CORPUS, ApiClient
from tests.epg.conftest import FINAL, WIDE, create_source, get_source, wait_task
from tests.fakes.upstream import FakeProvider

GOOD = (CORPUS / "xmltv" / "iptv-org-epg__x1co.com.br.xml").read_bytes()
OLD_PROGRAMMES = 91
# One programme of the old guide, checked through the API after every failed import.
OLD_TITLE, OLD_START = "Bob Esponja", "2026-05-03T11:42:50Z"

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE tv [\n<!ENTITY lol "lol">\n'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b']>\n<tv><channel id="a"><display-name>A</display-name></channel>'
    + b'<programme start="20250101000000" stop="20250101010000" channel="a"><title>&lol9;</title></programme></tv>\n'
)
# Binary junk: random bytes (seeded, so a failure is reproducible), an image, and bytes that open
# like gzip but are not a gzip stream.
JUNK = random.Random(5).randbytes(16 * 1024)
PNG = b"\x89PNG\r\n\x1a\n" + random.Random(6).randbytes(4096)
FAKE_GZIP = b"\x1f\x8b\x08\x00" + random.Random(7).randbytes(4096)
XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE tv [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<tv><channel id="x"><display-name>&xxe;</display-name></channel>'
    b'<programme start="20250101000000 +0000" stop="20250101010000 +0000" channel="x">'
    b"<title>before &xxe; after</title><desc>&xxe;</desc></programme></tv>\n"
)


def guide(
    programmes: list[str], channels: str = '<channel id="new.ch"><display-name>New</display-name></channel>'
) -> bytes:
    body = "\n".join([channels, *programmes])
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<tv>\n{body}\n</tv>\n'.encode()


def programme(i: int, channel: str = "new.ch", start: str | None = None) -> str:
    hour = f"{i % 24:02d}"
    day = f"{1 + i // 24:02d}"
    start = start or f"202601{day}{hour}0000 +0000"
    stop = f"202601{day}{hour}3000 +0000"
    return f'<programme start="{start}" stop="{stop}" channel="{channel}"><title>New {i}</title></programme>'


def broken_in_the_middle() -> bytes:
    """300 good programmes, one element left open at the 150th, then 149 good ones."""
    items = [programme(i) for i in range(300)]
    items[150] = items[150].replace("</title>", "</titel>")
    return guide(items)


async def old_guide(admin: ApiClient, provider: FakeProvider, path: str = "/guide.xml") -> dict[str, Any]:
    provider.add_file(path, GOOD, content_type="application/xml")
    source = await create_source(admin, name=f"Guide {path}", url=provider.url(path), **WIDE)
    task = await run(admin, source["id"])
    assert task["status"] == "succeeded", task["error"]
    return source


async def run(admin: ApiClient, source_id: int) -> dict[str, Any]:
    resp = await admin.post(f"/tic-api/epgs/update/{source_id}?force=true")
    assert resp.status_code == 202
    return await wait_task(admin, (await resp.get_json())["task_id"])


async def assert_old_guide_whole(admin: ApiClient, svc: Any, source_id: int) -> None:
    source = await get_source(admin, source_id)
    assert source["programme_count"] == OLD_PROGRAMMES and source["channel_count"] == 1
    async with svc.db.session() as session:
        stored = await session.scalar(select(func.count()).where(Programme.source_id == source_id))
        strays = await session.scalar(
            select(func.count()).where(Programme.source_id == source_id, Programme.title.like("New %"))
        )
    assert stored == OLD_PROGRAMMES and strays == 0
    query = urlencode({"q": OLD_TITLE, "source_id": source_id, "limit": 200})
    found = (await (await admin.get(f"/tic-api/programmes?{query}")).get_json())["items"]
    assert any(p["start"] == OLD_START for p in found)


async def check_cases(cases: dict[str, Callable[[], Awaitable[None]]]) -> None:
    problems = []
    for name, case in cases.items():
        try:
            await case()
        except AssertionError as exc:
            problems.append(f"{name}: {exc!r}")
    assert not problems, "\n".join(problems)


async def test_bad_guides_fail_clearly_and_keep_the_old_guide(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    source = await old_guide(admin, provider)
    laughs_started: list[float] = []

    def serving(data: bytes, code: str, *words: str) -> Callable[[], Awaitable[None]]:
        async def case() -> None:
            provider.clear_fault("/guide.xml")
            provider.add_file("/guide.xml", data, content_type="application/xml")
            task = await run(admin, source["id"])
            assert task["status"] == "failed", task["message"]
            assert f"[{code}]" in task["error"], task["error"]
            for word in words:
                assert word in task["error"], task["error"]
            after = await get_source(admin, source["id"])
            assert after["last_import_status"] == "failed" and after["last_import_error"] == task["error"]
            await assert_old_guide_whole(admin, quiet, source["id"])

        return case

    async def html_page() -> None:
        provider.fault("/guide.xml", "html_login")
        task = await run(admin, source["id"])
        assert (
            task["status"] == "failed"
            and "[XMLTV_NOT_XMLTV]" in task["error"]
            and "HTML page" in task["error"]
        )
        await assert_old_guide_whole(admin, quiet, source["id"])

    async def truncated_gzip() -> None:
        provider.fault("/guide.xml", "truncated_gzip", data=GOOD)
        task = await run(admin, source["id"])
        assert task["status"] == "failed" and "[XMLTV_TRUNCATED]" in task["error"], task["error"]
        assert "ends early" in task["error"]
        await assert_old_guide_whole(admin, quiet, source["id"])

    async def billion_laughs() -> None:
        loop_time = __import__("asyncio").get_running_loop().time
        laughs_started.append(loop_time())
        await serving(BILLION_LAUGHS, "XMLTV_MALFORMED", "entities", "beyond safe limits")()
        # Refused at once, not after expanding three billion characters.
        assert loop_time() - laughs_started[0] < 20

    cases = {
        "not XML": serving(b"this is not XML at all\n", "XMLTV_NOT_XMLTV", "not XML"),
        "JSON error body": serving(b'{"error": "expired"}', "XMLTV_NOT_XMLTV", "not XML"),
        "HTML login page": html_page,
        "wrong root element": serving(
            b'<?xml version="1.0"?>\n<rss><channel><title>News</title></channel></rss>\n',
            "XMLTV_NOT_XMLTV",
            "root element is <rss>",
        ),
        "billion laughs": billion_laughs,
        "malformed in the middle": serving(
            broken_in_the_middle(), "XMLTV_MALFORMED", "not well-formed", "line"
        ),
        "cut off before </tv>": serving(
            guide([programme(i) for i in range(50)])[:-40], "XMLTV_TRUNCATED", "ends early"
        ),
        "empty <tv>": serving(
            b'<?xml version="1.0"?>\n<tv></tv>\n', "XMLTV_EMPTY", "no channels and no programmes"
        ),
        "channels only": serving(guide([]), "XMLTV_EMPTY", "1 channel(s) but no programmes"),
        "every time invalid": serving(
            guide([programme(i, start="tomorrow at noon") for i in range(5)]),
            "XMLTV_NO_USABLE_PROGRAMMES",
            "5 with an unreadable start time",
            "tomorrow at noon",
        ),
        "all outside the window": serving(
            # 1900 is before the 100 years this source keeps.
            guide([programme(i, start="19000101000000 +0000") for i in range(3)]).replace(
                b"20260101", b"19000101"
            ),
            "XMLTV_NOTHING_IN_WINDOW",
            "outside the days this source keeps",
        ),
        "truncated gzip": truncated_gzip,
        "empty file": serving(b"", "DOWNLOAD_EMPTY", "empty file"),
        "binary junk": serving(JUNK, "XMLTV_NOT_XMLTV", "not XML", "Check that the guide URL"),
        "an image": serving(PNG, "XMLTV_NOT_XMLTV", "not XML"),
        "junk behind gzip magic": serving(
            FAKE_GZIP, "XMLTV_MALFORMED", "compressed data is corrupt", "Refresh the guide"
        ),
    }
    await check_cases(cases)


async def test_external_entities_are_not_read(admin: ApiClient, provider: FakeProvider, quiet: Any) -> None:
    provider.add_file("/xxe.xml", XXE, content_type="application/xml")
    source = await create_source(admin, url=provider.url("/xxe.xml"), **WIDE)

    task = await run(admin, source["id"])

    # Either refused, or imported with the reference left as text; never the file's content.
    assert "root:" not in (task["error"] or "") + task["message"]
    async with quiet.db.session() as session:
        texts = (await session.execute(select(Programme.title, Programme.description))).all()
    assert all("root:" not in f"{title}{desc}" for title, desc in texts)
    channels = await (await admin.get(f"/tic-api/epgs/{source['id']}/channels")).get_json()
    assert all("root:" not in str(item["display_names"]) for item in channels["items"])


async def test_partly_bad_guides_import_what_they_can_and_say_what_they_left(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    mixed = guide(
        [programme(i) for i in range(10)]
        + [programme(20, start="2026-01-01 25:00")]
        + [programme(i, channel="ghost.ch") for i in range(30, 34)]
    )
    provider.add_file("/mixed.xml", mixed, content_type="application/xml")
    source = await create_source(admin, url=provider.url("/mixed.xml"), **WIDE)

    task = await run(admin, source["id"])

    assert task["status"] == "succeeded", task["error"]
    assert "1 unusable programme(s) were left out (1 with an unreadable start time)" in task["message"]
    assert (
        "4 programme(s) are for 1 channel id(s) the guide does not declare (such as ghost.ch)"
        in task["message"]
    )
    after = await get_source(admin, source["id"])
    assert after["programme_count"] == 14 and after["channel_count"] == 2
    report = after["last_import_report"]
    assert report["skipped_reasons"] == {"bad_start": 1} and report["unknown_channel_ids"] == ["ghost.ch"]
    assert any("unreadable start" in note for _line, note in report["notes"])
    channels = {
        c["channel_id"]: c
        for c in (await (await admin.get(f"/tic-api/epgs/{source['id']}/channels")).get_json())["items"]
    }
    assert channels["ghost.ch"]["display_names"] == [] and channels["ghost.ch"]["programme_count"] == 4
    assert (
        channels["new.ch"]["display_names"] == [["New", None]] and channels["new.ch"]["programme_count"] == 10
    )


async def set_settings(admin: ApiClient, **values: Any) -> None:
    resp = await admin.patch("/tic-api/settings", json=values)
    assert resp.status_code == 200, await resp.get_data(as_text=True)


async def test_download_faults_fail_clearly_and_keep_the_old_guide(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    source = await old_guide(admin, provider)
    await set_settings(admin, download_read_timeout=1, download_max_bytes=64 * 1024)

    def permanent(kind: str, code: str, words: str, **opts: Any) -> Callable[[], Awaitable[None]]:
        async def case() -> None:
            provider.fault("/guide.xml", kind, **opts)
            task = await run(admin, source["id"])
            provider.clear_fault("/guide.xml")
            assert task["status"] == "failed" and f"[{code}]" in task["error"], task["error"]
            assert words in task["error"], task["error"]
            after = await get_source(admin, source["id"])
            assert after["last_import_status"] == "failed" and words in after["last_import_error"]
            await assert_old_guide_whole(admin, quiet, source["id"])

        return case

    await check_cases(
        {
            "404": permanent("status", "UPSTREAM_NOT_FOUND", "HTTP 404", status=404),
            "401": permanent("status", "UPSTREAM_AUTH", "refused the credentials", status=401),
            "403": permanent(
                "status", "UPSTREAM_AUTH", "refused the credentials (HTTP 403)", status=403, body="Forbidden"
            ),
            "redirect loop": permanent(
                "redirect", "UPSTREAM_TOO_MANY_REDIRECTS", "redirected more than", to="/guide.xml"
            ),
            "too large": permanent("huge", "DOWNLOAD_TOO_LARGE", "over the limit", size=256 * 1024),
            "too large without a length": permanent(
                "huge", "DOWNLOAD_TOO_LARGE", "over the limit", size=256 * 1024, declared=None
            ),
        }
    )


async def test_transient_download_faults_are_retried_later_and_keep_the_old_guide(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    source = await old_guide(admin, provider)
    await set_settings(admin, download_read_timeout=1)

    def transient(
        code: str, words: str, url: str | None = None, **fault: Any
    ) -> Callable[[], Awaitable[None]]:
        async def case() -> None:
            if fault:
                provider.fault("/guide.xml", fault.pop("kind"), **fault)
            if url is not None:
                assert (
                    await admin.patch(f"/tic-api/epgs/{source['id']}", json={"url": url})
                ).status_code == 200
            resp = await admin.post(f"/tic-api/epgs/update/{source['id']}?force=true")
            task_id = (await resp.get_json())["task_id"]
            task = await wait_retry(admin, task_id)
            provider.clear_fault("/guide.xml")
            # The broker keeps the run for a later attempt, with the reason; the source says so too.
            assert task["status"] == "queued" and f"[{code}]" in task["error"], task
            assert words in task["error"] and task["not_before"] is not None
            after = await get_source(admin, source["id"])
            assert after["last_import_status"] == "failed" and words in after["last_import_error"]
            await assert_old_guide_whole(admin, quiet, source["id"])
            assert (await admin.post(f"/tic-api/tasks/{task_id}/cancel")).status_code == 200
            if url is not None:
                await admin.patch(f"/tic-api/epgs/{source['id']}", json={"url": provider.url("/guide.xml")})

        return case

    closed = f"http://127.0.0.1:{free_closed_port()}/guide.xml"
    await check_cases(
        {
            "HTTP 500": transient("UPSTREAM_SERVER_ERROR", "HTTP 500", kind="status", status=500),
            "HTTP 503": transient("UPSTREAM_SERVER_ERROR", "HTTP 503", kind="status", status=503),
            "stall mid-body": transient(
                "UPSTREAM_TIMEOUT", "stalled: no data for 1 s", kind="timeout", seconds=5
            ),
            "short body": transient("DOWNLOAD_INCOMPLETE", "ended after", kind="short_body"),
            "connection reset": transient("DOWNLOAD_INCOMPLETE", "ended after", kind="reset"),
            "connection refused": transient(
                "UPSTREAM_UNREACHABLE", "Could not connect to 127.0.0.1", url=closed
            ),
            # .invalid never resolves (RFC 2606), so this is a DNS failure wherever the suite runs.
            "DNS failure": transient(
                "UPSTREAM_UNREACHABLE",
                "Could not connect to tic-guide.invalid: the host name could not be resolved",
                url="http://tic-guide.invalid/guide.xml",
            ),
            # Data keeps coming, but each piece later than the read timeout (1 s): the first 1 KiB
            # arrives, then the gap trips the timeout. Unlike "stall mid-body" the headers and real
            # guide bytes came first, so the message must say how much was received.
            "slow trickle past the read timeout": transient(
                "UPSTREAM_TIMEOUT",
                "stalled: no data for 1 s after 1.0 KiB",
                kind="slow_trickle",
                data=GOOD[:2048],
                chunk=1024,
                interval=2.0,
                content_type="application/xml",
            ),
        }
    )


async def test_errors_never_show_credentials(admin: ApiClient, provider: FakeProvider, quiet: Any) -> None:
    url = provider.url(
        "/private/guide.xml?username=alice&password=s3cret-pw&token=t0ken-xyz", userinfo="bob:hunter2"
    )
    provider.fault("/private/guide.xml", "status", status=404)
    source = await create_source(admin, url=url, **WIDE)
    assert "s3cret-pw" not in source["url"] and "hunter2" not in source["url"] and "***" in source["url"]

    task = await run(admin, source["id"])

    after = await get_source(admin, source["id"])
    shown = f"{task['error']} {task['message']} {after['last_import_error']} {after['url']}"
    assert "[UPSTREAM_NOT_FOUND]" in task["error"]
    for secret in ("s3cret-pw", "t0ken-xyz", "hunter2"):
        assert secret not in shown
    # The URL as shown, sent back unchanged, keeps the real one.
    resp = await admin.patch(f"/tic-api/epgs/{source['id']}", json={"url": after["url"], "name": "Renamed"})
    assert resp.status_code == 200
    async with quiet.db.session() as session:
        from backend.epg.models import EpgSource

        stored = await session.get(EpgSource, source["id"])
        assert stored is not None and stored.url == url


async def wait_retry(admin: ApiClient, task_id: int, timeout: float = 30) -> dict[str, Any]:
    """Wait until a run failed for good, or went back to the queue to be retried later."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        task = await (await admin.get(f"/tic-api/tasks/{task_id}")).get_json()
        if task["status"] in FINAL or (task["status"] == "queued" and task["error"]):
            return task
        assert loop.time() < deadline, f"task {task_id} still {task['status']}"
        version = (await (await admin.get("/tic-api/tasks?limit=1")).get_json())["version"]
        await admin.get(f"/tic-api/tasks?limit=1&wait=1&since={version}")


def free_closed_port() -> int:
    """A port nothing listens on (bound, then closed), for a refused connection."""
    from tests.conftest import free_port

    return free_port()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)
