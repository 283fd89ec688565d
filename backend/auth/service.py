"""The rules for users, passwords, sessions, API tokens and stream keys."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import ADMIN, ROLES, ApiToken, AuthSession, User
from backend.db import utcnow
from backend.errors import Conflict, Invalid, NotFound
from backend.keys import Keyring, token_hash
from backend.tasks.offload import run_blocking

_hasher = PasswordHasher()
# Verifying against a fixed hash when the user does not exist keeps response times alike.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
DVR_ACCESS = ("none", "own", "all")
API_TOKEN_PREFIX = "tic_"


@dataclass
class SessionInfo:
    user: User
    session: AuthSession


def validate_username(username: str) -> str:
    username = username.strip()
    if not USERNAME_RE.match(username):
        raise Invalid(
            "Username must be 1-64 letters, digits or . _ @ -",
            fields={"username": "invalid characters or length"},
        )
    return username


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(
            f"Password must be at least {MIN_PASSWORD} characters", fields={"password": "too short"}
        )
    if len(password) > 1024:
        raise Invalid("Password is too long", fields={"password": "too long"})


async def hash_password(password: str) -> str:
    return await run_blocking(_hasher.hash, password)


async def _verify(hash_: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(hash_, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await run_blocking(check)


def new_stream_key() -> str:
    # 24 random bytes = 192 bits, URL-safe so it can sit in a path segment.
    return secrets.token_urlsafe(24)


async def count_users(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(User))).scalar_one())


async def create_user(
    session: AsyncSession,
    keyring: Keyring,
    *,
    username: str,
    password: str,
    role: str,
    dvr_access: str = "none",
) -> User:
    username = validate_username(username)
    validate_password(password)
    if role not in ROLES:
        raise Invalid(f"Role must be one of {', '.join(ROLES)}", fields={"role": "unknown role"})
    if dvr_access not in DVR_ACCESS:
        raise Invalid("dvr_access must be none, own or all", fields={"dvr_access": "unknown value"})
    taken = await session.execute(select(User.id).where(func.lower(User.username) == username.lower()))
    if taken.first() is not None:
        raise Conflict(f"A user named {username!r} already exists", code="USERNAME_TAKEN")
    key = new_stream_key()
    user = User(
        username=username,
        password_hash=await hash_password(password),
        role=role,
        dvr_access="all" if role == ADMIN else dvr_access,
        stream_key_hash=keyring.keyed_hash(key, "stream_key"),
        stream_key_enc=keyring.encrypt(key),
        created_at=utcnow(),
    )
    session.add(user)
    await session.flush()
    return user


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist", code="USER_NOT_FOUND")
    return user


async def list_users(session: AsyncSession, limit: int, offset: int) -> tuple[list[User], int]:
    total = int((await session.execute(select(func.count()).select_from(User))).scalar_one())
    rows = (await session.execute(select(User).order_by(User.id).limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def _admin_count(session: AsyncSession) -> int:
    stmt = select(func.count()).select_from(User).where(User.role == ADMIN, User.enabled.is_(True))
    return int((await session.execute(stmt)).scalar_one())


async def update_user(
    session: AsyncSession,
    user: User,
    *,
    role: str | None = None,
    enabled: bool | None = None,
    dvr_access: str | None = None,
    password: str | None = None,
    time_format: str | None = None,
) -> User:
    demoting = (role is not None and role != ADMIN) or enabled is False
    if user.role == ADMIN and user.enabled and demoting and await _admin_count(session) <= 1:
        raise Conflict("TIC needs at least one enabled admin", code="LAST_ADMIN")
    if role is not None:
        if role not in ROLES:
            raise Invalid(f"Role must be one of {', '.join(ROLES)}", fields={"role": "unknown role"})
        user.role = role
        if role == ADMIN:
            user.dvr_access = "all"
    if dvr_access is not None:
        if dvr_access not in DVR_ACCESS:
            raise Invalid("dvr_access must be none, own or all", fields={"dvr_access": "unknown value"})
        if user.role != ADMIN:
            user.dvr_access = dvr_access
    if enabled is not None:
        user.enabled = enabled
    if time_format is not None:
        if time_format not in ("12h", "24h"):
            raise Invalid("time_format must be 12h or 24h", fields={"time_format": "unknown value"})
        user.time_format = time_format
    if password is not None:
        validate_password(password)
        user.password_hash = await hash_password(password)
        # A new password ends every other session of that user.
        for row in (
            await session.execute(select(AuthSession).where(AuthSession.user_id == user.id))
        ).scalars():
            await session.delete(row)
    if enabled is False:
        for row in (
            await session.execute(select(AuthSession).where(AuthSession.user_id == user.id))
        ).scalars():
            await session.delete(row)
    await session.flush()
    return user


async def delete_user(session: AsyncSession, user: User) -> None:
    if user.role == ADMIN and user.enabled and await _admin_count(session) <= 1:
        raise Conflict("TIC needs at least one enabled admin", code="LAST_ADMIN")
    await session.delete(user)


async def authenticate(session: AsyncSession, username: str, password: str) -> User | None:
    user = (
        await session.execute(select(User).where(func.lower(User.username) == username.strip().lower()))
    ).scalar_one_or_none()
    if user is None or not user.enabled:
        await _verify(_DUMMY_HASH, password)
        return None
    if not await _verify(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    user.last_login_at = utcnow()
    return user


async def create_session(
    session: AsyncSession, user: User, *, days: int, ip: str | None
) -> tuple[str, AuthSession]:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = AuthSession(
        token_hash=token_hash(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(days=days),
        last_seen_at=now,
        ip=ip,
    )
    session.add(row)
    await session.flush()
    return token, row


async def resolve_session(session: AsyncSession, token: str) -> SessionInfo | None:
    row = (
        await session.execute(select(AuthSession).where(AuthSession.token_hash == token_hash(token)))
    ).scalar_one_or_none()
    if row is None:
        return None
    now = utcnow()
    if row.expires_at <= now:
        await session.delete(row)
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.enabled:
        return None
    if (now - row.last_seen_at).total_seconds() > 300:
        row.last_seen_at = now
    return SessionInfo(user=user, session=row)


async def end_session(session: AsyncSession, token: str) -> None:
    row = (
        await session.execute(select(AuthSession).where(AuthSession.token_hash == token_hash(token)))
    ).scalar_one_or_none()
    if row is not None:
        await session.delete(row)


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


async def create_api_token(session: AsyncSession, user: User, name: str) -> tuple[str, ApiToken]:
    name = name.strip()
    if not name or len(name) > 100:
        raise Invalid("Token name must be 1-100 characters", fields={"name": "required"})
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=token_hash(token), created_at=utcnow())
    session.add(row)
    await session.flush()
    return token, row


async def list_api_tokens(session: AsyncSession, user: User) -> list[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
    return list((await session.execute(stmt)).scalars())


async def delete_api_token(session: AsyncSession, user: User, token_id: int) -> None:
    row = await session.get(ApiToken, token_id)
    if row is None or (row.user_id != user.id and user.role != ADMIN):
        raise NotFound(f"API token {token_id} does not exist", code="TOKEN_NOT_FOUND")
    await session.delete(row)


async def resolve_api_token(session: AsyncSession, token: str) -> User | None:
    if not token.startswith(API_TOKEN_PREFIX):
        return None
    row = (
        await session.execute(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    ).scalar_one_or_none()
    if row is None:
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.enabled:
        return None
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 300:
        row.last_used_at = now
    return user


async def rotate_stream_key(session: AsyncSession, keyring: Keyring, user: User) -> str:
    key = new_stream_key()
    user.stream_key_hash = keyring.keyed_hash(key, "stream_key")
    user.stream_key_enc = keyring.encrypt(key)
    await session.flush()
    return key


def reveal_stream_key(keyring: Keyring, user: User) -> str:
    return keyring.decrypt(user.stream_key_enc)


async def resolve_stream_key(session: AsyncSession, keyring: Keyring, key: str) -> User | None:
    if not key or len(key) > 200:
        return None
    stmt = select(User).where(User.stream_key_hash == keyring.keyed_hash(key, "stream_key"))
    user = (await session.execute(stmt)).scalar_one_or_none()
    if user is None or not user.enabled:
        return None
    return user
