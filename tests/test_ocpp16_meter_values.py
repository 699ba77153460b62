"""Meter values through the OCPP 1.6 adapter: sampled every MeterValueSampleInterval during a
transaction, clock-aligned every ClockAlignedDataInterval, StopTransaction's transactionData,
and every value taken from a real meter sample (never invented, never repeated)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.connector_types import StopReason
from controller.domain import ReadingContext
from controller.ocpp16.meter_values import SUPPORTED_MEASURANDS, meter_value, parse_measurands
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig, sample
from tests.support.wait import until

pytestmark = pytest.mark.timing  # sample intervals of 0.1 s are wall-clock time: run alone

TAG = "04A1B2C3"
ALL = ",".join(m.value for m in SUPPORTED_MEASURANDS)


@contextlib.asynccontextmanager
async def meter(
    rig: AdapterRig, connectors: tuple[int, ...] = (1,), **kwargs: Any
) -> AsyncIterator[None]:
    """Feed a new sample per connector every 20 ms, energy rising 1 Wh each time."""

    async def feed() -> None:
        energy = 1000.0
        while True:
            for connector_id in connectors:
                rig.adapter.meter_sampled(sample(connector_id, energy, **kwargs), None)
            energy += 1
            # the meter's pace: a new sample every 20 ms
            await asyncio.sleep(0.02)

    task = asyncio.create_task(feed())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def meter_values(rig: AdapterRig) -> list[dict[str, Any]]:
    return [r.payload for r in rig.csms.received if r.action == "MeterValues"]


def described(value: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return [(s["measurand"], s.get("phase"), s.get("unit")) for s in value["sampledValue"]]


async def test_sampled_values_come_every_interval_with_the_configured_measurands(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(
        keys={
            "MeterValueSampleInterval": "1",
            "MeterValuesSampledData": ALL,
            "StopTxnSampledData": "",
        }
    )
    await rig.registered()
    async with meter(rig):
        tx = rig.control.start(1, TAG, 1000)
        first = await rig.csms.wait_for("MeterValues")
        await rig.csms.wait_for("MeterValues", after=len(rig.csms.received))
    assert first["transactionId"] == tx.csms_id and first["connectorId"] == 1
    (value,) = first["meterValue"]
    assert value["timestamp"].endswith("Z")
    assert described(value) == [
        ("Energy.Active.Import.Register", None, "Wh"),
        ("Power.Active.Import", None, "W"),
        ("Current.Import", "L1", "A"),
        ("Current.Import", "L2", "A"),
        ("Current.Import", "L3", "A"),
        ("Voltage", "L1-N", "V"),
        ("Voltage", "L2-N", "V"),
        ("Voltage", "L3-N", "V"),
        ("Current.Offered", None, "A"),
        ("Frequency", None, None),  # 1.6 has no unit for Hz
    ]
    assert {s["context"] for s in value["sampledValue"]} == {"Sample.Periodic"}
    assert all(isinstance(s["value"], str) for s in value["sampledValue"])
    values = {(s["measurand"], s.get("phase")): s["value"] for s in value["sampledValue"]}
    assert values[("Power.Active.Import", None)] == "11040"
    assert values[("Current.Import", "L2")] == "16"
    times = [r.monotonic_s for r in rig.csms.received if r.action == "MeterValues"]
    assert 0.07 <= times[1] - times[0] <= 0.25


async def test_a_single_phase_meter_reports_only_the_phase_it_has(make_rig: MakeRig) -> None:
    rig = await make_rig(keys={"MeterValueSampleInterval": "1", "MeterValuesSampledData": ALL})
    await rig.registered()
    async with meter(rig, phases=1, frequency_hz=None):
        rig.control.start(1, TAG, 1000)
        payload = await rig.csms.wait_for("MeterValues")
    assert described(payload["meterValue"][0]) == [
        ("Energy.Active.Import.Register", None, "Wh"),
        ("Power.Active.Import", None, "W"),
        ("Current.Import", "L1", "A"),
        ("Voltage", "L1-N", "V"),
        ("Current.Offered", None, "A"),
    ]


async def test_without_a_new_meter_reading_nothing_is_sent(make_rig: MakeRig) -> None:
    rig = await make_rig(keys={"MeterValueSampleInterval": "1"})
    await rig.registered()
    rig.control.start(1, TAG, 1000)  # no reading at all yet
    # nothing may happen here; the charger acts within tens of ms, so 0.25 s (2.5 sample intervals)
    # is a wide margin on a loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.25)
    assert meter_values(rig) == []
    rig.adapter.meter_sampled(sample(1, 1001), None)  # one reading: sent once, not repeated
    await until(lambda: len(meter_values(rig)) >= 1, what="the one reading sent")
    await asyncio.sleep(0.35)  # 3.5 sample intervals: the reading is not sent again
    assert len(meter_values(rig)) == 1


async def test_a_zero_sample_interval_sends_no_sampled_values(make_rig: MakeRig) -> None:
    rig = await make_rig(keys={"MeterValueSampleInterval": "0"})
    await rig.registered()
    async with meter(rig):
        rig.control.start(1, TAG, 1000)
        # nothing may happen here; the charger acts within tens of ms, so 0.3 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.3)
    assert meter_values(rig) == []


async def test_clock_aligned_values_come_at_wall_clock_boundaries_without_a_transaction(
    make_rig: MakeRig,
) -> None:
    arrivals: list[float] = []
    rig = await make_rig(
        keys={
            "ClockAlignedDataInterval": "1",  # 0.1 s at the test scale
            "MeterValuesAlignedData": "Energy.Active.Import.Register,Voltage",
        },
        connectors=(1, 2),
        on_message=lambda cp, action, payload: (
            arrivals.append(time.time()) if action == "MeterValues" else None
        ),
    )
    await rig.registered()
    async with meter(rig, connectors=(1, 2)):
        await until(lambda: len(meter_values(rig)) >= 6)
    values = meter_values(rig)
    assert {v["connectorId"] for v in values} == {1, 2}
    assert all("transactionId" not in v for v in values)
    first = values[0]["meterValue"][0]
    assert {s["context"] for s in first["sampledValue"]} == {"Sample.Clock"}
    assert [s["measurand"] for s in first["sampledValue"]] == [
        "Energy.Active.Import.Register",
        "Voltage",
        "Voltage",
        "Voltage",
    ]
    # each lands just after a 0.1 s boundary of the wall clock
    assert all(t % 0.1 < 0.05 for t in arrivals), [round(t % 0.1, 3) for t in arrivals]


async def test_clock_aligned_values_during_a_transaction_carry_its_id(make_rig: MakeRig) -> None:
    rig = await make_rig(keys={"ClockAlignedDataInterval": "1", "MeterValueSampleInterval": "0"})
    await rig.registered()
    async with meter(rig):
        tx = rig.control.start(1, TAG, 1000)
        await until(lambda: tx.csms_id is not None)
        payload = await rig.csms.wait_for("MeterValues", lambda p: "transactionId" in p)
    assert payload["transactionId"] == tx.csms_id
    assert payload["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"


async def test_stop_transaction_carries_the_stop_txn_sampled_and_aligned_data(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(
        keys={
            "MeterValueSampleInterval": "1",
            "ClockAlignedDataInterval": "2",
            "StopTxnSampledData": "Energy.Active.Import.Register",
            "StopTxnAlignedData": "Power.Active.Import",
        }
    )
    await rig.registered()
    async with meter(rig):
        # readings flow before the transaction starts
        await asyncio.sleep(0.05)
        tx = rig.control.start(1, TAG, 1000)
        # the transaction spans several 0.1 s sample intervals; its span is what is checked
        await asyncio.sleep(0.45)
        rig.control.stop(tx, 1020, StopReason.LOCAL, id_tag=TAG)
    stop = await rig.csms.wait_for("StopTransaction")
    data = stop["transactionData"]
    contexts = [d["sampledValue"][0]["context"] for d in data]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    assert contexts.count("Sample.Periodic") >= 3 and contexts.count("Sample.Clock") >= 1
    for entry in data:
        (value,) = entry["sampledValue"]
        clock = value["context"] == "Sample.Clock"
        assert value["measurand"] == (
            "Power.Active.Import" if clock else "Energy.Active.Import.Register"
        )


async def test_a_changed_sample_interval_applies_to_a_running_transaction(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(keys={"MeterValueSampleInterval": "100"})
    await rig.registered()
    async with meter(rig):
        rig.control.start(1, TAG, 1000)
        # nothing may happen here; the charger acts within tens of ms, so 0.1 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.1)
        assert meter_values(rig) == []
        from ocpp.v16 import call

        await rig.csms.call(CP_ID, call.ChangeConfiguration("MeterValueSampleInterval", "1"))
        await rig.csms.wait_for("MeterValues", timeout_s=0.5)


def test_power_comes_from_the_phases_when_the_meter_has_no_total() -> None:
    reading = sample(1, 10.0, total_power_w=None)
    no_total = type(reading.reading)(
        reading.reading.voltage_v,
        reading.reading.current_a,
        (100.0, 200.0, 300.0),
        None,
        10.0,
        None,
        0.0,
    )
    value = meter_value(
        type(reading)(1, reading.timestamp, no_total, 0.0),
        parse_measurands(["Power.Active.Import", "Frequency"]),
        ReadingContext.TRIGGER,
    )
    assert value is not None
    assert value["sampledValue"] == [
        {"value": "600", "measurand": "Power.Active.Import", "unit": "W", "context": "Trigger"}
    ]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (
            ["energy.active.import.register", " Voltage "],
            ["Energy.Active.Import.Register", "Voltage"],
        ),
        (["SoC", "Temperature", "Voltage", "Voltage"], ["Voltage"]),
        ([], []),
    ],
)
def test_measurand_names_are_matched_case_insensitively_and_unknown_ones_skipped(
    names: list[str], expected: list[str]
) -> None:
    assert [m.value for m in parse_measurands(names)] == expected


def test_no_measurand_available_means_no_meter_value() -> None:
    lonely = sample(1, 5.0, frequency_hz=None)
    assert meter_value(lonely, parse_measurands(["Frequency"]), ReadingContext.CLOCK) is None
