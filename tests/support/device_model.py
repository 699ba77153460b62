"""OCPP 2.0.1 test helpers: the controller speaking 2.0.1 with quiet timers, and reading or
setting one device-model variable the way a CSMS does (GetVariables/SetVariables)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ocpp.v201 import call

from tests.support.sim_app import AppRig

#: ``controller(..., ocpp=V201)``: speak 2.0.1.
V201 = {"version": "2.0.1"}
#: No heartbeat, pings or periodic meter values in the way of what a test watches.
QUIET_KEYS: dict[str, dict[str, Any]] = {
    "OCPPCommCtrlr": {"HeartbeatInterval": 300, "WebSocketPingInterval": 0},
    "SampledDataCtrlr": {"TxUpdatedInterval": 0},
}


async def get_variable(rig: AppRig, component: str, name: str) -> str:
    """The Actual value of ``component.name`` as GetVariables answers it (Accepted)."""
    data = {"component": {"name": component}, "variable": {"name": name}}
    answer = await rig.cp_call(call.GetVariables(get_variable_data=[data]))
    [result] = answer.get_variable_result
    assert result["attribute_status"] == "Accepted", result
    return str(result["attribute_value"])


async def set_variable(rig: AppRig, component: str, name: str, value: str) -> str:
    """SetVariables of ``component.name``: its attributeStatus."""
    data = {"component": {"name": component}, "variable": {"name": name}, "attribute_value": value}
    answer = await rig.cp_call(call.SetVariables(set_variable_data=[data]))
    return str(answer.set_variable_result[0]["attribute_status"])


def tx_event(kind: str) -> Callable[[dict[str, Any]], bool]:
    """A ``wait_for`` match of the TransactionEvent of ``eventType`` ``kind``."""
    return lambda p: bool(p["eventType"] == kind)
