"""TIC's login at TVHeadend (Basic or Digest), shared by the API client and the /tic-tvh/ proxy.

TVHeadend's default is Digest only (MD5, SHA-256 or SHA-512-256, the strongest listed first); "Both
plain and digest" also accepts Basic. Credentials go out as pre-emptive Basic until TVHeadend answers
with a Digest challenge; from then on the nonce is cached and reused with an incrementing count.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from yarl import URL

AuthMode = Literal["basic", "digest", "none"]

_CHALLENGE_PARAM_RE = re.compile(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_DIGESTS: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}
#: TVHeadend keeps a nonce 30 s after issuing it and 2 min after each use; a nonce used more recently
#: than this is safe for a request whose body cannot be sent twice.
NONCE_FRESH_SECONDS = 20.0


@dataclass
class _Challenge:
    realm: str
    nonce: str
    opaque: str | None
    qop: bool
    algorithm: str
    count: int = 0
    last_used: float = 0.0


class TvhAuth:
    """TIC's credentials at one TVHeadend and the scheme that TVHeadend accepts.

    The proxy streams request bodies, which cannot be sent twice, so `needs_priming()` says when to
    learn a fresh nonce with a bodiless request first; the API client simply retries a 401 once.
    """

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self._scheme: Literal["basic", "digest"] | None = None
        self._challenge: _Challenge | None = None

    @property
    def mode(self) -> AuthMode:
        if not self.username:
            return "none"
        return self._scheme or "basic"

    def needs_priming(self) -> bool:
        """True when a request that cannot be retried might meet a 401 (unknown scheme or an old nonce)."""
        if not self.username or self._scheme == "basic":
            return False
        if self._challenge is None:
            return True
        return time.monotonic() - self._challenge.last_used > NONCE_FRESH_SECONDS

    def header(self, method: str, url: URL) -> str | None:
        """The Authorization header for `method` on `url` (Digest signs the exact request target)."""
        if not self.username:
            return None
        if self._scheme == "digest" and self._challenge is not None:
            return self._digest(method, url.raw_path_qs, self._challenge)
        token = base64.b64encode(f"{self.username}:{self._password}".encode()).decode("ascii")
        return f"Basic {token}"

    def learn(self, challenges: Iterable[str]) -> bool:
        """Take in a 401's WWW-Authenticate headers; True when retrying with new credentials makes sense."""
        if not self.username:
            return False
        basic = False
        for header in challenges:
            scheme, _, rest = header.strip().partition(" ")
            if scheme.lower() == "basic":
                basic = True
            elif scheme.lower() == "digest":
                challenge = _parse_digest(rest)
                if challenge is not None:
                    # The strongest algorithm comes first; a fresh nonce replaces an expired one.
                    self._scheme, self._challenge = "digest", challenge
                    return True
        if basic and self._scheme != "basic":
            self._scheme, self._challenge = "basic", None
            return True
        return False

    def _digest(self, method: str, uri: str, challenge: _Challenge) -> str:
        digest = _DIGESTS[challenge.algorithm]
        challenge.count += 1
        challenge.last_used = time.monotonic()
        nc = f"{challenge.count:08x}"
        cnonce = os.urandom(8).hex()
        ha1 = digest(f"{self.username}:{challenge.realm}:{self._password}".encode())
        ha2 = digest(f"{method}:{uri}".encode())
        if challenge.qop:
            response = digest(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:auth:{ha2}".encode())
        else:
            response = digest(f"{ha1}:{challenge.nonce}:{ha2}".encode())
        user = self.username.replace("\\", "\\\\").replace('"', '\\"')
        parts = [
            f'username="{user}"',
            f'realm="{challenge.realm}"',
            f'nonce="{challenge.nonce}"',
            f'uri="{uri}"',
            f"algorithm={challenge.algorithm}",
            f'response="{response}"',
        ]
        if challenge.opaque is not None:
            parts.append(f'opaque="{challenge.opaque}"')
        if challenge.qop:
            parts += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        return "Digest " + ", ".join(parts)


def _parse_digest(params_text: str) -> _Challenge | None:
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_PARAM_RE.finditer(params_text)
    }
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in _DIGESTS or "nonce" not in params:
        return None
    return _Challenge(
        realm=params.get("realm", ""),
        nonce=params["nonce"],
        opaque=params.get("opaque"),
        qop="auth" in {q.strip() for q in params.get("qop", "").split(",")},
        algorithm=algorithm,
        last_used=time.monotonic(),
    )
