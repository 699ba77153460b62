"""Every hardware fault the simulation can inject, during one charging session, under OCPP 1.6
and 2.0.1 alike: the contactor opens, the CSMS hears of the fault (1.6: the StatusNotification's
errorCode; 2.0.1: the EVSE Faulted and a NotifyEvent naming the failing device's component),
the transaction is suspended (not ended: OCPP leaves that to the charge point, and a suspended
session resumes where it was), and clearing the fault resumes charging. The welded contactor
comes last: it latches, the session ends with the card (an unplugged car cannot be seen behind
the state F a weld holds), and the single transaction is closed once, reason Local, with the
register at its end at the meter's (the judge of bench/fault_trials.py reads it, per version).

tests/test_e2e_ocpp16.py checks each fault's error code on its own; this adds the garbled
meter, the recovery after clearing, and what happens to the transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import controller.supervisor
from bench.trial_protocols import DIALECTS
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
#: 2.0.1: the same intervals as device-model variables
VARIABLES = {
    "OCPPCommCtrlr": {"HeartbeatInterval": 300, "WebSocketPingInterval": 0},
    "SampledDataCtrlr": {"TxUpdatedInterval": 1},
}
#: fault -> the errorCode of its 1.6 StatusNotification, the component its 2.0.1 NotifyEvent
#: names
FAULTS = [
    ("rcd", "GroundFailure", "RCD"),
    ("meter", "PowerMeterFailure", "FiscalMetering"),
    ("meter-garbage", "PowerMeterFailure", "FiscalMetering"),
    ("cp", "EVCommunicationError", "CPPWMController"),
    ("diode", "EVCommunicationError", "CPPWMController"),
    ("overtemp", "HighTemperature", "TemperatureSensor"),
]
WELD = ("PowerSwitchFailure", "PowerContactor")


async def quick_diode_retry(app: ChargePointApp) -> None:
    assert app.supervisor is not None
    app.supervisor.diode_retry_s = 0.5


@pytest.fixture(params=["1.6", "2.0.1"])
async def rig(
    csms: LocalCsms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[AppRig]:
    # poll the thermometer and the meter faster than a charger does: faults are seen sooner
    monkeypatch.setattr(controller.supervisor, "TEMPERATURE_POLL_S", 0.2)
    monkeypatch.setattr(controller.supervisor, "METER_POLL_S", 0.3)
    version = request.param
    async with running(
        csms,
        tmp_path,
        base_keys=KEYS if version == "1.6" else VARIABLES,
        ocpp={"version": version},
        cp_id=CP_ID,
        speed=20.0,
        # a silent meter is declared offline after one 0.2 s timeout, not 3 s of retries
        config={"meter": {"timeout_s": 0.2, "retries": 0, "backoff_s": 0.05}},
        before_run=quick_diode_retry,
    ) as r:
        yield r


async def fault_reported(
    rig: AppRig, version: str, mark: int, error_code: str, component: str
) -> None:
    """The CSMS heard of the fault in its version's words."""
    if version == "1.6":
        await rig.status("Faulted", mark, errorCode=error_code)
        return
    await rig.status("Faulted", mark)
    await rig.csms.wait_for(
        "NotifyEvent",
        lambda p: any(
            e["component"]["name"] == component and e["actualValue"] == "true"
            for e in p["eventData"]
        ),
        after=mark,
    )


async def test_every_fault_opens_the_contactor_suspends_the_session_and_clears(rig: AppRig) -> None:
    version = rig.app.config.ocpp_version
    dialect = DIALECTS[version]

    def ends() -> list[dict[str, object]]:
        action, predicate = dialect.ended()
        return [p for p in rig.sent(action) if predicate(p)]

    await rig.act("plug")
    await rig.act("charge")
    await rig.act("tap", uid=ACCEPTED_TAG)
    await rig.csms.wait_for(*dialect.started())
    await until(lambda: rig.hw("contactor_closed") and rig.hw("ev_current_a") > 10)
    for fault, error_code, component in FAULTS:
        mark = len(rig.csms.received)
        await rig.act("fault", fault=fault)
        await fault_reported(rig, version, mark, error_code, component)
        await until(lambda: not rig.hw("contactor_closed"), 2.0)
        energy = rig.hw("energy_wh")
        # nothing may happen here; the charger acts within tens of ms, so 0.15 s (x20: 3 s of EV
        # time) is a wide margin on a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.15)
        assert rig.hw("energy_wh") == energy, fault  # nothing flows while faulted
        await rig.act("fault", fault="clear")
        await rig.status("Charging" if version == "1.6" else "Occupied", mark)
        await until(lambda: rig.hw("contactor_closed"), 5.0)
        assert ends() == [], f"{fault} ended the transaction"
    # A weld shows when the contactor should open (the car pauses): it latches.
    mark = len(rig.csms.received)
    await rig.act("fault", fault="weld")
    await rig.act("pause")
    await fault_reported(rig, version, mark, *WELD)
    await rig.act("fault", fault="clear")
    # the weld stays latched after the clear: nothing may happen here; the charger acts within tens
    # of ms, so 0.5 s is a wide margin on a loaded machine, and a late wake-up only widens the
    # window
    await asyncio.sleep(0.5)
    assert rig.app.supervisor is not None
    assert rig.app.supervisor.view(1).status == "Faulted"  # a human must look at it
    # Behind the held state F an unplugged car cannot be seen: the card ends the session.
    await rig.act("tap", uid=ACCEPTED_TAG)
    await rig.csms.wait_for(*dialect.ended())
    [view] = dialect.transactions(rig.csms, CP_ID, set(), 0)
    assert view.stop_reason == "Local"
    assert len(set(view.ends)) == 1 and view.problems == []
    reading_wh = 3 * 16 * 230 * 20.0 * 0.3 / 3600  # one meter reading (0.3 s apart) at 20x
    assert view.meter_start_wh is not None and view.meter_stop_wh is not None
    assert view.meter_start_wh <= view.meter_stop_wh
    assert abs(view.meter_stop_wh - rig.hw("energy_wh")) <= reading_wh
    assert rig.csms.violations == []
