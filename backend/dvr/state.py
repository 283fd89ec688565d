"""In-process DVR state of one app: the change counter behind the long poll, locks and caches."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.dvr.hls import HlsManager
    from backend.dvr.tvh import TvhFiles
    from backend.tvheadend.client import TvheadendClient

EXTRAS_KEY = "dvr"


class ChangeNotifier:
    """A version counter; waiters sleep on a future each and are woken by the next bump, never by polling.

    A bump releases waiters a batch per loop iteration, so hundreds of long polls answering at once
    never hold the event loop for the time it takes to build all their replies.
    """

    def __init__(self, batch: int = 16) -> None:
        self.version = 0
        self.batch = batch
        self._waiters: dict[asyncio.Future[None], None] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def bump(self) -> int:
        self.version += 1
        waiters, self._waiters = list(self._waiters), {}
        self._release(waiters)
        return self.version

    def _release(self, waiters: list[asyncio.Future[None]]) -> None:
        for fut in waiters[: self.batch]:
            if not fut.done():
                fut.set_result(None)
        rest = waiters[self.batch :]
        if rest:
            asyncio.get_running_loop().call_soon(self._release, rest)

    async def wait(self, since: int, timeout: float) -> int:
        """Return at once when the version differs from `since` (a restart resets it), else wait."""
        if self.version != since:
            return self.version
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[fut] = None
        try:
            # No change before the timeout is a normal answer for a long poll: the same version.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.pop(fut, None)
        return self.version


@dataclass
class DvrState:
    changes: ChangeNotifier = field(default_factory=ChangeNotifier)
    # One reconcile at a time in this process (the broker runs one job at a time, but the API and
    # tests may call the service directly); the TVH comment marker guards across processes.
    reconcile_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Bumped by every change that reconcile should push; the job repeats while it moved.
    dirty: int = 0
    hls: HlsManager | None = None
    # The settings the cached client was built from; a change builds a new one.
    client_key: tuple[str, str, str, float] | None = None
    client: TvheadendClient | None = None
    files: TvhFiles | None = None


def dvr_state(svc: Any) -> DvrState:
    state = svc.extras.get(EXTRAS_KEY)
    if state is None:
        state = DvrState()
        svc.extras[EXTRAS_KEY] = state
    assert isinstance(state, DvrState)
    return state
