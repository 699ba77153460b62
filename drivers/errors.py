"""One error hierarchy for every driver.

The controller needs to know one thing about a failure: retry it, or treat it as a fault.
Transient errors (a Modbus timeout, a CRC error, a garbled serial frame) are retried with
backoff by the driver or its caller; a permanent fault (a welded contactor, a meter that stays
silent after its retries) carries a :class:`FaultKind` that the controller maps to an OCPP
error code. Drivers never raise bare ``Exception`` and never swallow errors silently.
"""

from __future__ import annotations

from enum import StrEnum


class FaultKind(StrEnum):
    """What is wrong, in hardware terms; the OCPP layer maps each to an error code."""

    RCD_TRIP = "rcd_trip"
    RCD_SELFTEST = "rcd_selftest"
    CONTACTOR_WELDED = "contactor_welded"
    CONTACTOR_FAILED_CLOSE = "contactor_failed_close"
    METER_OFFLINE = "meter_offline"
    READER_FAILURE = "reader_failure"
    CP_ERROR = "cp_error"
    DIODE_FAULT = "diode_fault"
    #: The CP window comparator tripped and the ADS1115 sampler did not see a hazard
    #: (drivers.cp_window): the two measurements of the CP disagree.
    CP_MISMATCH = "cp_mismatch"
    OVERTEMPERATURE = "overtemperature"
    LOCK_FAILURE = "lock_failure"
    #: Mains out of its tolerance, judged from the meter's phase voltages (drivers.mains).
    UNDER_VOLTAGE = "under_voltage"
    OVER_VOLTAGE = "over_voltage"
    #: The power-fail warning of a UPS or supercap HAT (drivers.power_fail): the charger
    #: runs on its reserve; transactions are stopped (PowerLoss) before the power goes.
    POWER_FAIL = "power_fail"
    #: The controller itself cannot work safely: its state database is corrupt, unwritable
    #: or the disk is full (transactions could not be recorded). Not raised by drivers.
    INTERNAL_ERROR = "internal_error"


class DriverError(Exception):
    """Base of every error a driver raises."""


class TransientError(DriverError):
    """A failure that a retry may cure: timeouts, CRC errors, garbage on a line."""


class PermanentFault(DriverError):
    """A failure that needs the charger to stop: the contactor must open and stay open."""

    def __init__(self, kind: FaultKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class HardwareUnavailable(DriverError):
    """The hardware library a driver needs does not work on this machine (no GPIO library
    on a Pi, or not a Pi at all); retrying cannot help."""


class ConfigurationError(DriverError):
    """A driver was configured with something it cannot use; ``key`` names the setting."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
