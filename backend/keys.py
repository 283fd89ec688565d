"""The app secret: created once in the data dir (0600), and the keyed hashes and encryption derived from it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger(__name__)

SECRET_FILE = "secret_key"


def load_or_create_secret(data_dir: Path) -> bytes:
    """Read the app secret, creating it with mode 0600 on first start. The secret is never logged."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    if path.exists():
        raw = path.read_text().strip()
        if len(raw) < 64:
            raise RuntimeError(f"{path} is too short to be a TIC secret; delete it to make a new one")
        if path.stat().st_mode & 0o077:
            log.warning("Secret file %s is readable by others; setting mode 0600", path)
            path.chmod(0o600)
        return bytes.fromhex(raw)
    key = secrets.token_bytes(32)
    # O_EXCL: two processes starting at once must not each write a different key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    log.info("Created a new app secret in %s", path)
    return key


class Keyring:
    """Purpose-separated keys derived from the one app secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        fernet_key = base64.urlsafe_b64encode(self._derive(b"encrypt"))
        self._fernet = Fernet(fernet_key)

    def _derive(self, purpose: bytes) -> bytes:
        return hmac.new(self._secret, b"tic:" + purpose, hashlib.sha256).digest()

    def keyed_hash(self, value: str, purpose: str = "lookup") -> str:
        """HMAC-SHA256 hex of value: lets us find a stream key without storing it."""
        return hmac.new(self._derive(purpose.encode()), value.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise ValueError("stored secret cannot be decrypted with this app secret") from exc


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy random token (sessions, API tokens); no key needed for these."""
    return hashlib.sha256(token.encode()).hexdigest()
