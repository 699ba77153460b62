"""OCPP 1.6 charging profiles: checking what a CSMS sends.

:func:`parse_profile` turns a ``csChargingProfiles`` / ``chargingProfile`` (as the ocpp
library hands it over, snake_case) into an :class:`~controller.csms.profiles.InstalledProfile`
whose schedule is a :class:`~controller.charging_schedule.Schedule`, or raises
:class:`~controller.csms.profiles.ProfileRejected` saying why: the 1.6 rules
(ChargePointMaxProfile on connector 0 only, TxProfile never there, transactionId only on a
TxProfile) and the SmartCharging keys (:class:`~controller.csms.profiles.ProfileRules`).
minChargingRate is ignored (we cannot promise a minimum to the EV). An Absolute schedule
without startSchedule starts when it was installed; a Recurring one needs a startSchedule.
Pure (no I/O, no clock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from controller.charging_schedule import (
    RateUnit,
    Recurrency,
    Schedule,
    ScheduleError,
    ScheduleKind,
    SchedulePeriod,
)
from controller.csms.profiles import InstalledProfile, ProfileRejected, ProfileRules, Purpose
from controller.csms.wire import parse_iso


def plain(value: Any) -> Any:
    """``value`` with Decimals as floats: the library parses numbers of schemas with
    ``multipleOf`` (limits) as Decimal, which neither JSON nor our math wants."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


def _when(value: object) -> dt.datetime | None:
    return None if value is None else parse_iso(str(value))


def _schedule(body: Mapping[str, Any], installed_at: dt.datetime) -> Schedule:
    kind = ScheduleKind(body["charging_profile_kind"])
    raw = body["charging_schedule"]
    start = _when(raw.get("start_schedule"))
    if kind is ScheduleKind.ABSOLUTE and start is None:
        start = installed_at
    duration = raw.get("duration")
    return Schedule(
        kind=kind,
        unit=RateUnit(raw["charging_rate_unit"]),
        periods=tuple(
            SchedulePeriod(
                int(period["start_period"]),
                float(period["limit"]),
                None if period.get("number_phases") is None else int(period["number_phases"]),
            )
            for period in raw["charging_schedule_period"]
        ),
        start=start,
        duration_s=None if duration is None else int(duration),
        recurrency=(
            Recurrency(body["recurrency_kind"])
            if kind is ScheduleKind.RECURRING and body.get("recurrency_kind") is not None
            else None
        ),
        valid_from=_when(body.get("valid_from")),
        valid_to=_when(body.get("valid_to")),
    )


def parse_profile(
    body: Mapping[str, Any],
    connector_id: int | None,
    installed_at: dt.datetime,
    rules: ProfileRules | None,
    *,
    key: str,
) -> InstalledProfile:
    """``body`` for ``connector_id`` as an :class:`InstalledProfile`.

    ``rules`` None skips the configuration keys (a profile loaded after a restart was
    accepted under the rules of its day). Raises :class:`ProfileRejected`.
    """
    body = plain(body)
    try:
        purpose = Purpose(body["charging_profile_purpose"])
        schedule = _schedule(body, installed_at)
        profile_id = int(body["charging_profile_id"])
        stack_level = int(body["stack_level"])
    except ScheduleError as exc:
        raise ProfileRejected(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileRejected(f"malformed profile ({type(exc).__name__}: {exc})") from exc
    if purpose is Purpose.CHARGE_POINT_MAX and connector_id != 0:
        raise ProfileRejected("a ChargePointMaxProfile belongs on connector 0")
    if purpose is Purpose.TX and connector_id == 0:
        raise ProfileRejected("a TxProfile belongs on the connector of its transaction")
    if purpose is not Purpose.TX and body.get("transaction_id") is not None:
        raise ProfileRejected(f"a transactionId on a {purpose}")
    transaction_id = body.get("transaction_id")
    if stack_level < 0:
        raise ProfileRejected(f"stack level {stack_level} is negative")
    if rules is not None:
        if stack_level > rules.max_stack_level:
            raise ProfileRejected(
                f"stack level {stack_level} is above ChargeProfileMaxStackLevel "
                f"{rules.max_stack_level}"
            )
        if schedule.unit not in rules.allowed_units:
            raise ProfileRejected(
                f"limits in {schedule.unit} are not in ChargingScheduleAllowedChargingRateUnit"
            )
        if len(schedule.periods) > rules.max_periods:
            raise ProfileRejected(
                f"{len(schedule.periods)} periods, ChargingScheduleMaxPeriods is "
                f"{rules.max_periods}"
            )
        if schedule.valid_to is not None and schedule.valid_to <= installed_at:
            raise ProfileRejected("validTo has passed")
    return InstalledProfile(
        key=key,
        profile_id=profile_id,
        connector_id=connector_id,
        purpose=purpose,
        stack_level=stack_level,
        schedule=schedule,
        body=body,
        installed_at=installed_at,
        csms_transaction_id=None if transaction_id is None else int(transaction_id),
    )
