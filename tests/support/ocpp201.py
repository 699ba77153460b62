"""What the OCPP 2.0.1 end-to-end tests share (no tests here): a session on the whole
controller started by the CSMS (:func:`remote_started`) or by a card (:func:`card_session`)."""

from __future__ import annotations

from typing import Any

from ocpp.v201 import call

from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import AppRig
from tests.support.wait import until

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
