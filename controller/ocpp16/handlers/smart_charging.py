"""The SmartCharging feature profile's CSMS requests, as a mixin of the ChargePoint.

:class:`SmartChargingHandlers` is a base class of
:class:`~controller.ocpp16.charge_point.OcppChargePoint` (the ocpp library finds ``@on``
handlers on the instance, so they may live here). It serves SetChargingProfile,
ClearChargingProfile and GetCompositeSchedule from the services' :class:`SmartCharging`
(RemoteStartTransaction's TxProfile is held and released by :mod:`.core`). Handlers return
without awaiting any outgoing call; loop thread only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import (
    Action,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ClearChargingProfileStatus,
    GetCompositeScheduleStatus,
)

from controller.charging_schedule import RateUnit
from controller.csms.profiles import Purpose
from controller.csms.wire import iso_utc

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class SmartChargingHandlers:
    """SetChargingProfile, ClearChargingProfile, GetCompositeSchedule (OCPP 1.6 section 5)."""

    _s: Services

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **kwargs: Any
    ) -> Any:
        installed = await self._s.profiles.install(connector_id, cs_charging_profiles)
        return call_result.SetChargingProfile(
            ChargingProfileStatus.accepted if installed else ChargingProfileStatus.rejected
        )

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **kwargs: Any,
    ) -> Any:
        purpose = (
            Purpose(ChargingProfilePurposeType(charging_profile_purpose).value)
            if charging_profile_purpose is not None
            else None
        )
        cleared = await self._s.profiles.clear(id, connector_id, purpose, stack_level)
        return call_result.ClearChargingProfile(
            ClearChargingProfileStatus.accepted if cleared else ClearChargingProfileStatus.unknown
        )

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self,
        connector_id: int,
        duration: int,
        charging_rate_unit: str | None = None,
        **kwargs: Any,
    ) -> Any:
        unit = RateUnit(charging_rate_unit) if charging_rate_unit is not None else None
        answer = self._s.profiles.composite(connector_id, duration, unit)
        if answer is None:
            log.info(
                "GetCompositeSchedule of connector %d for %d s: Rejected", connector_id, duration
            )
            return call_result.GetCompositeSchedule(GetCompositeScheduleStatus.rejected)
        start = iso_utc(answer.start)
        return call_result.GetCompositeSchedule(
            GetCompositeScheduleStatus.accepted,
            connector_id=answer.connector_id,
            schedule_start=start,
            charging_schedule={
                "duration": answer.duration_s,
                "start_schedule": start,
                "charging_rate_unit": answer.unit.value,
                "charging_schedule_period": answer.wire_periods(),
            },
        )
