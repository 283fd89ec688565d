"""Failure-counting rate limiter for logins and stream keys (per IP and per user, sliding window)."""

from __future__ import annotations

import math
import time
from collections import deque


class FailureLimiter:
    """Allows `limit` failures per key within `window` seconds; after that, callers wait.

    Kept in memory on purpose: losing counters on restart only resets a lockout, which is harmless,
    while a database write per failed attempt would let an attacker load the database.
    """

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and now - q[0] >= self.window:
            q.popleft()
        if not q:
            self._failures.pop(key, None)
        return q

    def retry_after(self, key: str) -> int | None:
        """Seconds to wait before `key` may try again, or None when it may try now."""
        now = time.monotonic()
        q = self._prune(key, now)
        if len(q) < self.limit:
            return None
        return max(1, math.ceil(self.window - (now - q[0])))

    def record_failure(self, key: str) -> None:
        now = time.monotonic()
        if len(self._failures) >= self.max_keys:
            # Bound memory under a spray of distinct keys: drop the oldest-inserted entries.
            for old in list(self._failures)[: self.max_keys // 10]:
                self._failures.pop(old, None)
        self._failures.setdefault(key, deque()).append(now)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)
