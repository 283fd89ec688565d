"""The first-run wizard: progress stored as a setting, every step skippable, resumable, ending on URLs."""

from __future__ import annotations

from backend.ui.wizard_state import STEP_SLUGS, parse_progress, validate_progress
from tests.conftest import ApiClient


def test_progress_round_trip_and_validation() -> None:
    progress = parse_progress("playlist=done epg=skipped junk channels=maybe")
    assert progress.marks == {"playlist": "done", "epg": "skipped"} and progress.active
    assert progress.next_step() == "channels"
    assert parse_progress(progress.encode()).marks == progress.marks
    for slug in STEP_SLUGS:
        progress.mark(slug, "skipped")
    assert progress.ending == "finished" and not progress.active
    assert validate_progress("playlist=done finished") is None
    assert validate_progress("playlist=eaten") is not None


async def setting(admin: ApiClient) -> str:
    values = (await (await admin.get("/tic-api/settings")).get_json())["values"]
    return str(values["ui_wizard_progress"])


async def test_skip_every_step_then_finish(admin: ApiClient) -> None:
    html = await (await admin.get("/welcome")).get_data(as_text=True)
    assert 'href="/welcome/playlist"' in html and "Start" in html
    location = "/welcome/playlist"
    for slug in STEP_SLUGS:
        assert location == f"/welcome/{slug}"
        page = await admin.get(location)
        assert page.status_code == 200
        resp = await admin.post(f"/welcome/{slug}/skip", form={"csrf_token": admin.csrf})
        assert resp.status_code == 302
        location = resp.headers["Location"]
    assert location == "/welcome/finish"
    assert (await setting(admin)).endswith("finished")
    finish = await (await admin.get("/welcome/finish")).get_data(as_text=True)
    key = (await (await admin.get("/tic-api/users/self/stream-key")).get_json())["stream_key"]
    assert f"/tic-api/playlist/combined.m3u?stream_key={key}" in finish and 'data-copy="#url-m3u"' in finish
    # The wizard has ended, so an empty lineup no longer sends the admin back into it.
    assert (await admin.get("/")).status_code == 200


async def test_resume_where_left_and_restart(admin: ApiClient) -> None:
    await admin.post("/welcome/playlist/done", form={"csrf_token": admin.csrf})
    resp = await admin.post("/welcome/epg/skip", form={"csrf_token": admin.csrf})
    assert resp.headers["Location"] == "/welcome/channels"
    assert await setting(admin) == "playlist=done epg=skipped"
    html = await (await admin.get("/welcome")).get_data(as_text=True)
    assert "Continue where you left off" in html and 'href="/welcome/channels"' in html
    assert (await admin.get("/")).headers["Location"] == "/welcome"
    await admin.post("/welcome/restart", form={"csrf_token": admin.csrf})
    assert await setting(admin) == ""


async def test_wizard_is_for_admins_and_unknown_steps_404(admin: ApiClient, streamer: ApiClient) -> None:
    assert (await streamer.get("/welcome")).status_code == 403
    assert (
        await streamer.post("/welcome/playlist/skip", form={"csrf_token": streamer.csrf})
    ).status_code == 403
    assert (await admin.get("/welcome/nonsense")).status_code == 404
    assert (await admin.post("/welcome/nonsense/skip", form={"csrf_token": admin.csrf})).status_code == 404


async def test_steps_name_the_api_they_call_or_say_unavailable(admin: ApiClient) -> None:
    for slug in STEP_SLUGS:
        html = await (await admin.get(f"/welcome/{slug}")).get_data(as_text=True)
        assert 'id="wizard-form"' in html or 'class="empty-state"' in html or "nothing to publish" in html, (
            slug
        )
        assert 'id="step-skip"' in html
