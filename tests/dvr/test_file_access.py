"""The stream-key route to TVHeadend's recording files honours DVR rights: none, own (by owner) and all."""

from __future__ import annotations

from typing import Any

from tests.dvr.conftest import Guide, TokenClient, insert_recording, make_user, tvh_entry
from tests.fakes.tvheadend import FakeTvheadend


async def fetch(user: TokenClient, uuid: str) -> tuple[int, Any]:
    # Stream-key callers are IPTV players: no session, no token, only ?stream_key=.
    resp = await user.client.get(f"/tic-api/tvh_stream/dvrfile/{uuid}?stream_key={user.stream_key}")
    body = await resp.get_data()
    return resp.status_code, body


async def test_own_access_reaches_only_the_users_own_recording_files(
    configured: FakeTvheadend, guide: Guide, svc: Any, app: Any
) -> None:
    channel = await guide.channel("Films")
    mine_uuid = tvh_entry(configured, channel, title="Mine")
    theirs_uuid = tvh_entry(configured, channel, title="Theirs")
    alice = await make_user(app, "alice", "streamer", dvr_access="own")
    bob = await make_user(app, "bob", "streamer", dvr_access="own")
    everyone = await make_user(app, "carol", "streamer", dvr_access="all")
    nobody = await make_user(app, "dave", "streamer", dvr_access="none")
    await insert_recording(svc, channel, tvh_uuid=mine_uuid, owner_id=alice.user_id, title="Mine")
    await insert_recording(svc, channel, tvh_uuid=theirs_uuid, owner_id=bob.user_id, title="Theirs")

    status, body = await fetch(alice, mine_uuid)
    assert status == 200 and body[:1] == b"\x47"  # the fake's MPEG-TS file
    status, body = await fetch(alice, theirs_uuid)
    assert status == 404  # someone else's recording: not found, not forbidden
    status, _ = await fetch(bob, theirs_uuid)
    assert status == 200
    # "all" reaches every file, also ones TIC did not record; "none" reaches nothing.
    assert (await fetch(everyone, mine_uuid))[0] == 200
    assert (await fetch(nobody, mine_uuid))[0] == 403
    # TIC refused alice before asking TVHeadend: the only served read of bob's file is bob's own.
    served = [r for r in configured.requests if r.path.endswith("dvrfile/" + theirs_uuid) and r.status == 200]
    assert len(served) == 1
