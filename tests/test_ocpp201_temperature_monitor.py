"""OCPP 2.0.1 monitors on the connector's thermometer (N02-N04): TemperatureSensor.Temperature
of each EVSE is read live and monitorable like EVSE.Power. Against the whole controller on
simulated hardware (the simulated 1-wire thermometer played) and the bundled CSMS, with the
thermometer polled every 0.2 s instead of 10 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ocpp.v201 import call

from controller import supervisor
from controller.local_csms import LocalCsms
from tests.support.device_model import QUIET_KEYS, V201, monitor_events
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

THERMOMETER = {"name": "TemperatureSensor", "evse": {"id": 1}}
TEMPERATURE = {"component": THERMOMETER, "variable": {"name": "Temperature"}}


async def temperature(rig: AppRig) -> str:
    answer = await rig.cp_call(call.GetVariables(get_variable_data=[TEMPERATURE]))
    [result] = answer.get_variable_result
    assert result["attribute_status"] == "Accepted"
    return str(result.get("attribute_value") or "")


async def test_a_threshold_on_the_connector_temperature_trips_and_clears(
    csms: LocalCsms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "TEMPERATURE_POLL_S", 0.2)
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        thermometer = rig.app.sim.connector(1).thermometer
        thermometer.set_c(31.5)

        async def reads(text: str) -> bool:
            return await temperature(rig) == text

        await until(lambda: reads("31.5"), what="the thermometer read", interval_s=0.1)
        answer = await rig.cp_call(
            call.SetVariableMonitoring(
                set_monitoring_data=[
                    {**TEMPERATURE, "value": 45, "type": "UpperThreshold", "severity": 2},
                    {
                        "component": THERMOMETER,
                        "variable": {"name": "Humidity"},
                        "value": 45,
                        "type": "UpperThreshold",
                        "severity": 2,
                    },
                ]
            )
        )
        monitor_id = answer.set_monitoring_result[0]["id"]
        mark = rig.mark()
        report = await rig.cp_call(
            call.GetMonitoringReport(request_id=5, component_variable=[{"component": THERMOMETER}])
        )
        listed = await csms.wait_for("NotifyMonitoringReport", after=mark)
        thermometer.set_c(52.0)  # hot, still below the overtemperature fault
        await until(lambda: len(monitor_events(csms, monitor_id)) >= 1, timeout_s=10)
        thermometer.set_c(30.0)
        await until(lambda: len(monitor_events(csms, monitor_id)) >= 2, timeout_s=10)
        status = rig.app.supervisor.snapshot().connector(1).status  # type: ignore[union-attr]
    assert [r["status"] for r in answer.set_monitoring_result] == ["Accepted", "UnknownVariable"]
    assert report.status == "Accepted"
    [data] = listed["monitor"]
    assert (data["component"], data["variable"]) == (THERMOMETER, {"name": "Temperature"})
    tripped, cleared = monitor_events(csms, monitor_id)[:2]
    assert (tripped["component"], tripped["variable"]) == (THERMOMETER, {"name": "Temperature"})
    assert (tripped["trigger"], tripped["actualValue"]) == ("Alerting", "52.0")
    assert "cleared" not in tripped
    assert (cleared["actualValue"], cleared["cleared"]) == ("30.0", True)
    assert status != "Faulted"  # a monitor reports; the overtemperature fault is another rule
    assert csms.violations == []
