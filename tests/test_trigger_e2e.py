"""TriggerMessage end to end: the real controller on simulated hardware answers each trigger
and sends the message with what it knows now (statuses, the simulated meter's reading)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocpp.v16 import call

from controller.local_csms import LocalCsms
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until


async def trigger(rig: AppRig, message: str, connector_id: int | None = None) -> str:
    request = call.TriggerMessage(requested_message=message, connector_id=connector_id)
    return str((await rig.cp_call(request)).status)


async def triggered(rig: AppRig, message: str, connector_id: int | None = None) -> dict[str, Any]:
    mark = rig.mark()
    assert await trigger(rig, message, connector_id) == "Accepted"
    return await rig.csms.wait_for(message, after=mark, timeout_s=3)


async def test_boot_heartbeat_diagnostics_and_firmware_are_sent_on_request(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        boot = await triggered(rig, "BootNotification")
        assert boot["chargePointVendor"] == "picharge"
        assert await triggered(rig, "Heartbeat") == {}
        assert await triggered(rig, "DiagnosticsStatusNotification") == {"status": "Idle"}
        assert await triggered(rig, "FirmwareStatusNotification") == {"status": "Idle"}
        assert await trigger(rig, "Heartbeat", 3) == "Rejected"  # no connector 3


async def test_status_and_meter_values_of_a_charging_connector_are_current(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, connectors=2) as rig:
        await rig.charging()
        status = await triggered(rig, "StatusNotification", 1)
        assert (status["connectorId"], status["status"]) == (1, "Charging")
        mark = rig.mark()
        assert await trigger(rig, "StatusNotification") == "Accepted"
        await until(
            lambda: [r.action for r in csms.received[mark:]].count("StatusNotification") == 3
        )
        every = [
            (r.payload["connectorId"], r.payload["status"])
            for r in csms.received[mark:]
            if r.action == "StatusNotification"
        ]
        assert every == [(0, "Available"), (1, "Charging"), (2, "Available")]

        supervisor = rig.app.supervisor

        def power_w() -> float:
            reading = supervisor.view(1).reading
            return 0.0 if reading is None else reading.total_power_w or 0.0

        await until(lambda: power_w() > 10000)  # a sample taken while charging
        sampled_wh = supervisor.view(1).reading.energy_import_wh
        values = await triggered(rig, "MeterValues", 1)
        meter_wh = rig.app.sim.connector(1).meter.energy_wh
        [record] = csms.transactions.values()
        assert values["transactionId"] == record.transaction_id
        sampled = values["meterValue"][0]["sampledValue"]
        energy = next(v for v in sampled if v["measurand"] == "Energy.Active.Import.Register")
        assert energy["context"] == "Trigger"
        # the latest sample (or one taken since), never more than the meter counts now
        assert sampled_wh - 0.1 <= float(energy["value"]) <= meter_wh + 0.1  # to 0.1 Wh
        power = next(v for v in sampled if v["measurand"] == "Power.Active.Import")
        assert float(power["value"]) > 10000  # 16 A x 3 x 230 V from the simulated meter
        assert await trigger(rig, "MeterValues", 0) == "Rejected"
        assert await trigger(rig, "StatusNotification", 7) == "Rejected"


async def test_extended_triggers_reach_the_csms_from_the_running_controller(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:

        async def extended(message: str, sent: str, connector_id: int | None = None) -> Any:
            mark = rig.mark()
            request = call.ExtendedTriggerMessage(
                requested_message=message, connector_id=connector_id
            )
            assert (await rig.cp_call(request)).status == "Accepted"
            return await rig.csms.wait_for(sent, after=mark, timeout_s=3)

        status = await extended("StatusNotification", "StatusNotification", 1)
        assert (status["connectorId"], status["status"]) == (1, "Available")
        assert await extended("LogStatusNotification", "LogStatusNotification") == {
            "status": "Idle"
        }
        assert await extended("FirmwareStatusNotification", "SignedFirmwareStatusNotification") == {
            "status": "Idle"
        }
        refused = call.ExtendedTriggerMessage(requested_message="Heartbeat", connector_id=1)
        assert (await rig.cp_call(refused)).status == "Rejected"
