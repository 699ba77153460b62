"""Set a few keys of one ``[[table]]`` in a TOML configuration file, keeping everything else.

No round-trip TOML library is a dependency, and a configuration file is the installer's own
text: its comments, order and layout must survive a tool writing two numbers into it. So the
edit is line based (replace a ``key = value`` line of the table, or add one at the table's
end), and then proven: the result must parse, carry the new values, and equal the original
in every other key. Anything else (a key spread over several lines, an inline table) raises
:class:`ConfigEditError` and nothing is written.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_HEADER = re.compile(r"^\s*\[")


class ConfigEditError(ValueError):
    """The file cannot be edited safely; it is left as it was."""


def _array_header(line: str, table: str) -> bool:
    return re.match(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]\s*(#.*)?$", line) is not None


def set_array_table_keys(
    text: str, table: str, index: int, values: Mapping[str, float], note: str = ""
) -> str:
    """``text`` with ``values`` set in the ``index``-th (0-based) ``[[table]]``.

    A table one past the last is appended; ``note`` becomes a comment above added lines.
    """
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if _array_header(line, table)]
    rendered = {key: f"{key} = {value!r}" for key, value in values.items()}
    comment = [f"# {note}"] if note else []
    if index == len(headers):
        block = ["", f"[[{table}]]", *comment, *rendered.values()]
        edited = [*lines, *block]
    elif 0 <= index < len(headers):
        start = headers[index] + 1
        end = next((i for i in range(start, len(lines)) if _HEADER.match(lines[i])), len(lines))
        edited = list(lines)
        missing = []
        for key, line in rendered.items():
            pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
            found = [i for i in range(start, end) if pattern.match(edited[i])]
            if found:
                trailing = re.search(r"\s#[^\"']*$", edited[found[0]])  # its comment stays
                edited[found[0]] = line + (trailing.group(0) if trailing else "")
            else:
                missing.append(line)
        if missing:
            last = max((i for i in range(start, end) if edited[i].strip()), default=start - 1)
            edited[last + 1 : last + 1] = [*comment, *missing]
    else:
        raise ConfigEditError(f"there is no [[{table}]] number {index + 1} to add keys to")
    result = "\n".join(edited) + "\n"
    _verify(text, result, table, index, values)
    return result


def _verify(before: str, after: str, table: str, index: int, values: Mapping[str, float]) -> None:
    try:
        old: dict[str, Any] = tomllib.loads(before)
        new: dict[str, Any] = tomllib.loads(after)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigEditError(f"the edited file would not parse: {exc}") from exc
    tables = list(old.get(table, []))
    while len(tables) <= index:
        tables.append({})
    tables[index] = {**tables[index], **values}
    if new != {**old, table: tables}:
        raise ConfigEditError(
            f"editing [[{table}]] number {index + 1} line by line would change other keys "
            "(a multi-line value or an inline table?): set the keys by hand"
        )


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (a crash leaves the old or the new file),
    keeping its permission bits and, where allowed, its owner."""
    info = path.stat()
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(info.st_mode & 0o7777)
        if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
            os.chown(tmp, info.st_uid, info.st_gid)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
