"""OCPP 2.0.1 charging profiles: checking what a CSMS sends (K01, F01's chargingProfile).

:func:`parse_profile` turns a ``chargingProfile`` (as the ocpp library hands it over,
snake_case) into an :class:`~controller.csms.profiles.InstalledProfile` for the
version-neutral :class:`~controller.csms.smart_charging.SmartCharging`, or raises
:class:`~controller.csms.profiles.ProfileRejected` saying why. The 2.0.1 rules checked here:

- ChargingStationMaxProfile only on EVSE 0 and never Relative (K01.FR.38); TxProfile never
  on EVSE 0 (K01.FR.16); a transactionId on nothing else (SetChargingProfile's TxProfile
  must name one, K01.FR.03, which its handler checks: a remote start's has none);
- ChargingStationExternalConstraints comes from an external system, never from the CSMS
  (K01.FR.22): rejected;
- an Absolute or Recurring schedule has a startSchedule (K01.FR.40), a Relative one none
  (K01.FR.41); the first period starts at 0 and periods increase (K01.FR.31/35, checked by
  :class:`~controller.charging_schedule.Schedule`);
- exactly one chargingSchedule: up to three are for ISO 15118 negotiation, which this
  charger (no PLC modem) cannot offer;
- SmartChargingCtrlr's limits (:class:`~controller.csms.profiles.ProfileRules`).

The purpose is kept in the neutral spelling (ChargingStationMaxProfile is
:attr:`~controller.csms.profiles.Purpose.CHARGE_POINT_MAX`); :func:`wire_purpose` turns it
back. minChargingRate and salesTariff are ignored (we cannot promise a minimum to the EV).
Pure (no I/O, no clock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from controller.charging_schedule import ScheduleKind
from controller.csms.profiles import (
    InstalledProfile,
    ProfileRejected,
    ProfileRules,
    Purpose,
    checked_profile,
    malformed_rejected,
    plain,
    read_schedule,
)

#: 2.0.1 ChargingProfilePurposeEnumType values this charger installs, as neutral purposes.
PURPOSES = {
    "ChargingStationMaxProfile": Purpose.CHARGE_POINT_MAX,
    "TxDefaultProfile": Purpose.TX_DEFAULT,
    "TxProfile": Purpose.TX,
}
_WIRE = {purpose: name for name, purpose in PURPOSES.items()}


def wire_purpose(purpose: Purpose) -> str:
    """The 2.0.1 spelling of ``purpose``."""
    return _WIRE[purpose]


def parse_purpose(name: str) -> Purpose | None:
    """A 2.0.1 purpose as the neutral one; None for one this charger never holds
    (ChargingStationExternalConstraints)."""
    return PURPOSES.get(name)


def parse_profile(
    body: Mapping[str, Any],
    connector_id: int | None,
    installed_at: dt.datetime,
    rules: ProfileRules | None,
    *,
    key: str,
) -> InstalledProfile:
    """``body`` for EVSE ``connector_id`` as an :class:`InstalledProfile` (see the module
    docstring); ``rules`` None skips SmartCharging's limits (a profile loaded after a restart
    was accepted under the rules of its day). Raises :class:`ProfileRejected`."""
    body = plain(body)
    with malformed_rejected():
        name = str(body["charging_profile_purpose"])
        schedules = body["charging_schedule"]
        if len(schedules) != 1:
            raise ProfileRejected(
                f"{len(schedules)} charging schedules: more than one is for ISO 15118 only"
            )
        raw = schedules[0]
        if body["charging_profile_kind"] == ScheduleKind.RELATIVE and raw.get("start_schedule"):
            raise ProfileRejected("a Relative schedule has no startSchedule")
        schedule = read_schedule(body, raw, None)
        profile_id = int(body["id"])
        stack_level = int(body["stack_level"])
    purpose = parse_purpose(name)
    if purpose is None:
        raise ProfileRejected(f"a {name} is not the CSMS's to set")
    transaction_id = body.get("transaction_id")
    if purpose is Purpose.CHARGE_POINT_MAX:
        if connector_id != 0:
            raise ProfileRejected("a ChargingStationMaxProfile belongs on EVSE 0")
        if schedule.kind is ScheduleKind.RELATIVE:
            raise ProfileRejected("a ChargingStationMaxProfile cannot be Relative")
    if purpose is Purpose.TX:
        if connector_id == 0:
            raise ProfileRejected("a TxProfile belongs on the EVSE of its transaction")
    elif transaction_id is not None:
        raise ProfileRejected(f"a transactionId on a {name}")
    return checked_profile(
        InstalledProfile(
            key,
            profile_id,
            connector_id,
            purpose,
            stack_level,
            schedule,
            body,
            installed_at,
            csms_transaction_id=None if transaction_id is None else str(transaction_id),
        ),
        rules,
    )
