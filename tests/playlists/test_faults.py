"""Every bad input and upstream fault from the issue: a clear message in the task history and on the
playlist, and the streams of the last good import stay exactly as they were."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ApiClient, free_port
from tests.fakes.upstream import FakeProvider
from tests.playlists.conftest import (
    all_streams,
    create_playlist,
    json_of,
    playlist,
    run_import,
    set_settings,
    wait_task,
)

GOOD = (
    b"#EXTM3U\n"
    b'#EXTINF:-1 tvg-id="one.tv" group-title="News",One\nhttp://h/1.ts\n'
    b'#EXTINF:-1 tvg-id="two.tv" group-title="News",Two\nhttp://h/2.ts\n'
)
PATH = "/get.php"
# Credentials in the URL that must never appear in a message.
QUERY = "?username=alice&password=s3cret-pw&type=m3u_plus"


def serve(data: bytes, **kw: Any) -> Callable[[FakeProvider], None]:
    return lambda p: p.add_file(PATH, data, **kw)


def fault(kind: str, **opts: Any) -> Callable[[FakeProvider], None]:
    return lambda p: p.fault(PATH, kind, **opts)


# (id, how to break the provider, error code, words the message must contain)
PERMANENT: list[tuple[str, Callable[[FakeProvider], None], str, str]] = [
    ("html_login_page", fault("html_login"), "PLAYLIST_INVALID", "HTML page (a login or error page?)"),
    ("empty_file", serve(b""), "DOWNLOAD_EMPTY", "returned an empty file"),
    ("zero_entries", serve(b"#EXTM3U\n# nothing here\n"), "PLAYLIST_EMPTY", "has no entries"),
    (
        "only_broken_entries",
        serve(b"#EXTM3U\n#EXTINF:-1,A\n#EXTINF:-1,B\n"),
        "PLAYLIST_EMPTY",
        "all 2 were skipped (the first, on line 2: #EXTINF has no URL",
    ),
    ("binary_junk", serve(os.urandom(4096).replace(b"#", b"x")), "PLAYLIST_INVALID", "not a playlist"),
    ("json_error", serve(b'{"user_info":{"auth":0}}'), "PLAYLIST_INVALID", "check the username and password"),
    (
        "declared_2gb",
        fault("huge", size=1024, declared=2 * 1024**3),
        "DOWNLOAD_TOO_LARGE",
        "declares 2.0 GiB, over the limit of 2.0 MiB",
    ),
    (
        "chunked_past_the_cap",
        fault("huge", size=3 * 1024**2, declared=None),
        "DOWNLOAD_TOO_LARGE",
        "is bigger than that, over the limit of 2.0 MiB",
    ),
    (
        "truncated_gzip",
        fault("truncated_gzip", data=GOOD * 2000),
        "DOWNLOAD_TRUNCATED",
        "truncated compressed file",
    ),
    ("http_401", fault("status", status=401), "UPSTREAM_AUTH", "refused the credentials (HTTP 401)"),
    ("http_403", fault("status", status=403), "UPSTREAM_AUTH", "refused the credentials (HTTP 403)"),
    ("http_404", fault("status", status=404), "UPSTREAM_NOT_FOUND", "has nothing at"),
    (
        "redirect_loop",
        fault("redirect", to=PATH),
        "UPSTREAM_TOO_MANY_REDIRECTS",
        "redirected more than 5 times",
    ),
    (
        "hls_stream",
        serve(b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\nseg.ts\n"),
        "PLAYLIST_INVALID",
        "HLS",
    ),
]

# Transient faults: the broker retries later, and the message is there meanwhile.
TRANSIENT: list[tuple[str, Callable[[FakeProvider], None], str, str]] = [
    ("http_500", fault("status", status=500), "UPSTREAM_SERVER_ERROR", "server failed (HTTP 500)"),
    ("http_503", fault("status", status=503), "UPSTREAM_SERVER_ERROR", "server failed (HTTP 503)"),
    (
        "slow_trickle",
        fault("slow_trickle", interval=2.0, total=4096),
        "UPSTREAM_TIMEOUT",
        "stalled: no data for 1 s",
    ),
    ("connection_reset", fault("reset"), "DOWNLOAD_INCOMPLETE", "ended after"),
]


@pytest.fixture
async def imported(admin: ApiClient, provider: FakeProvider) -> dict[str, Any]:
    """A playlist with two streams from a good import, and a small download cap for the size faults."""
    await set_settings(admin, download_max_bytes=2 * 1024**2, download_read_timeout=1)
    provider.add_file(PATH, GOOD)
    source = await create_playlist(admin, url=provider.url(PATH + QUERY))
    await run_import(admin, source["id"])
    return {"source": source, "streams": await all_streams(admin, source["id"])}


async def check_kept(admin: ApiClient, imported: dict[str, Any], code: str, words: str) -> dict[str, Any]:
    source_id = imported["source"]["id"]
    after = await playlist(admin, source_id)
    assert after["last_import_status"] == "failed"
    assert words in after["last_import_error"] and f"[{code}]" in after["last_import_error"]
    assert "s3cret-pw" not in after["last_import_error"]
    assert after["stream_count"] == 2
    assert await all_streams(admin, source_id) == imported["streams"]
    return after


@pytest.mark.parametrize(("name", "breakage", "code", "words"), PERMANENT, ids=[p[0] for p in PERMANENT])
async def test_permanent_fault_fails_once_and_keeps_the_streams(
    admin: ApiClient,
    provider: FakeProvider,
    imported: dict[str, Any],
    name: str,
    breakage: Callable[[FakeProvider], None],
    code: str,
    words: str,
) -> None:
    breakage(provider)
    task = await run_import(admin, imported["source"]["id"], status="failed")
    assert task["attempts"] == 1
    assert words in task["error"] and task["error"].endswith(f"[{code}]")
    assert "s3cret-pw" not in task["error"]
    await check_kept(admin, imported, code, words)


@pytest.mark.parametrize(("name", "breakage", "code", "words"), TRANSIENT, ids=[p[0] for p in TRANSIENT])
async def test_transient_fault_is_retried_later_and_keeps_the_streams(
    admin: ApiClient,
    provider: FakeProvider,
    imported: dict[str, Any],
    name: str,
    breakage: Callable[[FakeProvider], None],
    code: str,
    words: str,
) -> None:
    breakage(provider)
    body = await json_of(await admin.post(f"/tic-api/playlists/update/{imported['source']['id']}"), 202)
    # The first attempt fails; the broker puts the run back in the queue with a delay and the error.
    task = await wait_task(
        admin, body["task_id"], lambda t: t["status"] == "queued" and t["error"] is not None
    )
    assert task["attempts"] == 1 and task["not_before"] is not None
    assert words in task["error"] and f"[{code}]" in task["error"]
    assert task["message"].startswith("Retrying in 30 s after: ")
    await check_kept(admin, imported, code, words)
    await json_of(await admin.post(f"/tic-api/tasks/{body['task_id']}/cancel"), 200)


async def test_unreachable_hosts_are_retried_with_a_clear_message(
    admin: ApiClient, imported: dict[str, Any]
) -> None:
    cases = [
        (
            f"http://127.0.0.1:{free_port()}/list.m3u",
            "Could not connect to 127.0.0.1",
            "connection was refused",
        ),
        (
            "http://tic-test.invalid/list.m3u",
            "Could not connect to tic-test.invalid",
            "could not be resolved",
        ),
    ]
    source_id = imported["source"]["id"]
    for url, where, why in cases:
        await json_of(await admin.patch(f"/tic-api/playlists/{source_id}", json={"url": url}), 200)
        body = await json_of(await admin.post(f"/tic-api/playlists/update/{source_id}"), 202)
        task = await wait_task(
            admin, body["task_id"], lambda t: t["status"] == "queued" and t["error"] is not None
        )
        assert where in task["error"] and why in task["error"] and "[UPSTREAM_UNREACHABLE]" in task["error"]
        await check_kept(admin, imported, "UPSTREAM_UNREACHABLE", why)
        await json_of(await admin.post(f"/tic-api/tasks/{body['task_id']}/cancel"), 200)


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        ("Expired", "XTREAM_ACCOUNT_INACTIVE", "not active (status: Expired)"),
        ("Banned", "XTREAM_ACCOUNT_INACTIVE", "not active (status: Banned)"),
        (None, "XTREAM_AUTH_FAILED", "rejected the login; check the username and password"),
    ],
)
async def test_xtream_account_problems(
    admin: ApiClient, provider: FakeProvider, status: str | None, code: str, words: str
) -> None:
    provider.add_xtream("alice", "s3cret-pw", live_streams=[{"name": "One"}, {"name": "Two"}])
    source = await create_playlist(
        admin, kind="xtream", xc_server=provider.url(""), xc_username="alice", xc_password="s3cret-pw"
    )
    await run_import(admin, source["id"])
    before = await all_streams(admin, source["id"])
    if status is None:
        # A wrong password: real panels answer 200 with auth 0.
        await json_of(
            await admin.patch(f"/tic-api/playlists/{source['id']}", json={"xc_password": "wrong"}), 200
        )
    else:
        provider.add_xtream("alice", "s3cret-pw", live_streams=[{"name": "One"}], status=status)
    task = await run_import(admin, source["id"], status="failed")
    assert words in task["error"] and f"[{code}]" in task["error"] and "s3cret-pw" not in task["error"]
    after = await playlist(admin, source["id"])
    assert words in after["last_import_error"] and after["stream_count"] == 2
    assert await all_streams(admin, source["id"]) == before


async def test_xtream_server_that_answers_html(admin: ApiClient, provider: FakeProvider) -> None:
    provider.fault("/player_api.php", "html_login")
    source = await create_playlist(
        admin, kind="xtream", xc_server=provider.url(""), xc_username="a", xc_password="b"
    )
    task = await run_import(admin, source["id"], status="failed")
    assert "HTML page" in task["error"] and "[XTREAM_BAD_RESPONSE]" in task["error"]


async def test_deleted_while_queued(admin: ApiClient, provider: FakeProvider, svc: Any) -> None:
    provider.add_file(PATH, GOOD)
    source = await create_playlist(admin, url=provider.url(PATH))
    await svc.broker.pause()
    body = await json_of(await admin.post(f"/tic-api/playlists/update/{source['id']}"), 202)
    assert (await admin.delete(f"/tic-api/playlists/{source['id']}")).status_code == 204
    await svc.broker.resume()
    task = await wait_task(admin, body["task_id"])
    assert task["status"] == "failed" and "[PLAYLIST_NOT_FOUND]" in task["error"]
