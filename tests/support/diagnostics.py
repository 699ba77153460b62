"""The OCPP 1.6 adapter rig with a log to upload, for GetDiagnostics, GetLog and the
triggers that report on them.

``make_diag_rig`` (a fixture): ``await make_diag_rig(log_text)`` starts a registered adapter
whose GetDiagnostics and GetLog read ``log_text`` (default :data:`LOG`, a window of lines
with a secret that must never leave the charger) from ``tmp_path/logs``.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.csms.diagnostics import FileLogs
from controller.local_csms import LocalCsms
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig

SECRET = "s3cr3t-AuthKey-value"
LOG = (
    "2026-11-23T10:00:00.000Z INFO controller.app: before the window\n"
    "2026-11-23T10:05:00.000Z INFO controller.app: inside the window\n"
    f"2026-11-23T10:06:00.000Z INFO ocpp: AuthorizationKey={SECRET} password=hunter22\n"
    "2026-11-23T10:07:00.000Z ERROR controller.x: failed\n"
    "Traceback (most recent call last):\n"
    '  File "x.py", line 1\n'
    "2026-11-23T10:30:00.000Z INFO controller.app: after the window\n"
)

MakeDiagRig = Callable[..., Awaitable[AdapterRig]]


def unpack(archive: bytes, member: str) -> str:
    """The text of ``member``, the only file of the uploaded gzip tar ``archive``."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert tar.getnames() == [member]
        extracted = tar.extractfile(member)
        assert extracted is not None
        return extracted.read().decode()


@pytest.fixture(name="make_diag_rig")
async def make_diag_rig_fixture(make_rig: MakeRig, tmp_path: Path) -> AsyncIterator[MakeDiagRig]:
    async def make(log_text: str = LOG) -> AdapterRig:
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        (logs / "picharge.log").write_text(log_text)
        rig = await make_rig(
            state=tmp_path / "state", adapter_args={"diagnostics_logs": FileLogs(logs)}
        )
        await rig.registered()
        return rig

    yield make  # make_rig stops every adapter and closes its storage


async def get_log(
    csms: LocalCsms,
    location: str,
    *,
    cp_id: str = CP_ID,
    log_type: str = "DiagnosticsLog",
    request_id: int = 1,
    window: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[str, str | None]:
    """GetLog; the answer's (status, filename)."""
    request = call.GetLog(
        log={"remoteLocation": location, **(window or {})},
        log_type=log_type,
        request_id=request_id,
        **kwargs,
    )
    answer = await csms.call(cp_id, request)
    return str(answer.status), answer.filename
