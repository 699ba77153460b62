"""Logins of the web page: sessions that expire, CSRF tokens, rate-limited failures.

- A login (the password of :mod:`controller.web.passwords`) opens a session: a random
  token in an ``HttpOnly``, ``SameSite=Strict`` cookie, kept in memory only (a restart logs
  everyone out) and valid for :data:`SESSION_S` after the login.
- Every request that changes something carries the session's CSRF token in the
  ``X-CSRF-Token`` header (a page of another site can read neither the cookie nor the
  token), and a request whose ``Origin`` names another host is refused outright.
- Failed logins are counted per client address: after :data:`MAX_FAILURES` within
  :data:`FAILURE_WINDOW_S` that address gets 429 until the window has passed. Hashes run
  one at a time on the ``web`` thread, so a flood of guesses costs the loop nothing and
  the CPU one core at most.

Loop thread only (the hash itself runs on the given executor).
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from controller.web import passwords

SESSION_S = 12 * 3600.0
MAX_SESSIONS = 64
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0
COOKIE = "picharge_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(slots=True)
class Session:
    token: str
    csrf: str
    expires_at: float  # monotonic seconds


@dataclass(slots=True)
class _Failures:
    times: collections.deque[float] = field(default_factory=collections.deque)


class LoginRefused(Exception):
    """Wrong password (or none set): 401."""


class TooManyFailures(Exception):
    """This address failed too often: 429, try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class Logins:
    """The sessions and the failure counts of one web server."""

    def __init__(
        self,
        state_dir: Path,
        executor: Executor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state_dir = state_dir
        self._executor = executor
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, _Failures] = {}
        self._hashing = asyncio.Lock()

    def password_set(self) -> bool:
        return passwords.path_in(self._state_dir).exists()

    async def login(self, client: str, password: str) -> Session:
        """A new session, or :class:`LoginRefused` / :class:`TooManyFailures`."""
        self._check_rate(client)
        async with self._hashing:  # one hash at a time, whoever asks
            loop = asyncio.get_running_loop()
            stored = await loop.run_in_executor(self._executor, passwords.load, self._state_dir)
            ok = stored is not None and await loop.run_in_executor(
                self._executor, passwords.matches, password, stored
            )
        if not ok:
            self._failures.setdefault(client, _Failures()).times.append(self._clock())
            raise LoginRefused("wrong password" if stored else "no password set")
        self._failures.pop(client, None)
        return self._open()

    def _check_rate(self, client: str) -> None:
        failures = self._failures.get(client)
        if failures is None:
            return
        now = self._clock()
        while failures.times and now - failures.times[0] > FAILURE_WINDOW_S:
            failures.times.popleft()
        if len(failures.times) >= MAX_FAILURES:
            raise TooManyFailures(FAILURE_WINDOW_S - (now - failures.times[0]))
        if len(self._failures) > 4096:  # a scan from many addresses: forget the oldest
            self._failures.pop(next(iter(self._failures)))

    def _open(self) -> Session:
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(24), self._clock() + SESSION_S
        )
        self._sessions[session.token] = session
        return session

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[token]

    def session(self, token: str | None) -> Session | None:
        """The live session of ``token``, None when unknown or expired."""
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None or session.expires_at <= self._clock():
            self._sessions.pop(token or "", None)
            return None
        return session

    def logout(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)
