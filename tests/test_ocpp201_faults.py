"""Hardware faults under OCPP 2.0.1 (issue 14, block N): the EVSE goes Faulted and a
NotifyEvent names the failing device's component with its Problem variable; when the fault
clears, the same component's Problem is reported false and cleared."""

from __future__ import annotations

from pathlib import Path

from controller.local_csms import LocalCsms
from tests.support.sim_app import controller

V201 = {"version": "2.0.1"}


async def test_an_rcd_trip_is_faulted_and_notified_and_its_clearing_too(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        mark = rig.mark()
        await rig.act("fault", fault="rcd")
        await rig.status("Faulted", mark)
        raised = await csms.wait_for("NotifyEvent", after=mark)
        mark = rig.mark()
        await rig.act("fault", fault="clear")
        await rig.status("Available", mark)
        cleared = await csms.wait_for("NotifyEvent", after=mark)
    [event] = raised["eventData"]
    assert event["component"] == {"name": "RCD", "evse": {"id": 1}}
    assert event["variable"] == {"name": "Problem"}
    assert (event["actualValue"], event["techCode"]) == ("true", "rcd_trip")
    assert event["eventNotificationType"] == "HardWiredNotification"
    [gone] = cleared["eventData"]
    assert (gone["component"]["name"], gone["actualValue"], gone["cleared"]) == (
        "RCD",
        "false",
        True,
    )
    assert cleared["seqNo"] == raised["seqNo"] + 1
