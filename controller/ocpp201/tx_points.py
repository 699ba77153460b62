"""TxStartPoint and TxStopPoint (E01-E07): when a 2.0.1 transaction begins and ends, within
the charging session the core runs.

The core records a session (its journal's transaction, what power-loss recovery closes and
what bills) from the moment an authorized id and a connected car are both there, until the
car leaves or the session is stopped; the contactor rules of the connector machine do not
depend on these variables. The 2.0.1 transaction is that session (the one begun at the
plug-in too, once authorized: the session takes its id), begun and ended where TxCtrlr
says:

- **Start.** Authorized begins it when the session begins (an id-first start therefore
  begins once the car is there too: a transaction without a car cannot be recovered from
  the hardware). EVConnected begins it when a car is plugged into an idle EVSE before any
  authorization (E02: Started with CablePluggedIn and no idToken, the authorization an
  Updated; :mod:`.plug_ins` keeps it on disk until the session takes it over, and ends it
  when the car leaves, at TxCtrlr.EVConnectionTimeOut or after a power cut); the session
  itself, and so the contactor, still waits for the authorization. With neither listed,
  PowerPathClosed begins it when the contactor closes (the connector Charging) and
  EnergyTransfer when energy first flows (a reading above :data:`FLOW_W` while Charging);
  Started then says ChargingStateChanged (or EnergyTransfer's reading: MeterValuePeriodic
  is no start reason, so ChargingStateChanged too). A session that ends before its start
  point never was a 2.0.1 transaction: nothing is sent for it.
- **Stop.** The session's own end (the car unplugged, a stop by card or CSMS, a fault, a
  reset) always ends the transaction: EVConnected and Authorized are those ends. With
  PowerPathClosed or EnergyTransfer listed, the transaction (and so the session) also ends
  when the connector stops Charging (the car paused: StoppedByEV; the charger paused it:
  Other), with trigger ChargingStateChanged; a new transaction needs a new authorization.

ParkingBayOccupancy (no bay sensor) and DataSigned (no signing meter) are not offered: the
variables' valuesList leaves them out and SetVariables naming them is Rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from controller.connector_types import ConnectorStatus

#: Watts above which energy is taken to flow (a meter's noise floor stays below).
FLOW_W = 10.0

EV_CONNECTED = "EVConnected"
AUTHORIZED = "Authorized"
POWER_PATH_CLOSED = "PowerPathClosed"
ENERGY_TRANSFER = "EnergyTransfer"
#: The members this charger offers, in the order it reports them.
MEMBERS = (EV_CONNECTED, AUTHORIZED, POWER_PATH_CLOSED, ENERGY_TRANSFER)


class Wait(StrEnum):
    """What a session's Started still waits for."""

    POWER_PATH = POWER_PATH_CLOSED
    ENERGY = ENERGY_TRANSFER


def start_wait(start_points: Iterable[str]) -> Wait | None:
    """What the Started of a session that just began waits for (None: nothing, send it)."""
    points = set(start_points)
    if not points or points & {EV_CONNECTED, AUTHORIZED}:
        return None
    return Wait.POWER_PATH if POWER_PATH_CLOSED in points else Wait.ENERGY


def reached(wait: Wait, status: ConnectorStatus, power_w: float | None) -> bool:
    """Whether ``wait`` is met with the connector in ``status`` drawing ``power_w`` (None:
    no reading yet)."""
    if status is not ConnectorStatus.CHARGING:
        return False
    return wait is Wait.POWER_PATH or (power_w is not None and power_w > FLOW_W)


def ends_with_charging(stop_points: Iterable[str]) -> bool:
    """Whether the transaction ends when the connector stops Charging."""
    return bool(set(stop_points) & {POWER_PATH_CLOSED, ENERGY_TRANSFER})


def stopped_reason(status: ConnectorStatus) -> str:
    """stoppedReason of a transaction ended by the power path opening into ``status``."""
    return "StoppedByEV" if status is ConnectorStatus.SUSPENDED_EV else "Other"
