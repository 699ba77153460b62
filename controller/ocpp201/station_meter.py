"""EVSE 0's meter values (J01 for the station as a whole): the sum of the connectors' meters.

A 2.0.1 station reports its main meter's values as EVSE 0. This charger has no meter of its
own in front of its connectors (a site's grid meter, when configured, measures the whole
house, not the charger), so EVSE 0 is the sum of the connectors' meters, which is what a main
meter in front of them would read:

- Energy.Active.Import.Register and Power.Active.Import: the sums;
- Frequency: one supply, so the first connector's reading;
- per-phase Current.Import and Voltage are left out: connectors may be wired to the grid's
  phases in rotation (a connector's ``phase_rotation``), so their L1s need not be the same
  phase, and a sum by label would mislead.

It is reported only on a station of several connectors (with one, EVSE 0 would repeat EVSE
1) and only when every connector has a reading, so a silent meter does not make the sum
jump down. Pure functions; any thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from controller.domain import MeterSample
from controller.ocpp201.meter_values import WireDict, meter_value
from drivers.base import MeterReading

STATION_EVSE = 0
#: What EVSE 0 can report of the summed meters, in the order a MeterValue lists them.
SUMMED_MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Frequency")
_NO_PHASES: tuple[None, None, None] = (None, None, None)


def summed_sample(samples: Sequence[MeterSample], at: dt.datetime) -> MeterSample | None:
    """One reading of the whole station from every connector's latest ``samples`` (None:
    fewer than two connectors), stamped ``at``; its total power is unknown when any
    connector's is."""
    if len(samples) < 2:
        return None
    powers = [s.reading.total_power_w for s in samples]
    reading = MeterReading(
        voltage_v=_NO_PHASES,
        current_a=_NO_PHASES,
        power_w=_NO_PHASES,
        total_power_w=None if None in powers else sum(p for p in powers if p is not None),
        energy_import_wh=sum(s.reading.energy_import_wh for s in samples),
        frequency_hz=samples[0].reading.frequency_hz,
        taken_at=min(s.reading.taken_at for s in samples),
    )
    return MeterSample(
        connector_id=STATION_EVSE,
        timestamp=at,
        reading=reading,
        offered_a=sum(s.offered_a for s in samples),
    )


def station_measurands(measurands: Sequence[str]) -> list[str]:
    """Those of ``measurands`` that EVSE 0 reports (the rest have no meaning summed)."""
    return [m for m in measurands if m in SUMMED_MEASURANDS]


def station_value(
    samples: Sequence[MeterSample], measurands: Sequence[str], context: str, at: dt.datetime
) -> WireDict | None:
    """EVSE 0's MeterValue of the connectors' ``samples`` (None: nothing to report)."""
    summed = summed_sample(samples, at)
    if summed is None:
        return None
    return meter_value(summed, station_measurands(measurands), context)
