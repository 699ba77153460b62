"""The whole controller speaking to a CSMS with a security profile, and the log it writes.

The identity (:data:`CP_ID`, :data:`PASSWORD`) is the one the security tests' certificates
and Basic auth are made for.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from controller.local_csms import LocalCsms
from controller.logging_setup import stderr_handler
from tests.support.sim_app import AppRig, controller

CP_ID = "cp-sec"
PASSWORD = "0123456789abcdef0123"  # 20 characters: a whitepaper AuthorizationKey
KEYS = {"HeartbeatInterval": 30, "WebSocketPingInterval": 0}


@contextlib.contextmanager
def captured_log() -> Iterator[io.StringIO]:
    """The production handler (with its secret redaction) on the root logger, into a buffer."""
    stream = io.StringIO()
    handler = stderr_handler(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # what a charger logs by default
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@contextlib.asynccontextmanager
async def charger(csms: LocalCsms, workdir: Path, ocpp: Mapping[str, Any]) -> AsyncIterator[AppRig]:
    """The controller as :data:`CP_ID` with ``ocpp`` settings (profile, password, CA); not
    awaited to register, as some tests make sure it cannot."""
    async with controller(
        csms, workdir, base_keys=KEYS, cp_id=CP_ID, ocpp=ocpp, wait_ready=False
    ) as rig:
        yield rig


def client_serial(csms: LocalCsms) -> int | None:
    """The serial number of the client certificate :data:`CP_ID` showed on its connection."""
    transport = csms._session(CP_ID).ws.transport
    der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return None if not der else x509.load_der_x509_certificate(der).serial_number
