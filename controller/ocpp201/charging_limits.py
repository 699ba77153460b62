"""External charging limits (K12, K13): the CSMS hears when a local limit source holds an
EVSE below what its own profiles allow, and when that ends.

picharge's local limit sources (:class:`~controller.limits.LimitSource` other than CSMS:
the main-fuse and circuit manager, solar, the owner's limit from the page, the API or MQTT,
thermal derating) are, from the CSMS's side, the station's energy management system. While
their lowest limit on a connector (:attr:`~controller.domain.ConnectorView.local_limit_a`)
is below what the CSMS allows there (its composite limit now, else the connector's maximum)
the station sends NotifyChargingLimit with ``chargingLimitSource`` EMS (the sources are not
told apart: one energy manager as the CSMS sees it) and, when SmartChargingCtrlr.
NotifyChargingLimitWithSchedules is true, the limit as a chargingSchedule (one period from
now, in A: nothing local is known of the future); when it lifts (cleared, or no longer
below the CSMS's), ClearedChargingLimit (K13).

Rate-limited so that a fuse manager re-deciding every second does not flood the CSMS:

- a new limit is told only when it differs from the last one told by more than
  SmartChargingCtrlr.LimitChangeSignificance percent (K12.FR.02's threshold);
- at most one message per EVSE every :data:`MIN_GAP_S` seconds; a change held back is
  told at the first meter sample after the gap (samples come every second), so the CSMS
  always ends up with the latest state.

Not transaction messages: nothing is queued offline; the state is looked at again once
registered (a limit that came and went meanwhile is not told). Loop thread only.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocpp.v201 import call
from ocpp.v201.enums import ChargingLimitSourceEnumType

from controller.csms.calls import Spawn
from controller.csms.smart_charging import SmartCharging
from controller.csms.wire import iso_utc
from controller.domain import ChargePointControl
from controller.ocpp201.device_model import DeviceModel
from controller.ocppj.caller import SessionCaller, call_checked, describe
from controller.ocppj.frames import CALL_FAILURES

if TYPE_CHECKING:
    from controller.ocpp201.charge_point import Ocpp201ChargePoint

log = logging.getLogger(__name__)

WITH_SCHEDULES = "SmartChargingCtrlr.NotifyChargingLimitWithSchedules"
SIGNIFICANCE = "SmartChargingCtrlr.LimitChangeSignificance"
#: At most one NotifyChargingLimit or ClearedChargingLimit per EVSE this often (seconds).
MIN_GAP_S = 3.0
SOURCE = ChargingLimitSourceEnumType.ems


class ExternalLimits:
    """What the CSMS was told of each EVSE's external limit, and the telling."""

    def __init__(
        self,
        *,
        model: DeviceModel,
        control: ChargePointControl,
        profiles: SmartCharging,
        caller: SessionCaller[Ocpp201ChargePoint],
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model = model
        self._control = control
        self._profiles = profiles
        self._caller = caller
        self._spawn = spawn
        self._clock = clock
        self._monotonic = monotonic
        self._told: dict[int, float] = {}  # the external limit the CSMS knows, by EVSE
        self._last_sent: dict[int, float] = {}  # monotonic time of the last message

    def external_limit_a(self, connector_id: int) -> float | None:
        """The local limit holding the EVSE below what the CSMS allows (None: none does)."""
        local_a = self._control.view(connector_id).local_limit_a
        if local_a is None:
            return None
        allowed_a = self._profiles.rating(connector_id).max_current_a
        csms_a = self._profiles.limit_a(connector_id, self._clock())
        if csms_a is not None:
            allowed_a = min(allowed_a, csms_a)
        return local_a if local_a < allowed_a else None

    def observe(self, connector_id: int) -> None:
        """Look at the EVSE's limits (at each meter sample) and tell the CSMS what changed,
        within the rate limits. Returns at once."""
        cp = self._caller.cp
        if cp is None or not self._caller.registered:
            return
        now = self._monotonic()
        if now - self._last_sent.get(connector_id, -MIN_GAP_S) < MIN_GAP_S:
            return
        limit_a = self._external_change(connector_id)
        if limit_a is None:
            return
        self._last_sent[connector_id] = now
        if limit_a < 0:
            del self._told[connector_id]
            request: Any = call.ClearedChargingLimit(
                charging_limit_source=SOURCE, evse_id=connector_id
            )
            log.info("EVSE %d: the external limit lifted: ClearedChargingLimit", connector_id)
        else:
            self._told[connector_id] = limit_a
            request = self._notify(connector_id, limit_a)
            log.info("EVSE %d: external limit %.1f A: NotifyChargingLimit", connector_id, limit_a)
        self._spawn(self._send(cp, request), f"ocpp201-charging-limit-{connector_id}")

    def _external_change(self, connector_id: int) -> float | None:
        """The limit to tell now: a current (A), -1 for "cleared", None for nothing."""
        limit_a = self.external_limit_a(connector_id)
        told = self._told.get(connector_id)
        if limit_a is None:
            return None if told is None else -1.0
        if told is not None:
            significance = self._model.get_float(SIGNIFICANCE) / 100.0
            if abs(limit_a - told) <= significance * told:
                return None
        return limit_a

    def _notify(self, connector_id: int, limit_a: float) -> call.NotifyChargingLimit:
        schedule = None
        if self._model.get_bool(WITH_SCHEDULES):
            schedule = [
                {
                    "id": connector_id,
                    "charging_rate_unit": "A",
                    "start_schedule": iso_utc(self._clock()),
                    "charging_schedule_period": [{"start_period": 0, "limit": round(limit_a, 1)}],
                }
            ]
        return call.NotifyChargingLimit(
            charging_limit={"charging_limit_source": SOURCE},
            charging_schedule=schedule,
            evse_id=connector_id,
        )

    @staticmethod
    async def _send(cp: Ocpp201ChargePoint, request: Any) -> None:
        try:
            await call_checked(cp, request)
        except CALL_FAILURES as exc:
            log.warning("%s not sent: %s", type(request).__name__, describe(exc))
