"""Firmware packages for the update tests: tiny real wheels of picharge."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

#: Modules the installer's import check loads from a new version.
MODULES = (
    "controller/__init__.py",
    "controller/cli.py",
    "controller/app.py",
    "controller/ocpp16/__init__.py",
    "controller/ocpp16/adapter.py",
    "drivers/__init__.py",
    "drivers/base.py",
)


def build_wheel(
    version: str = "9.9.9", name: str = "picharge", broken: bool = False, marker: Path | None = None
) -> tuple[str, bytes]:
    """A tiny real wheel of ``name``: (file name, bytes); ``broken``: cli.py fails to import;
    ``marker``: importing its controller creates that file (proof that its code ran)."""
    dist = f"{name}-{version}.dist-info"
    files = {m: f"VERSION = {version!r}\n" for m in MODULES}
    if marker is not None:
        files["controller/__init__.py"] = (
            f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nVERSION = {version!r}\n"
        )
    if broken:
        files["controller/cli.py"] = "raise ImportError('this firmware is broken')\n"
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return f"{name}-{version}-py3-none-any.whl", data.getvalue()
