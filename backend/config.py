"""Every setting that comes from the environment, with its default; the only place env is read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Config:
    """Process-level configuration. Runtime-editable settings live in the database instead."""

    # Where the SQLite database, the secret key, caches and downloads live.
    data_dir: Path = Path("data")
    # Address Hypercorn binds; loopback by default so a fresh install is not exposed.
    host: str = "127.0.0.1"
    port: int = 9985
    # SQLAlchemy async URL; empty means SQLite in data_dir/tic.db.
    database_url: str = ""
    log_level: str = "INFO"
    # Force the Secure flag on cookies even when the request is plain HTTP (behind a TLS proxy).
    secure_cookies: bool = False
    # Trust X-Forwarded-For/Proto from this many proxies in front of TIC (0 = none).
    trusted_proxies: int = 0
    # Largest JSON body accepted by the API; uploads have their own limit in settings.
    max_json_bytes: int = 1024 * 1024
    # Largest uploaded file (playlists, guides).
    max_upload_bytes: int = 512 * 1024 * 1024
    # Session lifetime.
    session_days: int = 30
    # Run Alembic migrations when the app starts.
    migrate_on_start: bool = True
    # Testing switches off nothing security related; it only makes errors propagate in the test client.
    testing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the plain forms operators paste and pick the async drivers we ship.
            if url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url[len("postgres://") :]
            elif url.startswith("postgresql://"):
                url = "postgresql+asyncpg://" + url[len("postgresql://") :]
            elif url.startswith("sqlite:///"):
                url = "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tic.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def load_config(overrides: dict[str, Any] | None = None) -> Config:
    """Build the Config from the environment, then apply explicit overrides (tests, run.py)."""
    cfg = Config(
        data_dir=Path(os.environ.get("TIC_DATA_DIR", "data")),
        host=os.environ.get("TIC_HOST", "127.0.0.1"),
        port=int(os.environ.get("TIC_PORT", "9985")),
        database_url=os.environ.get("DATABASE_URL", ""),
        log_level=os.environ.get("TIC_LOG_LEVEL", "INFO").upper(),
        secure_cookies=_env_bool("TIC_SECURE_COOKIES", False),
        trusted_proxies=int(os.environ.get("TIC_TRUSTED_PROXIES", "0")),
        migrate_on_start=_env_bool("TIC_MIGRATE_ON_START", True),
    )
    if overrides:
        known = {k: v for k, v in overrides.items() if k in Config.__dataclass_fields__}
        extra = {k: v for k, v in overrides.items() if k not in Config.__dataclass_fields__}
        if "data_dir" in known:
            known["data_dir"] = Path(known["data_dir"])
        cfg = replace(cfg, **known, extra={**cfg.extra, **extra})
    return cfg
