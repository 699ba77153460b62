"""What a thread wrote: for the SD-card wear tests (issue 12 §6)."""

from __future__ import annotations

import threading
from pathlib import Path

from controller.storage import Storage


def written_by(tid: int) -> int:
    """Bytes the thread ``tid`` of this process has passed to write calls (its ``wchar``:
    every byte SQLite hands the kernel, on any filesystem, tmpfs included)."""
    io = Path(f"/proc/self/task/{tid}/io").read_text()
    return int(dict(line.split(": ") for line in io.splitlines())["wchar"])


async def storage_thread(storage: Storage) -> int:
    """The native id of the thread that runs ``storage``'s SQLite work."""
    return await storage.run(lambda conn: threading.get_native_id())
