"""AppServices: the long-lived objects one app owns, handed to routes, jobs and the scheduler."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from backend.auth.ratelimit import FailureLimiter
from backend.config import Config
from backend.db import Database
from backend.http import HttpSessions
from backend.keys import Keyring
from backend.tasks.broker import TaskQueueBroker


@dataclass
class Limiters:
    # Ten failed logins per address or five per user name in five minutes, then a pause.
    login_ip: FailureLimiter = field(default_factory=lambda: FailureLimiter(10, 300))
    login_user: FailureLimiter = field(default_factory=lambda: FailureLimiter(5, 300))
    # Stream keys are long and random; many failures from one address means guessing.
    stream_key_ip: FailureLimiter = field(default_factory=lambda: FailureLimiter(20, 300))


@dataclass
class AppServices:
    config: Config
    db: Database
    keyring: Keyring
    http: HttpSessions
    broker: TaskQueueBroker
    limiters: Limiters = field(default_factory=Limiters)
    started_at: float = field(default_factory=time.time)
    setup_done: bool = False
    scheduler: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
