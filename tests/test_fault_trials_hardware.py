"""Every hardware fault the simulation can inject, during one charging session: the contactor
opens, the CSMS gets the fault's OCPP error code, the transaction is suspended (not ended:
OCPP 1.6 leaves that to the charge point, and a suspended session resumes where it was),
and clearing the fault resumes charging. The welded contactor comes last: it latches, the
session ends with the card (an unplugged car cannot be seen behind the state F a weld
holds), and the single transaction is closed once, with meterStop at the meter's register.

tests/test_e2e_ocpp16.py checks each fault's error code on its own; this adds the garbled
meter, the recovery after clearing, and what happens to the transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import controller.supervisor
from controller.app import ChargePointApp
from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import AppRig
from tests.support.sim_app import controller as running
from tests.support.wait import until

CP_ID = "cp-faults"
KEYS = {
    "HeartbeatInterval": 300,
    "MeterValueSampleInterval": 1,
    "ClockAlignedDataInterval": 0,
    "WebSocketPingInterval": 0,
}
#: fault -> the errorCode of its StatusNotification
FAULTS = [
    ("rcd", "GroundFailure"),
    ("meter", "PowerMeterFailure"),
    ("meter-garbage", "PowerMeterFailure"),
    ("cp", "EVCommunicationError"),
    ("diode", "EVCommunicationError"),
    ("overtemp", "HighTemperature"),
]


async def quick_diode_retry(app: ChargePointApp) -> None:
    assert app.supervisor is not None
    app.supervisor.diode_retry_s = 0.5


@pytest.fixture
async def rig(
    csms: LocalCsms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AppRig]:
    # poll the thermometer and the meter faster than a charger does: faults are seen sooner
    monkeypatch.setattr(controller.supervisor, "TEMPERATURE_POLL_S", 0.2)
    monkeypatch.setattr(controller.supervisor, "METER_POLL_S", 0.3)
    async with running(
        csms,
        tmp_path,
        base_keys=KEYS,
        cp_id=CP_ID,
        speed=20.0,
        # a silent meter is declared offline after one 0.2 s timeout, not 3 s of retries
        config={"meter": {"timeout_s": 0.2, "retries": 0, "backoff_s": 0.05}},
        before_run=quick_diode_retry,
    ) as r:
        yield r


async def test_every_fault_opens_the_contactor_suspends_the_session_and_clears(rig: AppRig) -> None:
    await rig.act("plug")
    await rig.act("charge")
    await rig.act("tap", uid=ACCEPTED_TAG)
    start = await rig.csms.wait_for("StartTransaction")
    await until(lambda: rig.hw("contactor_closed") and rig.hw("ev_current_a") > 10)
    for fault, error_code in FAULTS:
        mark = len(rig.csms.received)
        await rig.act("fault", fault=fault)
        faulted = await rig.status("Faulted", mark, errorCode=error_code)
        assert faulted["errorCode"] == error_code, fault
        await until(lambda: not rig.hw("contactor_closed"), 2.0)
        energy = rig.hw("energy_wh")
        # nothing may happen here; the charger acts within tens of ms, so 0.15 s (x20: 3 s of EV
        # time) is a wide margin on a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.15)
        assert rig.hw("energy_wh") == energy, fault  # nothing flows while faulted
        await rig.act("fault", fault="clear")
        await rig.status("Charging", mark)
        await until(lambda: rig.hw("contactor_closed"), 5.0)
        assert rig.sent("StopTransaction") == [], f"{fault} ended the transaction"
    # A weld shows when the contactor should open (the car pauses): it latches.
    mark = len(rig.csms.received)
    await rig.act("fault", fault="weld")
    await rig.act("pause")
    await rig.status("Faulted", mark, errorCode="PowerSwitchFailure")
    await rig.act("fault", fault="clear")
    # the weld stays latched after the clear: nothing may happen here; the charger acts within tens
    # of ms, so 0.5 s is a wide margin on a loaded machine, and a late wake-up only widens the
    # window
    await asyncio.sleep(0.5)
    assert rig.app.supervisor is not None
    assert rig.app.supervisor.view(1).status == "Faulted"  # a human must look at it
    # Behind the held state F an unplugged car cannot be seen: the card ends the session.
    await rig.act("tap", uid=ACCEPTED_TAG)
    stop = await rig.csms.wait_for("StopTransaction")
    [record] = rig.csms.transactions.values()
    assert stop["transactionId"] == record.transaction_id
    assert stop["reason"] == "Local"
    assert len(rig.sent("StartTransaction")) == 1 and len(rig.sent("StopTransaction")) == 1
    reading_wh = 3 * 16 * 230 * 20.0 * 0.3 / 3600  # one meter reading (0.3 s apart) at 20x
    assert start["meterStart"] <= stop["meterStop"]
    assert abs(stop["meterStop"] - rig.hw("energy_wh")) <= reading_wh
