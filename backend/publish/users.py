"""TVHeadend logins for TIC users (HTSP clients such as Kodi): created, rotated and removed by TIC."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import ADMIN, User
from backend.db import Database, iso_z, utcnow
from backend.errors import Conflict, NotFound
from backend.keys import Keyring
from backend.publish.models import TvhUserLogin
from backend.tvheadend.client import TvheadendClient

log = logging.getLogger(__name__)

USER_COMMENT = "Managed by TIC"
STREAMING_RIGHTS = ["basic", "advanced", "htsp"]
DVR_RIGHTS = {
    "none": [],
    "own": ["basic", "htsp"],
    "all": ["basic", "htsp", "all", "all_rw"],
}


def new_password() -> str:
    """A random password for TVHeadend, unrelated to the stream key (about 144 bits)."""
    return secrets.token_urlsafe(18)


async def _login_of(session: AsyncSession, user_id: int) -> TvhUserLogin | None:
    return (
        await session.execute(select(TvhUserLogin).where(TvhUserLogin.user_id == user_id))
    ).scalar_one_or_none()


async def issue_login(session: AsyncSession, keyring: Keyring, user: User) -> tuple[str, str]:
    """Create the user's TVHeadend login, or give it a new password; returns (username, password).

    The password is returned only here: the caller shows it once to the user it belongs to.
    """
    password = new_password()
    now = utcnow()
    login = await _login_of(session, user.id)
    if login is None:
        # A login revoked but not yet removed from TVHeadend keeps the name; take it back.
        login = (
            await session.execute(select(TvhUserLogin).where(TvhUserLogin.tvh_username == user.username))
        ).scalar_one_or_none()
        if login is not None and login.user_id is not None:
            raise Conflict(
                f"The TVHeadend login '{user.username}' already belongs to another TIC user",
                code="TVH_LOGIN_TAKEN",
            )
    if login is None:
        login = TvhUserLogin(
            user_id=user.id,
            tvh_username=user.username,
            password_enc=keyring.encrypt(password),
            created_at=now,
            rotated_at=now,
        )
        session.add(login)
    else:
        login.user_id = user.id
        login.password_enc = keyring.encrypt(password)
        login.rotated_at = now
    await session.flush()
    return login.tvh_username, password


async def synced_credentials(session: AsyncSession, keyring: Keyring, user_id: int) -> tuple[str, str] | None:
    """The user's TVHeadend username and password once the login exists in TVHeadend, else None.

    Only a login the last sync put into TVHeadend without an error, after its last rotation, counts,
    so a stream never tries a login or password that TVHeadend does not know yet.
    """
    login = await _login_of(session, user_id)
    if login is None or login.synced_at is None or login.sync_error or login.passwd_uuid is None:
        return None
    if login.rotated_at is not None and login.rotated_at > login.synced_at:
        return None  # a new password TVHeadend does not have yet: the old one is gone from TIC

    return login.tvh_username, keyring.decrypt(login.password_enc)


async def revoke_login(session: AsyncSession, user_id: int) -> None:
    """Take a user's TVHeadend login away; the next sync removes it from TVHeadend."""
    login = await _login_of(session, user_id)
    if login is None:
        raise NotFound("This user has no TVHeadend login", code="TVH_LOGIN_NOT_FOUND")
    login.user_id = None


def login_view(login: TvhUserLogin | None, user: User | None = None) -> dict[str, Any]:
    if login is None:
        return {"exists": False}
    return {
        "exists": True,
        "user_id": login.user_id,
        "username": user.username if user is not None else None,
        "tvh_username": login.tvh_username,
        "in_tvheadend": bool(login.access_uuid and login.passwd_uuid),
        "sync_error": login.sync_error,
        "synced_at": iso_z(login.synced_at),
        "created_at": iso_z(login.created_at),
        "rotated_at": iso_z(login.rotated_at),
    }


async def get_login(session: AsyncSession, user_id: int) -> dict[str, Any]:
    return login_view(await _login_of(session, user_id))


async def list_logins(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(TvhUserLogin, User)
            .outerjoin(User, User.id == TvhUserLogin.user_id)
            .order_by(TvhUserLogin.tvh_username)
        )
    ).all()
    return [login_view(login, user) for login, user in rows]


