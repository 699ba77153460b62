"""Smart charging's CSMS requests under 2.0.1 (K01, K08, K09, K10), as a mixin of
:class:`~controller.ocpp201.charge_point.Ocpp201ChargePoint`.

SetChargingProfile, GetChargingProfiles (answered at once; the ReportChargingProfiles parts
follow from ``@after`` in a task, one per EVSE, every part but the last with ``tbc``),
ClearChargingProfile (by id or by criteria) and GetCompositeSchedule, all served from the
services' version-neutral :class:`~controller.csms.smart_charging.SmartCharging`: a profile
is on disk before Accepted goes out, and the composite limit reaches the connector as its
"csms" limit source. RequestStartTransaction's TxProfile is held and released by
:mod:`.remote`. Every profile this charger holds was set by the CSMS: its
chargingLimitSource is CSO. Loop thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v201 import call, call_result
from ocpp.v201.datatypes import StatusInfoType
from ocpp.v201.enums import (
    Action,
    ChargingLimitSourceEnumType,
    ChargingProfileStatusEnumType,
    ClearChargingProfileStatusEnumType,
    GenericStatusEnumType,
    GetChargingProfileStatusEnumType,
)

from controller.charging_schedule import RateUnit
from controller.csms.profiles import InstalledProfile, Purpose
from controller.csms.wire import iso_utc
from controller.ocpp201.profiles import parse_purpose
from controller.ocpp201.smart_charging import SmartChargingVariables
from controller.ocppj.caller import call_checked, describe
from controller.ocppj.frames import CALL_FAILURES

if TYPE_CHECKING:
    from controller.ocpp201.services import Services

log = logging.getLogger(__name__)

#: Who set every profile this charger holds: the CSMS (2.0.1 ChargingLimitSourceEnumType).
SOURCE = ChargingLimitSourceEnumType.cso


def _rejected(reason: str, info: str) -> Any:
    return call_result.SetChargingProfile(
        ChargingProfileStatusEnumType.rejected,
        status_info=StatusInfoType(reason_code=reason, additional_info=info),
    )


def reported(
    profiles: Sequence[InstalledProfile],
    evse_id: int | None,
    criterion: dict[str, Any],
) -> list[InstalledProfile]:
    """The installed profiles GetChargingProfiles asks for (K09): on ``evse_id`` (None: all,
    0: the station's own), of the criterion's purpose, stack level, ids and sources (ours
    are all CSO), ordered by EVSE. A remote start's TxProfile still waiting for its EVSE is
    on none yet."""
    purpose_name = criterion.get("charging_profile_purpose")
    purpose = None if purpose_name is None else parse_purpose(purpose_name)
    if purpose_name is not None and purpose is None:
        return []  # ChargingStationExternalConstraints: none held
    sources = criterion.get("charging_limit_source")
    if sources is not None and SOURCE not in sources:
        return []
    ids = criterion.get("charging_profile_id")
    stack_level = criterion.get("stack_level")
    found = [
        p
        for p in profiles
        if p.connector_id is not None
        and (evse_id is None or p.connector_id == evse_id)
        and (purpose is None or p.purpose is purpose)
        and (stack_level is None or p.stack_level == stack_level)
        and (ids is None or p.profile_id in ids)
    ]
    return sorted(found, key=lambda p: p.connector_id or 0)


def wire_profile(profile: InstalledProfile) -> dict[str, Any]:
    """A profile as ChargingProfileType (snake_case, as received); a TxProfile names the
    transaction it belongs to (the remote start's too, once its transaction began)."""
    body = dict(profile.body)
    if profile.purpose is Purpose.TX and profile.transaction_key is not None:
        body["transaction_id"] = profile.transaction_key
    return body


class SmartChargingHandlers:
    """SetChargingProfile, GetChargingProfiles, ClearChargingProfile, GetCompositeSchedule."""

    _s: Services

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, evse_id: int, charging_profile: dict[str, Any], **_: Any
    ) -> Any:
        if not SmartChargingVariables(self._s.model).enabled:
            log.info("SetChargingProfile while SmartChargingCtrlr.Enabled is false: Rejected")
            return _rejected("NotEnabled", "SmartChargingCtrlr.Enabled is false")
        purpose = charging_profile.get("charging_profile_purpose")
        if purpose == "TxProfile" and charging_profile.get("transaction_id") is None:
            log.info("SetChargingProfile: a TxProfile without a transactionId, Rejected")
            return _rejected("TxNotFound", "a TxProfile names its transaction (K01.FR.03)")
        installed = await self._s.profiles.install(evse_id, charging_profile)
        if not installed:
            return _rejected("InvalidProfile", "see the charging station's log")
        return call_result.SetChargingProfile(ChargingProfileStatusEnumType.accepted)

    @on(Action.get_charging_profiles)
    def on_get_charging_profiles(
        self,
        request_id: int,
        charging_profile: dict[str, Any],
        evse_id: int | None = None,
        **_: Any,
    ) -> Any:
        if not reported(list(self._s.profiles.book), evse_id, charging_profile):
            return call_result.GetChargingProfiles(GetChargingProfileStatusEnumType.no_profiles)
        return call_result.GetChargingProfiles(GetChargingProfileStatusEnumType.accepted)

    @after(Action.get_charging_profiles)
    def after_get_charging_profiles(
        self,
        request_id: int,
        charging_profile: dict[str, Any],
        evse_id: int | None = None,
        **_: Any,
    ) -> None:
        found = reported(list(self._s.profiles.book), evse_id, charging_profile)
        if found:
            self._s.spawn(self._report(request_id, found), f"ocpp201-profiles-{request_id}")

    async def _report(self, request_id: int, found: list[InstalledProfile]) -> None:
        """ReportChargingProfiles: one part per EVSE (the message names one), ``tbc`` on all
        but the last (K09.FR.03)."""
        parts = [
            (evse, [wire_profile(p) for p in group])
            for evse, group in groupby(found, key=lambda p: p.connector_id or 0)
        ]
        for index, (evse, profiles) in enumerate(parts):
            request = call.ReportChargingProfiles(
                request_id=request_id,
                charging_limit_source=SOURCE,
                charging_profile=profiles,
                evse_id=evse,
                tbc=index < len(parts) - 1,
            )
            try:
                await call_checked(self, request)
            except CALL_FAILURES as exc:
                log.warning("ReportChargingProfiles %d not sent: %s", request_id, describe(exc))
                return

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        criteria = charging_profile_criteria or {}
        purpose_name = criteria.get("charging_profile_purpose")
        purpose = None if purpose_name is None else parse_purpose(purpose_name)
        cleared = (purpose_name is None or purpose is not None) and await self._s.profiles.clear(
            charging_profile_id, criteria.get("evse_id"), purpose, criteria.get("stack_level")
        )
        return call_result.ClearChargingProfile(
            ClearChargingProfileStatusEnumType.accepted
            if cleared
            else ClearChargingProfileStatusEnumType.unknown
        )

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        unit = None if charging_rate_unit is None else RateUnit(charging_rate_unit)
        rules = self._s.profiles.rules()
        answer = None
        if unit is None or unit in rules.allowed_units:  # K08.FR.05
            answer = self._s.profiles.composite(evse_id, duration, unit)
        if answer is None:
            log.info("GetCompositeSchedule of EVSE %d for %d s: Rejected", evse_id, duration)
            return call_result.GetCompositeSchedule(GenericStatusEnumType.rejected)
        return call_result.GetCompositeSchedule(
            GenericStatusEnumType.accepted,
            schedule={
                "evse_id": answer.connector_id,
                "duration": answer.duration_s,
                "schedule_start": iso_utc(answer.start),
                "charging_rate_unit": answer.unit.value,
                "charging_schedule_period": answer.wire_periods(),
            },
        )
