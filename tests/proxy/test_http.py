"""The /tic-tvh/ HTTP proxy against the fake TVHeadend and an echo upstream: methods, headers, auth, errors."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import aiohttp
import pytest

from tests.fakes.tvheadend import FakeTvheadend
from tests.proxy.conftest import Browser, EchoUpstream, TicServer, seed

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_tvheadend_ui_and_api_through_the_proxy_with_digest(
    proxied: Browser, tvh: FakeTvheadend
) -> None:
    # TVHeadend's root redirects to its UI: relayed to the browser, not followed.
    async with proxied.request("GET", "/tic-tvh/") as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "extjs.html"
        assert "WWW-Authenticate" not in resp.headers
    async with proxied.request("GET", "/tic-tvh/extjs.html") as resp:
        assert resp.status == 200
        assert "Tvheadend" in await resp.text()
    # GET and form POST on the API, query string preserved.
    async with proxied.request("GET", "/tic-tvh/api/serverinfo?x=1&y=%2F") as resp:
        assert resp.status == 200
        assert (await resp.json())["sw_version"]
    async with proxied.request(
        "POST", "/tic-tvh/api/channeltag/create", data={"conf": json.dumps({"name": "Through TIC"})}
    ) as resp:
        assert resp.status == 200, await resp.text()
        uuid = (await resp.json())["uuid"]
    assert tvh.state.nodes[uuid].fields["name"] == "Through TIC"
    served = [r for r in tvh.requests if r.path.endswith("/api/serverinfo") and r.status == 200]
    assert served and served[-1].auth_scheme == "digest"
    get_calls = tvh.calls_to("api/serverinfo")
    assert get_calls[-1].args == {"x": "1", "y": "/"}
    # TVHeadend's 4xx answers are relayed as they are.
    async with proxied.request("GET", "/tic-tvh/api/does/notexist") as resp:
        assert resp.status == 404
        assert "404 Not Found" in await resp.text()


@pytest.mark.parametrize("auth_mode", [0, 2])
async def test_basic_and_mixed_auth_modes(admin_browser: Browser, auth_mode: int) -> None:
    async with FakeTvheadend(auth_mode=auth_mode) as fake:
        await admin_browser.configure_tvh(fake.url)
        for _ in range(3):
            async with admin_browser.request("GET", "/tic-tvh/api/serverinfo") as resp:
                assert resp.status == 200
        schemes = {r.auth_scheme for r in fake.requests if r.status == 200}
        assert schemes == {"basic"}
        # Basic is sent pre-emptively: no round trip for a challenge.
        assert fake.challenges_sent == 0


async def test_head_options_and_methods_tvheadend_does_not_support(
    proxied: Browser, tvh: FakeTvheadend
) -> None:
    async with proxied.request("HEAD", "/tic-tvh/api/serverinfo") as resp:
        assert resp.status == 200
        assert await resp.read() == b""
    async with proxied.request("OPTIONS", "/tic-tvh/api/serverinfo") as resp:
        assert resp.status == 200
        assert "Allow" not in resp.headers  # TVHeadend's answer, not Quart's automatic one
    # TVHeadend closes the connection on PUT/DELETE without answering: a clear 502.
    async with proxied.request("PUT", "/tic-tvh/api/serverinfo", data=b"x") as resp:
        assert resp.status == 502
        assert "TVH_CONNECTION_LOST" in await resp.text()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
async def test_every_method_and_header_rules(admin_browser: Browser, echo: EchoUpstream, method: str) -> None:
    await admin_browser.configure_tvh(echo.url, password="secret")
    body = b"payload-\x00\xff" if method not in ("GET", "HEAD", "OPTIONS") else None
    async with admin_browser.request(
        method,
        "/tic-tvh/echo/a%20b/c?q=1&q=2&e=%26",
        data=body,
        headers={
            "Authorization": "Basic YnJvd3Nlcjpub3Q=",
            "X-Forwarded-For": "6.6.6.6",
            "X-Custom": "kept",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "dropped",
        },
    ) as resp:
        assert resp.status == 200
        assert "Transfer-Encoding" not in resp.headers or resp.headers["Transfer-Encoding"] == "chunked"
        data = None if method == "HEAD" else await resp.json()
    seen = echo.requests[-1]
    assert seen["method"] == method
    assert seen["path"] == "/tic-tvh/echo/a%20b/c?q=1&q=2&e=%26"
    headers = seen["headers"]
    # TIC's login replaces the browser's credentials; TIC's cookie and CSRF never reach TVHeadend.
    assert (
        headers["Authorization"].startswith("Basic ") and headers["Authorization"] != "Basic YnJvd3Nlcjpub3Q="
    )
    assert "Cookie" not in headers and "X-CSRF-Token" not in headers
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == f"127.0.0.1:{admin_browser.server.port}"
    assert headers["X-Custom"] == "kept"
    assert "X-Hop" not in headers
    if data is not None and body is not None:
        assert data["body"].encode("latin-1") == body
        assert headers["Content-Length"] == str(len(body))


async def test_gzip_passes_through_untouched(admin_browser: Browser, echo: EchoUpstream) -> None:
    await admin_browser.configure_tvh(echo.url)
    async with admin_browser.request(
        "GET", "/tic-tvh/gzip", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Encoding"] == "gzip"
        raw = await resp.read()
    assert raw[:2] == b"\x1f\x8b"
    assert int(resp.headers["Content-Length"]) == len(raw)
    assert json.loads(gzip.decompress(raw))["hello"].startswith("world")
    assert echo.requests[-1]["headers"]["Accept-Encoding"] == "gzip"
    # Without Accept-Encoding from the browser, TIC does not ask for compression on its behalf.
    async with admin_browser.http.get(
        admin_browser.url("/tic-tvh/echo/x"), skip_auto_headers=["Accept-Encoding"]
    ) as resp:
        assert resp.status == 200
    assert "Accept-Encoding" not in echo.requests[-1]["headers"]


async def test_cookies_set_by_tvheadend_reach_the_browser_but_are_not_kept_by_tic(
    admin_browser: Browser, echo: EchoUpstream
) -> None:
    # A host name, not an IP address: aiohttp's default cookie jar would keep cookies for it.
    await admin_browser.configure_tvh(echo.url.replace("127.0.0.1", "localhost"))
    async with admin_browser.request("GET", "/tic-tvh/echo/login?set_cookie=abc") as resp:
        assert resp.status == 200
        assert resp.cookies["tvh_session"].value == "abc"
    # The browser may send it back to TIC, but what reaches TVHeadend on its behalf carries no cookie:
    # TIC drops the browser's cookies and keeps none of its own.
    async with admin_browser.request("GET", "/tic-tvh/echo/next") as resp:
        assert resp.status == 200
    assert echo.requests[-1]["path"] == "/tic-tvh/echo/next"
    assert "Cookie" not in echo.requests[-1]["headers"]


async def test_redirects_to_tvheadends_own_origin_stay_on_tic(
    admin_browser: Browser, echo: EchoUpstream
) -> None:
    await admin_browser.configure_tvh(echo.url)
    absolute = f"http://127.0.0.1:{echo.port}/tic-tvh/echo/there"
    async with admin_browser.request("GET", f"/tic-tvh/redirect?to={absolute}") as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/tic-tvh/echo/there"
    async with admin_browser.request("GET", "/tic-tvh/redirect?to=https://elsewhere.example/x") as resp:
        assert resp.headers["Location"] == "https://elsewhere.example/x"


async def test_range_and_head_on_recordings(proxied: Browser, tvh: FakeTvheadend) -> None:
    seeded = seed(tvh)
    path = f"/tic-tvh/dvrfile/{seeded.recording}"
    size = len(seeded.payload)
    async with proxied.request("GET", path, headers={"Range": "bytes=188-375"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 188-375/{size}"
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert await resp.read() == seeded.payload[188:376]
    async with proxied.request("GET", path) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(size)
        assert "attachment" in resp.headers["Content-Disposition"]
        assert await resp.read() == seeded.payload
    async with proxied.request("HEAD", path) as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == str(size)
        assert await resp.read() == b""
    assert tvh.open_streams == 0


# ---------------------------------------------------------------------------------------------------
# Who may use the proxy
# ---------------------------------------------------------------------------------------------------


async def test_only_admins_pass(
    tic: TicServer, proxied: Browser, streamer_browser: Browser, tvh: FakeTvheadend
) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(tic.base + "/tic-tvh/api/serverinfo", allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"].startswith("/login?next=/tic-tvh/api/serverinfo")
        async with anonymous.post(tic.base + "/tic-tvh/api/serverinfo", allow_redirects=False) as resp:
            assert resp.status == 302
    async with streamer_browser.request("GET", "/tic-tvh/api/serverinfo") as resp:
        assert resp.status == 403
    await proxied.settle()
    tvh.clear_calls()
    async with streamer_browser.request(
        "POST", "/tic-tvh/api/channeltag/create", data={"conf": "{}"}
    ) as resp:
        assert resp.status == 403
    assert tvh.calls == []


async def test_cross_site_writes_are_refused(proxied: Browser, tvh: FakeTvheadend) -> None:
    form = {"conf": json.dumps({"name": "forged"})}
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "", "Referer": "http://evil.example/page"},
    ):
        async with proxied.http.post(
            proxied.url("/tic-tvh/api/channeltag/create"), data=form, headers=headers
        ) as resp:
            assert resp.status == 403, headers
            assert "did not come from TIC" in await resp.text()
    # No Origin and no Referer at all: refused too.
    async with proxied.http.post(
        proxied.url("/tic-tvh/api/channeltag/create"), data=form, skip_auto_headers=["Origin"]
    ) as resp:
        assert resp.status == 403
    assert tvh.calls_to("api/channeltag/create") == []
    # Same origin via Referer only (old browsers), and TIC's own CSRF header, both pass.
    async with proxied.http.post(
        proxied.url("/tic-tvh/api/channeltag/create"),
        data={"conf": json.dumps({"name": "ok1"})},
        headers={"Referer": proxied.origin + "/tic-tvh/extjs.html"},
    ) as resp:
        assert resp.status == 200
    async with proxied.http.post(
        proxied.url("/tic-tvh/api/channeltag/create"),
        data={"conf": json.dumps({"name": "ok2"})},
        headers={"X-CSRF-Token": proxied.csrf},
    ) as resp:
        assert resp.status == 200
    # Safe methods need no Origin (links, reloads).
    async with proxied.http.get(proxied.url("/tic-tvh/api/serverinfo")) as resp:
        assert resp.status == 200


async def test_api_tokens_work_without_origin(proxied: Browser, tvh: FakeTvheadend) -> None:
    token = (await proxied.api("POST", "/tic-api/auth/tokens", {"name": "script"}))["token"]
    async with aiohttp.ClientSession() as script:
        async with script.post(
            proxied.url("/tic-tvh/api/channeltag/create"),
            data={"conf": json.dumps({"name": "scripted"})},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            assert resp.status == 200
    # The Bearer token is TIC's, never TVHeadend's.
    assert all(r.auth_scheme in ("digest", "basic", "") for r in tvh.requests)


# ---------------------------------------------------------------------------------------------------
# TVHeadend down or misconfigured
# ---------------------------------------------------------------------------------------------------


async def _error(
    browser: Browser, path: str = "/tic-tvh/api/serverinfo", **headers: str
) -> tuple[int, str, Any]:
    async with browser.request("GET", path, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_not_configured(admin_browser: Browser) -> None:
    await admin_browser.configure_tvh("", username="", password="")
    status, ctype, text = await _error(admin_browser)
    assert status == 502 and ctype.startswith("text/html")
    assert "not configured" in text and 'href="/settings#s-tvh_url"' in text and "TVH_NOT_CONFIGURED" in text
    status, ctype, text = await _error(admin_browser, Accept="application/json")
    assert status == 502 and ctype.startswith("application/json")
    assert json.loads(text)["code"] == "TVH_NOT_CONFIGURED"
    status, ctype, text = await _error(admin_browser, **{"X-Requested-With": "XMLHttpRequest"})
    assert json.loads(text)["code"] == "TVH_NOT_CONFIGURED"


async def test_refused_connection(admin_browser: Browser) -> None:
    from tests.conftest import free_port

    await admin_browser.configure_tvh(f"http://127.0.0.1:{free_port()}/tic-tvh")
    status, _ctype, text = await _error(admin_browser, Accept="application/json")
    assert status == 502
    body = json.loads(text)
    assert body["code"] == "TVH_UNREACHABLE" and "Cannot reach TVHeadend" in body["message"]


async def test_timeout_is_a_504(admin_browser: Browser, tvh: FakeTvheadend) -> None:
    await admin_browser.configure_tvh(tvh.url, tvh_timeout_seconds=1)
    tvh.delay_next("api/serverinfo", 3)
    status, ctype, text = await _error(admin_browser)
    assert status == 504 and ctype.startswith("text/html")
    assert "TVH_TIMEOUT" in text and "did not answer within 1 s" in text


async def test_wrong_password_and_missing_login(admin_browser: Browser, tvh: FakeTvheadend) -> None:
    await admin_browser.configure_tvh(tvh.url, password="wrong")
    status, _ctype, text = await _error(admin_browser, Accept="application/json")
    assert status == 502 and json.loads(text)["code"] == "TVH_FORBIDDEN"
    assert "wrong" not in json.loads(text)["message"].split("'admin'")[0]
    await admin_browser.configure_tvh(tvh.url, username="", password="")
    status, _ctype, text = await _error(admin_browser, Accept="application/json")
    assert status == 502 and json.loads(text)["code"] == "TVH_AUTH_REQUIRED"


async def test_settings_change_takes_effect_at_once(admin_browser: Browser, tvh: FakeTvheadend) -> None:
    await admin_browser.configure_tvh(tvh.url, password="wrong")
    assert (await _error(admin_browser))[0] == 502
    await admin_browser.configure_tvh(tvh.url, password="admin")
    assert (await _error(admin_browser))[0] == 200


async def test_expired_nonce_is_renewed_transparently(proxied: Browser, tvh: FakeTvheadend) -> None:
    for _ in range(2):
        async with proxied.request("GET", "/tic-tvh/api/serverinfo") as resp:
            assert resp.status == 200
        tvh.expire_nonces()
    await asyncio.sleep(0)
    async with proxied.request(
        "POST", "/tic-tvh/api/channeltag/create", data={"conf": json.dumps({"name": "after expiry"})}
    ) as resp:
        assert resp.status == 200
