"""One status snapshot of the whole charge point, built in one place for every reader.

``picharge sim status``, the systemd status line and every listener of the event
broadcast (:mod:`controller.events`: a listener told to :class:`~controller.events.Resync`
reads this) see the same values: per connector the CP state, the contactor, the
OCPP-neutral status and its faults, the session, the last meter reading (energy, power,
current per phase), what is offered and which limits bind it, and the CSMS link's state.

The snapshot is frozen: it can be handed to another task, compared, or serialized with
:meth:`StatusSnapshot.to_json` (plain dicts, lists, strings and numbers) at leisure.
Build it with :meth:`controller.supervisor.Supervisor.snapshot`, on the loop thread.
Units live in names: A, W, Wh, V.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.connector_types import ConnectorStatus
from controller.limits import FixedBound, LimitSource
from drivers.base import MeterReading
from drivers.errors import FaultKind

if TYPE_CHECKING:
    from controller.supervisor import ConnectorRuntime

#: The link state of a charger without a CSMS (``[ocpp] url`` unset).
STANDALONE = "standalone"


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    """The connector's last meter reading; per-phase tuples hold L1, L2, L3 (None: the
    meter model does not measure it)."""

    energy_wh: float
    power_w: float | None
    current_a: tuple[float | None, float | None, float | None]
    voltage_v: tuple[float | None, float | None, float | None]

    @classmethod
    def of(cls, reading: MeterReading) -> MeterSnapshot:
        return cls(
            reading.energy_import_wh, reading.total_power_w, reading.current_a, reading.voltage_v
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "energy_wh": round(self.energy_wh, 1),
            "power_w": None if self.power_w is None else round(self.power_w, 1),
            "current_a": [None if a is None else round(a, 2) for a in self.current_a],
            "voltage_v": [None if v is None else round(v, 1) for v in self.voltage_v],
        }


@dataclass(frozen=True, slots=True)
class ConnectorSnapshot:
    """One connector as the controller sees it.

    ``cp_state``: the debounced CP state (None: no reading yet, or hidden behind our own
    state F). ``contactor_closed``: what the controller commanded. ``fault`` is the one
    reported with Faulted, ``faults`` every active one. ``transaction_id``: the CSMS's id,
    or our local one until the CSMS has given one (always, standalone). ``offered_a``:
    what the PWM offers now; ``limit_a``: the minimum of every bound and source (what
    would be offered during a session, 0 offered below 6 A), ``limited_by``: which bind
    ("Limited by ..."); ``limits``: every source that is set. ``available``: whether the
    connector is to be operative, as last asked (a change to inoperative applies once the
    running transaction ends; :attr:`status` says when it did). ``phases``: how many phases
    it supplies now, 1 or 3 (a phase switch's contactor decides; else its wiring).
    """

    id: int
    cp_state: str | None
    contactor_closed: bool
    status: ConnectorStatus
    fault: FaultKind | None
    faults: tuple[FaultKind, ...]
    transaction_id: int | str | None
    id_tag: str | None
    meter: MeterSnapshot | None
    offered_a: float
    limit_a: float
    limited_by: tuple[FixedBound | LimitSource, ...]
    limits: tuple[tuple[LimitSource, float], ...]
    available: bool = True
    phases: int = 3

    @classmethod
    def of(cls, rt: ConnectorRuntime) -> ConnectorSnapshot:
        machine = rt.machine
        status = rt.status or machine.status
        tx = rt.transaction
        offer = machine.offer
        return cls(
            id=rt.hw.id,
            cp_state=None if machine.cp_state is None else str(machine.cp_state),
            contactor_closed=machine.contactor_closed,
            status=status.status,
            fault=status.fault,
            faults=tuple(sorted(machine.active_faults)),
            transaction_id=None if tx is None else (tx.csms_id or tx.local_id),
            id_tag=None if tx is None else tx.id_tag,
            meter=None if rt.reading is None else MeterSnapshot.of(rt.reading),
            offered_a=rt.offered_a,
            limit_a=offer.limit_a,
            limited_by=offer.limited_by,
            limits=tuple(machine.limits.active.items()),
            available=machine.available_wanted,
            phases=rt.hw.phases,
        )

    def to_json(self) -> dict[str, Any]:
        """The connector's entry of ``picharge sim status`` as the controller knows it."""
        return {
            "id": self.id,
            "cp_state": self.cp_state,
            "contactor_closed": self.contactor_closed,
            "offered_current_a": round(self.offered_a, 2),
            "ocpp_status": str(self.status),
            "fault": None if self.fault is None else str(self.fault),
            "active_faults": [str(f) for f in self.faults],
            "transaction_id": self.transaction_id,
            "id_tag": self.id_tag,
            "meter": None if self.meter is None else self.meter.to_json(),
            "limit_a": round(self.limit_a, 2),
            "limited_by": [str(name) for name in self.limited_by],
            "limits": {str(source): round(a, 2) for source, a in self.limits},
            "available": self.available,
            "phases": self.phases,
        }


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Every connector, in id order, and the CSMS link's state (:data:`STANDALONE` without
    a CSMS)."""

    connectors: tuple[ConnectorSnapshot, ...]
    csms_link: str
    #: transaction messages queued under another OCPP version than the one running (or any,
    #: standalone), by version: they wait for it (controller.outbox)
    outbox_other_versions: Mapping[str, int] = field(default_factory=dict)

    def connector(self, connector_id: int) -> ConnectorSnapshot:
        for connector in self.connectors:
            if connector.id == connector_id:
                return connector
        raise LookupError(f"no connector {connector_id}")

    def to_json(self) -> dict[str, Any]:
        return {
            "connectors": [c.to_json() for c in self.connectors],
            "csms_link": self.csms_link,
            "outbox_other_versions": dict(self.outbox_other_versions),
        }
