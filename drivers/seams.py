"""What differs between a Pi and the simulator below the drivers: the seams.

Kept apart from :mod:`drivers.base` so that the interfaces and readings stay free of any
hardware library: the connector state machine imports them, and an import contract checks
that nothing it imports reaches smbus2, gpiozero, pyserial or pymodbus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.base import SMBusLike
from drivers.modbus_line import ModbusLines


def open_smbus(bus: int) -> SMBusLike:
    """Open ``/dev/i2c-<bus>`` with smbus2: the Pi's default I2C seam."""
    from smbus2 import SMBus

    smbus: SMBusLike = SMBus(bus)
    return smbus


@dataclass(frozen=True)
class HardwareSeams:
    """Everything that differs between a Pi and the simulator *below* the drivers.

    The simulator replaces hardware, not drivers: it hands the same drivers a gpiozero
    ``MockFactory``, an SMBus stand-in, pseudo-terminal paths (through configuration) and
    temporary directories that look like sysfs.
    """

    pin_factory: Any = None  # a gpiozero pin Factory; None = gpiozero's own choice
    open_i2c_bus: Callable[[int], SMBusLike] = open_smbus
    pwm_sysfs_root: Path = Path("/sys/class/pwm")
    w1_sysfs_root: Path = Path("/sys/bus/w1/devices")
    #: The Modbus lines of this hardware: meters naming the same serial port share one.
    modbus_lines: ModbusLines = field(default_factory=ModbusLines)
    extra: dict[str, Any] = field(default_factory=dict)
