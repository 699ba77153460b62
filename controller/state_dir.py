"""The state directory is the service user's alone: 0700, and nothing in it readable by others.

It holds the OCPP AuthorizationKey, the client certificate's private key, id tags and the
transaction history. Under systemd the unit's ``StateDirectoryMode=0700`` and ``UMask=0077``
see to it; run by hand (a shell's umask is often 022) nothing would. So the controller does
it itself, whatever started it:

- :func:`use_private_umask`: ``picharge run`` creates every file 0600 and directory 0700
  (SQLite gives its WAL and shared-memory files the database file's mode, the log file and
  the certificates follow the umask);
- :func:`make_private`: at each start the directory is created 0700 if missing, and group
  and other permissions are taken from it and everything under it that an older version or
  another umask left readable (symbolic links are not followed).

Blocking file-system calls: run :func:`make_private` in a worker thread.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

#: Files 0600, directories 0700.
PRIVATE_UMASK = 0o077
DIR_MODE = 0o700


def use_private_umask() -> int:
    """Make this process (and its children) create private files; returns the old umask."""
    return os.umask(PRIVATE_UMASK)


def make_private(state_dir: Path) -> int:
    """Create ``state_dir`` 0700 if missing and take group and other permissions from it and
    everything in it; returns how many entries were changed. OSError when the directory
    cannot be created; an entry that cannot be changed is logged and skipped."""
    state_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    changed = 0
    for top, subdirs, files in os.walk(state_dir):  # Path.walk: Python 3.12
        directory = Path(top)
        for path in [directory, *(directory / name for name in (*subdirs, *files))]:
            try:
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode) or not stat.S_IMODE(mode) & 0o077:
                    continue
                path.chmod(stat.S_IMODE(mode) & 0o700)
            except OSError as exc:
                log.warning("cannot make %s private: %s", path, exc)
                continue
            changed += 1
    if changed:
        log.info("%s: group and other permissions removed from %d entries", state_dir, changed)
    return changed
