"""OCPP 2.0.1 test helpers: the controller speaking 2.0.1 with quiet timers, reading or
setting one device-model variable the way a CSMS does (GetVariables/SetVariables), and a
session on the whole controller started by the CSMS (:func:`remote_started`) or by a card
(:func:`card_session`), and what a variable monitor reported (:func:`monitor_events`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ocpp.v201 import call

from controller.connector_types import ConnectorStatus
from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import AppRig
from tests.support.wait import until

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


#: The idToken RequestStartTransaction sends: the tag the test CSMS accepts.
TOKEN = {"id_token": ACCEPTED_TAG, "type": "Central"}


async def remote_started(rig: AppRig, remote_start_id: int = 7) -> dict[str, Any]:
    """Plug in, RequestStartTransaction (Accepted), let the car ask for energy and wait until
    the contactor closed: the Started TransactionEvent."""
    await rig.act("plug")
    await rig.status("Occupied")
    answer = await rig.cp_call(
        call.RequestStartTransaction(id_token=TOKEN, remote_start_id=remote_start_id)
    )
    assert answer.status == "Accepted"
    await rig.act("charge")
    started = await rig.csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    await until(lambda: rig.hw("contactor_closed"), timeout_s=10)
    return started


async def card_session(rig: AppRig, *, charge: bool = False) -> Any:
    """Plug in and tap the accepted card; with ``charge`` the car then asks for energy and
    the contactor closes. The supervisor's running session (its Transaction)."""
    assert rig.app.supervisor is not None
    supervisor = rig.app.supervisor
    await rig.act("plug")
    await rig.status("Occupied")
    await rig.act("tap", uid=ACCEPTED_TAG.lower())  # the reader gives hex
    await until(lambda: supervisor.view(1).transaction is not None, what="the session begun")
    if charge:
        await rig.act("charge")
        await until(lambda: rig.hw("contactor_closed"), timeout_s=10)
    return supervisor.view(1).transaction


async def expire_reservation_offline(rig: AppRig) -> None:
    """With EVSE 1 Reserved (for about a second), the link goes down and stays down (the
    CSMS refuses to reconnect) until the reservation has expired: EVSE 1 is Available."""
    await rig.status("Reserved")
    rig.csms.refuse_connections = True
    await rig.csms.drop_connections()
    supervisor = rig.app.supervisor
    assert supervisor is not None
    await until(
        lambda: supervisor.view(1).status is ConnectorStatus.AVAILABLE,
        what="the reservation expired offline",
    )


def monitor_events(csms: LocalCsms, monitor_id: int, after: int = 0) -> list[dict[str, Any]]:
    """The eventData of every NotifyEvent the monitor ``monitor_id`` sent from ``after`` on."""
    return [
        data
        for r in csms.received[after:]
        if r.action == "NotifyEvent"
        for data in r.payload["eventData"]
        if data.get("variableMonitoringId") == monitor_id
    ]
