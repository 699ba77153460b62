"""OCPP 2.0.1 charging profiles as a CSMS sends them, for the smart-charging tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ocpp.v201 import call

from controller.domain import utc_now
from tests.support.sim_app import AppRig


def profile(
    purpose: str,
    *periods: tuple[int, float],
    profile_id: int = 1,
    stack_level: int = 0,
    kind: str = "Absolute",
    unit: str = "A",
    **extra: Any,
) -> dict[str, Any]:
    """A ChargingProfileType (snake_case, as the library sends it); periods (start s, limit).
    An Absolute or Recurring one starts a minute ago (2.0.1 requires a startSchedule)."""
    schedule: dict[str, Any] = {
        "id": 1,
        "charging_rate_unit": unit,
        "charging_schedule_period": [{"start_period": s, "limit": a} for s, a in periods],
    }
    if kind != "Relative":
        schedule["start_schedule"] = (utc_now() - dt.timedelta(minutes=1)).isoformat()
    return {
        "id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": [schedule],
        **extra,
    }


async def set_profile(rig: AppRig, evse_id: int, body: dict[str, Any]) -> str:
    answer = await rig.cp_call(call.SetChargingProfile(evse_id=evse_id, charging_profile=body))
    return str(answer.status)
