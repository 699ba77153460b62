"""The 1.6 link: the version-neutral :class:`~controller.ocppj.link_loop.LinkLoop` speaking
``ocpp1.6``, with :class:`OcppChargePoint` sessions and the 1.6 keys HeartbeatInterval and
WebSocketPingInterval. Loop thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocpp.v16 import call

from controller.ocpp16.charge_point import OcppChargePoint
from controller.ocpp16.services import Services
from controller.ocppj.link_loop import LinkDialect

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

SUBPROTOCOL = "ocpp1.6"


def dialect(chargepoint_id: str, services: Services) -> LinkDialect[OcppChargePoint]:
    """How the 1.6 link opens its sessions and keeps them alive."""

    def session(ws: ClientConnection, response_timeout_s: float) -> OcppChargePoint:
        return OcppChargePoint(chargepoint_id, ws, services, response_timeout_s)

    return LinkDialect(
        name="ocpp16",
        subprotocol=SUBPROTOCOL,
        session=session,
        heartbeat=call.Heartbeat,
        heartbeat_key="HeartbeatInterval",
        ping_key="WebSocketPingInterval",
    )
