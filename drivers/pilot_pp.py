"""Proximity pilot (Type 2, IEC 62196-2): the cable's current rating from its PP-PE resistor.

Our board pulls PP up through ``pp_pullup_ohm`` (default 1 kOhm, as SmartEVSE) to
``pp_supply_v`` (3.3 V) and reads the divider on ADS1115 AIN2; the resistance maps to a rating
by the thresholds in :func:`drivers.pilot_levels.pp_rating_for_ohms` (reference 2.1).
Tethered cables usually have no PP contact: :class:`TetheredCable` reports a configured rating.

Threading: ``read_cable_rating_a`` runs the blocking conversions in ``asyncio.to_thread``;
events go to the sink on the loop thread.
"""

from __future__ import annotations

import asyncio
import statistics

from drivers.ads1115 import Ads1115
from drivers.base import DriverEvent, EventSink, ignore_events
from drivers.pilot_levels import FrontEndCalibration, PpVerdict, pp_rating_for_ohms

DEVICE = "pp"


class AdcProximitySensor:
    """:class:`drivers.base.ProximitySensor` reading the PP divider on an ADS1115 channel.

    Takes the median of ``samples`` conversions, so one disturbed conversion (a plug being
    inserted) cannot pick the wrong rating. A PP-PE short (< 75 Ohm) reads as no valid cable
    and emits a ``pp_short`` event. Bus errors propagate as ``TransientError``.
    """

    def __init__(
        self,
        adc: Ads1115,
        *,
        channel: int = 2,
        calibration: FrontEndCalibration | None = None,
        on_event: EventSink = ignore_events,
        samples: int = 3,
    ) -> None:
        self._adc = adc
        self._channel = channel
        self._calibration = calibration or FrontEndCalibration()
        self._on_event = on_event
        self._samples = samples

    def read_ohms(self) -> float:
        """The PP-PE resistance in Ohm (``math.inf`` when open). Blocking: call off the loop."""
        volts = statistics.median(self._adc.read_volts(self._channel) for _ in range(self._samples))
        return self._calibration.pp_ohms(volts)

    async def read_cable_rating_a(self) -> int | None:
        """The cable's rating in A; None with no cable (open, > 2 kOhm) or a shorted PP."""
        ohms = await asyncio.to_thread(self.read_ohms)
        verdict, rating_a = pp_rating_for_ohms(ohms)
        if verdict is PpVerdict.SHORT:
            self._on_event(
                DriverEvent(DEVICE, "pp_short", f"PP-PE {ohms:.0f} Ohm (< 75 Ohm): cable fault")
            )
        return rating_a


class TetheredCable:
    """:class:`drivers.base.ProximitySensor` for a fixed cable: no PP read, a known rating."""

    def __init__(self, rating_a: int) -> None:
        self.rating_a = rating_a

    async def read_cable_rating_a(self) -> int | None:
        return self.rating_a
