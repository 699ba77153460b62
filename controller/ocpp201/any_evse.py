"""How 2.0.1 shows a reservation made for any EVSE (ReserveNow without evseId, H01).

OCPP 1.6 lets a charge point show one free connector Reserved at once for a connector-0
reservation, and picharge's core does so for both versions: the reservation is held by one
free connector, which refuses other ids. 2.0.1 wants less of the drivers in the meantime
(H01.FR.07/09 and the errata's H01.FR.20/24): the station only has to keep one EVSE usable
for each such reservation, and shows EVSEs Reserved only once the free ones are all needed
for them. So:

- the core moves the reservation to another free connector when another card is presented
  at the one holding it (:meth:`controller.supervisor.Supervisor._move_any_reservation`),
  for both versions: nobody is refused while an EVSE is left for the reservation;
- this module is the 2.0.1 face of it: an EVSE that holds an any-EVSE reservation is
  reported Available while at least one other EVSE is Available, and Reserved once none is
  (then every free EVSE is needed: each holds one of the reservations). When another
  EVSE's status changes, the holders' faces are worked out again and the changed ones sent.

A core without :class:`~controller.domain.AnyReservationHolders` shows its statuses as they
are. Loop thread only.
"""

from __future__ import annotations

from controller.connector_types import ConnectorStatus
from controller.domain import AnyReservationHolders, ChargePointControl


class AnyEvseStatuses:
    """The status each EVSE shows the CSMS, and which ones to send again."""

    def __init__(self, control: ChargePointControl) -> None:
        self._control = control
        self._holders = control if isinstance(control, AnyReservationHolders) else None
        self._shown: dict[int, ConnectorStatus] = {}

    def face(self, connector_id: int, status: ConnectorStatus) -> ConnectorStatus:
        """What to show for ``status`` of EVSE ``connector_id`` (remembered as shown)."""
        shown = status
        if (
            status is ConnectorStatus.RESERVED
            and self._holders is not None
            and self._holders.holds_any_reservation(connector_id)
        ):
            others_free = any(
                self._control.view(other).status is ConnectorStatus.AVAILABLE
                for other in self._control.connector_ids
                if other != connector_id
            )
            shown = ConnectorStatus.AVAILABLE if others_free else ConnectorStatus.RESERVED
        self._shown[connector_id] = shown
        return shown

    def changed_elsewhere(self, connector_id: int) -> list[tuple[int, ConnectorStatus]]:
        """EVSE ``connector_id`` changed: the other EVSEs whose face changed with it."""
        changed = []
        for other in self._control.connector_ids:
            if other == connector_id or other not in self._shown:
                continue
            before = self._shown[other]
            now = self.face(other, self._control.view(other).status)
            if now is not before:
                changed.append((other, now))
        return changed
