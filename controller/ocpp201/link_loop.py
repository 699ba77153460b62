"""The 2.0.1 link: the version-neutral :class:`~controller.ocppj.link_loop.LinkLoop`
speaking ``ocpp2.0.1``, with :class:`Ocpp201ChargePoint` sessions, the OCPPCommCtrlr's
HeartbeatInterval and WebSocketPingInterval, and a network profile's URL left for the
``[ocpp]`` one after NetworkProfileConnectionAttempts failed tries (B10). Loop thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocpp.v201 import call

from controller.ocpp201.charge_point import Ocpp201ChargePoint
from controller.ocpp201.services import Services
from controller.ocppj.link_loop import LinkDialect

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

SUBPROTOCOL = "ocpp2.0.1"
HEARTBEAT = "OCPPCommCtrlr.HeartbeatInterval"
PING = "OCPPCommCtrlr.WebSocketPingInterval"
ATTEMPTS = "OCPPCommCtrlr.NetworkProfileConnectionAttempts"


def dialect(chargepoint_id: str, services: Services) -> LinkDialect[Ocpp201ChargePoint]:
    """How the 2.0.1 link opens its sessions and keeps them alive."""

    def session(ws: ClientConnection, response_timeout_s: float) -> Ocpp201ChargePoint:
        return Ocpp201ChargePoint(
            chargepoint_id, ws, services=services, response_timeout=response_timeout_s
        )

    return LinkDialect(
        name="ocpp201",
        subprotocol=SUBPROTOCOL,
        session=session,
        heartbeat=call.Heartbeat,
        heartbeat_key=HEARTBEAT,
        ping_key=PING,
        attempts_key=ATTEMPTS,
    )
