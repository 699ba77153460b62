"""2.0.1 MeterValue items from the domain's meter samples (J02: inside TransactionEvent).

Unlike 1.6, a 2.0.1 SampledValue's value is a number and its unit an object
(``unitOfMeasure``); an absent unit is the measurand's default (Wh, W, A, V), which is what
we send, so it is left out. A measurand the meter does not provide is left out too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.csms.wire import iso_utc
from controller.domain import MeterSample

WireDict = dict[str, Any]
_PHASES = ("L1", "L2", "L3")


def _sampled(measurand: str, sample: MeterSample, context: str) -> list[WireDict]:
    reading = sample.reading

    def item(value: float, phase: str | None = None) -> WireDict:
        out: WireDict = {"value": round(value, 3), "context": context, "measurand": measurand}
        if phase is not None:
            out["phase"] = phase
        return out

    def per_phase(values: tuple[float | None, ...]) -> list[WireDict]:
        return [item(v, p) for v, p in zip(values, _PHASES, strict=True) if v is not None]

    match measurand:
        case "Energy.Active.Import.Register":
            return [item(reading.energy_import_wh)]
        case "Power.Active.Import":
            return [] if reading.total_power_w is None else [item(reading.total_power_w)]
        case "Current.Import":
            return per_phase(reading.current_a)
        case "Voltage":
            return per_phase(reading.voltage_v)
        case "Frequency":
            return [] if reading.frequency_hz is None else [item(reading.frequency_hz)]
    return []


def meter_value(sample: MeterSample, measurands: Sequence[str], context: str) -> WireDict | None:
    """One MeterValue of ``sample`` with ``measurands`` (ReadingContext ``context``), or
    None when none of them could be read."""
    values = [v for m in measurands for v in _sampled(m, sample, context)]
    if not values:
        return None
    return {"timestamp": iso_utc(sample.timestamp), "sampledValue": values}
