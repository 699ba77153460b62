"""Pick the RFID reader driver named by ``[rfid] type`` (for the registry and ``check-hw``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from drivers import rfid_pn532, rfid_rdm6300
from drivers.base import CardReader
from drivers.rfid_common import SectionReader
from drivers.seams import HardwareSeams

READER_TYPES: Final = ("rdm6300", *rfid_pn532.TYPES)


def from_config(
    section: Mapping[str, Any], seams: HardwareSeams, *, key_prefix: str = "rfid"
) -> CardReader:
    """The configured reader; ``type`` is required: ``rdm6300``, ``pn532_uart``, ``pn532_i2c``.

    The chosen module validates the remaining keys; errors name ``<key_prefix>.<key>``.
    """
    kind = SectionReader(section, key_prefix).choice("type", READER_TYPES)
    if kind == "rdm6300":
        return rfid_rdm6300.from_config(section, seams, key_prefix=key_prefix)
    return rfid_pn532.from_config(section, seams, key_prefix=key_prefix)
