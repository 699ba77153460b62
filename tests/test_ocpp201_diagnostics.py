"""OCPP 2.0.1 diagnostics (issue 14, block N) against the whole controller on simulated
hardware and the bundled CSMS (which fails a test on any schema violation): GetLog of the
controller's own log and of the security log uploaded to a real local HTTP server with its
LogStatusNotifications; NotifyEvent of a hardware fault raised while the CSMS is out of reach
delivered after the reconnect; the variable monitors (threshold and delta on the EVSE's
power) set, reported, tripping a NotifyEvent, and cleared.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.app import ChargePointApp
from controller.csms.security_events import SecurityEvent, SecurityEvents
from controller.domain import utc_now
from controller.local_csms import LocalCsms
from tests.support.device_model import QUIET_KEYS, V201, card_session
from tests.support.diagnostics import unpack
from tests.support.file_servers import HttpFiles
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

KEYS = QUIET_KEYS
FINAL = {"Uploaded", "UploadFailure", "PermissionDenied", "BadMessage", "NotSupportedOperation"}


def log_statuses(csms: LocalCsms, after: int) -> list[tuple[str, Any]]:
    return [
        (r.payload["status"], r.payload.get("requestId"))
        for r in csms.received[after:]
        if r.action == "LogStatusNotification"
    ]


async def get_log(rig: AppRig, location: str, log_type: str, request_id: int) -> Any:
    """GetLog of ``log_type`` to ``location``: the answer, once the upload ended (unless
    it was refused)."""
    mark = rig.mark()
    answer = await rig.cp_call(
        call.GetLog(log={"remote_location": location}, log_type=log_type, request_id=request_id)
    )
    if answer.status != "Rejected":
        await rig.csms.wait_for("LogStatusNotification", lambda p: p["status"] in FINAL, after=mark)
    return answer


async def test_get_log_uploads_the_controllers_log_and_reports_each_step(
    csms: LocalCsms, tmp_path: Path
) -> None:
    with HttpFiles() as server:
        async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
            logging.getLogger("controller.test").warning("a line of this run's log")
            mark = rig.mark()
            answer = await get_log(rig, f"{server.base}/logs/", "DiagnosticsLog", 41)
            statuses = log_statuses(csms, mark)
    assert answer.status == "Accepted"
    assert answer.filename.endswith(".tar.gz")
    assert statuses == [("Uploading", 41), ("Uploaded", 41)]
    [upload] = server.uploads
    name, archive = upload.form_file()
    assert name == answer.filename
    assert "a line of this run's log" in unpack(archive, "picharge.log")


async def test_get_log_uploads_the_security_log_with_events_from_before_the_restart(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async def record_an_event(app: ChargePointApp) -> None:
        assert app.storage is not None
        events = SecurityEvents(app.storage, utc_now)
        events.record(SecurityEvent.RECONFIGURATION, "SecurityProfile 1")
        await events.flush()

    with HttpFiles() as server:
        async with controller(
            csms, tmp_path, KEYS, ocpp=V201, base_keys={}, before_run=record_an_event
        ) as rig:
            answer = await get_log(rig, f"{server.base}/logs/", "SecurityLog", 5)
    assert answer.status == "Accepted"
    [upload] = server.uploads
    text = unpack(upload.form_file()[1], "security.log")
    assert "ReconfigurationOfSecurityParameters: SecurityProfile 1" in text


async def test_get_log_to_an_unsupported_location_is_rejected(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        answer = await get_log(rig, "gopher://example.com/", "SecurityLog", 2)
    assert answer.status == "Rejected"
    assert answer.filename is None


async def test_a_fault_raised_while_offline_is_notified_after_the_reconnect(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        csms.refuse_connections = True
        await csms.drop_connections()
        await until(lambda: not csms.connected, what="the link down")
        mark = rig.mark()
        await rig.act("fault", fault="rcd")
        await until(lambda: rig.app.supervisor.snapshot().connector(1).status == "Faulted")  # type: ignore[union-attr]
        csms.refuse_connections = False
        raised = await csms.wait_for("NotifyEvent", after=mark, timeout_s=20)
    [event] = raised["eventData"]
    assert (event["component"]["name"], event["actualValue"]) == ("RCD", "true")


def monitor(
    kind: str, value: float, severity: int = 5, evse: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "value": value,
        "type": kind,
        "severity": severity,
        "component": {"name": "EVSE", "evse": {"id": evse}},
        "variable": {"name": "Power"},
        **extra,
    }


def custom_events(csms: LocalCsms, after: int = 0) -> list[dict[str, Any]]:
    return [
        data
        for r in csms.received[after:]
        if r.action == "NotifyEvent"
        for data in r.payload["eventData"]
        if data["eventNotificationType"] == "CustomMonitor"
    ]


async def test_a_threshold_monitor_on_the_evse_power_trips_and_clears_with_notify_event(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        answer = await rig.cp_call(
            call.SetVariableMonitoring(
                set_monitoring_data=[
                    monitor("UpperThreshold", 1000),
                    monitor("Periodic", 0),  # no period
                    monitor("Delta", 0),
                    monitor("UpperThreshold", 1000, evse=9),
                    {
                        **monitor("UpperThreshold", 5),
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    },
                    monitor("UpperThreshold", 2000),  # same variable, type and severity
                ]
            )
        )
        statuses = [r["status"] for r in answer.set_monitoring_result]
        monitor_id = answer.set_monitoring_result[0]["id"]
        await card_session(rig, charge=True)
        tripped = await csms.wait_for(
            "NotifyEvent",
            lambda p: p["eventData"][0].get("variableMonitoringId") == monitor_id,
        )
        mark = rig.mark()
        await rig.act("pause")  # the car stops drawing: the power falls back
        cleared = await csms.wait_for(
            "NotifyEvent",
            lambda p: p["eventData"][0].get("variableMonitoringId") == monitor_id,
            after=mark,
        )
    assert statuses == [
        "Accepted",
        "Rejected",
        "Rejected",
        "UnknownComponent",
        "Rejected",
        "Duplicate",
    ]
    [event] = tripped["eventData"]
    assert (event["trigger"], event["eventNotificationType"]) == ("Alerting", "CustomMonitor")
    assert event["component"] == {"name": "EVSE", "evse": {"id": 1}}
    assert float(event["actualValue"]) > 1000
    assert "cleared" not in event
    [gone] = cleared["eventData"]
    assert gone["cleared"] is True and float(gone["actualValue"]) <= 1000


async def test_monitors_are_reported_filtered_by_level_and_cleared(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        answer = await rig.cp_call(
            call.SetVariableMonitoring(
                set_monitoring_data=[
                    monitor("UpperThreshold", 1000, severity=1),
                    monitor("UpperThreshold", 1000, severity=5),
                    monitor("Delta", 500, severity=8, transaction=True),
                ]
            )
        )
        urgent, minor, delta = (r["id"] for r in answer.set_monitoring_result)
        mark = rig.mark()
        everything = await rig.cp_call(call.GetMonitoringReport(request_id=1))
        full = await csms.wait_for("NotifyMonitoringReport", after=mark)
        mark = rig.mark()
        deltas = await rig.cp_call(
            call.GetMonitoringReport(request_id=2, monitoring_criteria=["DeltaMonitoring"])
        )
        only_delta = await csms.wait_for("NotifyMonitoringReport", after=mark)
        level = await rig.cp_call(call.SetMonitoringLevel(severity=2))
        too_high = await rig.cp_call(call.SetMonitoringLevel(severity=10))
        mark = rig.mark()
        await card_session(rig, charge=True)
        await csms.wait_for(
            "NotifyEvent", lambda p: p["eventData"][0].get("variableMonitoringId") == urgent
        )
        await rig.cp_call(call.TriggerMessage(requested_message="Heartbeat"))  # a round trip
        reported = {e["variableMonitoringId"] for e in custom_events(csms, mark)}
        cleared = await rig.cp_call(call.ClearVariableMonitoring(id=[minor, 99]))
        await rig.cp_call(call.SetMonitoringBase(monitoring_base="HardWiredOnly"))
        empty = await rig.cp_call(call.GetMonitoringReport(request_id=3))
    assert (everything.status, deltas.status, empty.status) == (
        "Accepted",
        "Accepted",
        "EmptyResultSet",
    )
    [data] = full["monitor"]
    assert [m["id"] for m in data["variableMonitoring"]] == [urgent, minor, delta]
    assert [m["type"] for m in only_delta["monitor"][0]["variableMonitoring"]] == ["Delta"]
    assert (level.status, too_high.status) == ("Accepted", "Rejected")
    assert reported == {urgent}  # severity 5 and 8 are below the level set
    assert [(r["id"], r["status"]) for r in cleared.clear_monitoring_result] == [
        (minor, "Accepted"),
        (99, "NotFound"),
    ]