def _desired(login: TvhUserLogin, user: User, password: str) -> tuple[dict[str, Any], dict[str, Any]]:
    comment = f"{USER_COMMENT}: login of TIC user {user.username}"
    dvr = DVR_RIGHTS["all"] if user.role == ADMIN else DVR_RIGHTS.get(user.dvr_access, [])
    access = {
        "enabled": True,
        "username": login.tvh_username,
        "prefix": "0.0.0.0/0,::/0",
        "streaming": STREAMING_RIGHTS,
        "dvr": dvr,
        "webui": False,
        "admin": False,
        "comment": comment,
    }
    passwd = {"enabled": True, "username": login.tvh_username, "password": password, "comment": comment}
    return access, passwd


def _diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, want in desired.items():
        have = current.get(key)
        if isinstance(want, list):
            if sorted(have or []) != sorted(want):
                out[key] = want
        elif have != want:
            out[key] = want
    return out


async def sync_logins(db: Database, client: TvheadendClient, keyring: Keyring) -> dict[str, Any]:
    """Make TVHeadend's TIC-managed access and password entries match the logins TIC holds.

    Entries whose comment starts with "Managed by TIC" are TIC's; others are never changed or deleted.
    A second run with nothing changed writes nothing. Password entries come back from TVHeadend in
    clear text: they are compared here and never logged.
    """
    async with db.session() as session:
        rows = (
            await session.execute(select(TvhUserLogin, User).outerjoin(User, User.id == TvhUserLogin.user_id))
        ).all()
    access_rows = await client.access_entry_grid()
    passwd_rows = await client.passwd_entry_grid()
    managed_access = {r["uuid"]: r for r in access_rows if str(r.get("comment", "")).startswith(USER_COMMENT)}
    managed_passwd = {r["uuid"]: r for r in passwd_rows if str(r.get("comment", "")).startswith(USER_COMMENT)}
    foreign_names = {r.get("username") for r in access_rows if r["uuid"] not in managed_access} | {
        r.get("username") for r in passwd_rows if r["uuid"] not in managed_passwd
    }
    claimed: set[str] = set()
    outcome: dict[int, dict[str, Any]] = {}
    created = updated = 0
    for login, user in rows:
        if user is None or not user.enabled:
            outcome[login.id] = {"remove": user is None}
            continue
        if login.tvh_username in foreign_names:
            outcome[login.id] = {
                "error": f"TVHeadend already has a user '{login.tvh_username}' that TIC does not manage; "
                "TIC leaves it alone and does not create a second one"
            }
            continue
        access, passwd = _desired(login, user, keyring.decrypt(login.password_enc))
        uuids: dict[str, str] = {}
        for kind, managed, desired, create in (
            ("access", managed_access, access, client.access_entry_create),
            ("passwd", managed_passwd, passwd, client.passwd_entry_create),
        ):
            current_uuid = login.access_uuid if kind == "access" else login.passwd_uuid
            if current_uuid not in managed:
                current_uuid = next(
                    (
                        u
                        for u, r in managed.items()
                        if r.get("username") == login.tvh_username and u not in claimed
                    ),
                    None,
                )
            if current_uuid is None:
                uuids[kind] = await create(desired)
                created += 1
                continue
            claimed.add(current_uuid)
            uuids[kind] = current_uuid
            diff = _diff(managed[current_uuid], desired)
            if diff:
                await client.idnode_save({"uuid": current_uuid, **diff})
                updated += 1
        claimed.update(uuids.values())
        outcome[login.id] = {"access": uuids["access"], "passwd": uuids["passwd"]}
    stale = [u for u in [*managed_access, *managed_passwd] if u not in claimed]
    if stale:
        await client.idnode_delete(stale)
    await _record_sync(db, outcome)
    return {
        "message": f"TVHeadend logins: {created} created, {updated} updated, {len(stale)} removed",
        "created": created,
        "updated": updated,
        "removed": len(stale),
    }


async def _record_sync(db: Database, outcome: dict[int, dict[str, Any]]) -> None:
    now = utcnow()
    async with db.transaction() as session:
        for login in (await session.execute(select(TvhUserLogin))).scalars():
            result = outcome.get(login.id)
            if result is None:
                continue
            if result.get("remove"):
                await session.delete(login)
                continue
            login.access_uuid = result.get("access")
            login.passwd_uuid = result.get("passwd")
            login.sync_error = result.get("error")
            login.synced_at = now
