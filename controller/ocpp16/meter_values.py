"""MeterValue and SampledValue lists built from real meter samples.

Every value comes from a :class:`~controller.domain.MeterSample` the supervisor took from the
meter; a measurand the meter does not provide (a single-phase meter has no L2/L3, some have no
frequency) is left out, never invented. Values are decimal strings in the units the 1.6 spec
names (Wh, W, A, V; Frequency has no 1.6 unit and goes without one).

The lists are plain, JSON-ready dicts in wire spelling (camelCase), so a queued message can be
stored as it is (issue 5 makes the transaction queue durable).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ocpp.v16.enums import Measurand, Phase, UnitOfMeasure

from controller.csms.wire import decimal_text, iso_utc
from controller.domain import MeterSample, ReadingContext

log = logging.getLogger(__name__)

WireDict = dict[str, Any]

_PHASES = (Phase.l1, Phase.l2, Phase.l3)
_PHASE_VOLTAGES = (Phase.l1_n, Phase.l2_n, Phase.l3_n)

#: The measurands this charger can report (what MeterValuesSampledData & co. may name).
SUPPORTED_MEASURANDS = (
    Measurand.energy_active_import_register,
    Measurand.power_active_import,
    Measurand.current_import,
    Measurand.voltage,
    Measurand.current_offered,
    Measurand.frequency,
)
_BY_NAME = {m.value.casefold(): m for m in SUPPORTED_MEASURANDS}


def _value(
    measurand: Measurand, text: str, unit: UnitOfMeasure | None, phase: Phase | None
) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": text, "measurand": measurand.value}
    if phase is not None:
        sampled["phase"] = phase.value
    if unit is not None:
        sampled["unit"] = unit.value
    return sampled


def _per_phase(
    measurand: Measurand,
    values: Iterable[float | None],
    phases: Sequence[Phase],
    unit: UnitOfMeasure,
    places: int,
) -> list[dict[str, Any]]:
    return [
        _value(measurand, decimal_text(v, places), unit, phase)
        for v, phase in zip(values, phases, strict=True)
        if v is not None
    ]


def _measurand_values(sample: MeterSample, measurand: Measurand) -> list[dict[str, Any]]:
    reading = sample.reading
    match measurand:
        case Measurand.energy_active_import_register:
            text = decimal_text(reading.energy_import_wh, 1)
            return [_value(measurand, text, UnitOfMeasure.wh, None)]
        case Measurand.power_active_import:
            total = reading.total_power_w
            if total is None and all(p is not None for p in reading.power_w):
                total = sum(p for p in reading.power_w if p is not None)
            if total is None:
                return []
            return [_value(measurand, decimal_text(total, 1), UnitOfMeasure.w, None)]
        case Measurand.current_import:
            return _per_phase(measurand, reading.current_a, _PHASES, UnitOfMeasure.a, 2)
        case Measurand.voltage:
            return _per_phase(measurand, reading.voltage_v, _PHASE_VOLTAGES, UnitOfMeasure.v, 1)
        case Measurand.current_offered:
            return [_value(measurand, decimal_text(sample.offered_a, 1), UnitOfMeasure.a, None)]
        case Measurand.frequency:
            if reading.frequency_hz is None:
                return []
            return [_value(measurand, decimal_text(reading.frequency_hz, 2), None, None)]
    return []


def parse_measurands(names: Iterable[str]) -> list[Measurand]:
    """The supported measurands among ``names`` (case-insensitive), in the given order.

    A configuration key may name a measurand this charger cannot measure (OCPP keys are
    validated against the spec's list, not against our meter): it is skipped here.
    """
    found: list[Measurand] = []
    for name in names:
        measurand = _BY_NAME.get(name.strip().casefold())
        if measurand is not None and measurand not in found:
            found.append(measurand)
    return found


def meter_value(
    sample: MeterSample, measurands: Sequence[Measurand], context: ReadingContext
) -> WireDict | None:
    """One MeterValue (timestamp of the reading) with a SampledValue per available value.

    None when the sample offers none of ``measurands``: a MeterValue needs at least one.
    """
    sampled: list[dict[str, Any]] = []
    for measurand in measurands:
        try:
            values = _measurand_values(sample, measurand)
        except ValueError as exc:
            log.warning("connector %d: %s skipped: %s", sample.connector_id, measurand, exc)
            continue
        for value in values:
            value["context"] = context.value
            sampled.append(value)
    if not sampled:
        return None
    return {"timestamp": iso_utc(sample.timestamp), "sampledValue": sampled}
