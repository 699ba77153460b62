"""The web page's password: set with ``picharge web-password``, stored hashed with scrypt.

scrypt (``hashlib.scrypt``, in the standard library) is memory-hard: each guess costs
16 MiB and tens of milliseconds, so a stolen file is slow to crack even on a GPU. The file
``<state dir>/web-password`` holds one line ``scrypt$N$r$p$salt$hash`` (base64) and is
readable by the service user only. It is read at each login, so a new password takes
effect without restarting the controller. A hash takes CPU time: callers on the event loop
run :func:`verify` on a thread (see :mod:`controller.web.auth`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from controller.state_dir import DIR_MODE

FILE_NAME = "web-password"
#: scrypt cost: N = 2**14, r = 8 -> 16 MiB of memory per hash (about 50 ms on a desktop
#: core, a few hundred on a Pi Zero 2); p = 1.
N, R, P = 2**14, 8, 1
MIN_LENGTH = 8
_MAXMEM = 64 * 1024 * 1024


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def encode(password: str) -> str:
    """The stored form of ``password``; raises ValueError when it is too short."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"password: must be at least {MIN_LENGTH} characters")
    salt = secrets.token_bytes(16)
    digest = _hash(password, salt, N, R, P)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def matches(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (constant-time comparison); a malformed
    ``stored`` matches nothing."""
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _hash(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def path_in(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def save(state_dir: Path, password: str) -> Path:
    """Hash ``password`` into ``state_dir``'s password file (mode 0600, written whole:
    a reader never sees half a line); returns its path."""
    line = encode(password) + "\n"
    state_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # the service user's alone
    target = path_in(state_dir)
    temporary = target.with_name(target.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(target)
    return target


def load(state_dir: Path) -> str | None:
    """The stored hash, None when no password was set (then nobody can log in)."""
    try:
        return path_in(state_dir).read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None
