"""The status the page and ``GET /api/v1/status`` show: the core's snapshot in words.

Built from :meth:`controller.supervisor.Supervisor.snapshot` (the same connector fields as
``picharge sim status``) plus what a person needs: the state in words, what to do about a
fault, the running session (start, energy, duration, card name). The car's state of charge
is never shown: an IEC 61851 charger is not told it (design.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from controller.connector_types import ConnectorStatus
from controller.domain import ConnectorView, utc_now
from controller.limits import FixedBound, LimitSource
from controller.status_snapshot import ConnectorSnapshot, StatusSnapshot
from drivers.errors import FaultKind


class Core(Protocol):
    """What the page reads from the supervisor."""

    def snapshot(self) -> StatusSnapshot: ...
    def view(self, connector_id: int) -> ConnectorView: ...


#: What a person at the charger can do about each fault.
ADVICE: Mapping[FaultKind, str] = {
    FaultKind.RCD_TRIP: "The residual current device tripped. Unplug the car; if it trips "
    "again, have the car and the installation checked by an electrician.",
    FaultKind.RCD_SELFTEST: "The residual current monitor failed its self-test. Try again "
    "with a card; if it keeps failing, call an electrician.",
    FaultKind.CONTACTOR_WELDED: "The contactor is welded shut. Switch the charger off at the "
    "breaker and call an electrician.",
    FaultKind.CONTACTOR_FAILED_CLOSE: "The contactor did not close. Unplug and try again; "
    "if it persists, call an electrician.",
    FaultKind.METER_OFFLINE: "The energy meter does not answer. Check its wiring.",
    FaultKind.READER_FAILURE: "The card reader does not answer. Check its wiring.",
    FaultKind.CP_ERROR: "The control pilot is shorted or the car reports an error. Unplug "
    "and check the cable.",
    FaultKind.DIODE_FAULT: "The car's pilot diode is missing. Unplug and check the cable.",
    FaultKind.CP_MISMATCH: "The charger's two measurements of the control pilot disagree. "
    "Unplug and plug in again; if it repeats, have the charger's pilot circuit checked.",
    FaultKind.OVERTEMPERATURE: "The charger is too hot. It resumes once it has cooled down.",
    FaultKind.LOCK_FAILURE: "The cable lock failed. Unplug and plug in again.",
    FaultKind.INTERNAL_ERROR: "The charger cannot write its state (storage full or failing). "
    "Check the SD card; it retries on its own.",
}

_WORDS: Mapping[ConnectorStatus, str] = {
    ConnectorStatus.AVAILABLE: "Available",
    ConnectorStatus.PREPARING: "Waiting for card",
    ConnectorStatus.CHARGING: "Charging",
    ConnectorStatus.SUSPENDED_EV: "Paused by the car",
    ConnectorStatus.SUSPENDED_EVSE: "Paused by the charger",
    ConnectorStatus.FINISHING: "Finished: unplug the car",
    ConnectorStatus.RESERVED: "Reserved",
    ConnectorStatus.UNAVAILABLE: "Unavailable",
    ConnectorStatus.FAULTED: "Fault",
}

_SOURCE_WORDS: Mapping[str, str] = {
    str(FixedBound.CONNECTOR): "the charger's maximum",
    str(FixedBound.CABLE): "the cable",
    str(LimitSource.CSMS): "the CSMS",
    str(LimitSource.LOAD_MANAGEMENT): "load management",
    str(LimitSource.MODE): "the charging mode",
    str(LimitSource.USER): "your limit",
    str(LimitSource.THERMAL): "temperature",
    str(LimitSource.PHASE_SWITCH): "a switch between one and three phases",
}


def state_text(c: ConnectorSnapshot) -> str:
    """The connector's state in words: "Charging, limited by your limit", "Fault: ..."."""
    words = _WORDS.get(c.status, str(c.status))
    if c.status is ConnectorStatus.FAULTED and c.fault is not None:
        return f"Fault: {str(c.fault).replace('_', ' ')}"
    sources = [s for s in c.limited_by if s not in (FixedBound.CONNECTOR, FixedBound.CABLE)]
    if sources and c.status in (ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EVSE):
        by = " and ".join(_SOURCE_WORDS[str(s)] for s in sources)
        return f"{words}, limited by {by}"
    return words


def connector_json(
    c: ConnectorSnapshot, view: ConnectorView, card_name: Callable[[str], str | None]
) -> dict[str, Any]:
    entry = c.to_json()
    entry["energy_wh"] = None if c.meter is None else round(c.meter.energy_wh, 1)
    entry["power_w"] = None if c.meter is None or c.meter.power_w is None else c.meter.power_w
    entry["state_text"] = state_text(c)
    entry["advice"] = None if c.fault is None else ADVICE.get(c.fault)
    tx = view.transaction
    if tx is None:
        entry["session"] = None
    else:
        now_wh = c.meter.energy_wh if c.meter is not None else tx.meter_start_wh
        entry["session"] = {
            "id": tx.local_id,
            "id_tag": tx.id_tag,
            "card_name": card_name(tx.id_tag),
            "started_at": tx.started_at.isoformat(),
            "duration_s": round((utc_now() - tx.started_at).total_seconds()),
            "energy_wh": round(max(0.0, now_wh - tx.meter_start_wh), 1),
        }
    return entry


def status_json(core: Core, card_name: Callable[[str], str | None]) -> dict[str, Any]:
    """``GET /api/v1/status``: every connector and the CSMS link's state."""
    snapshot = core.snapshot()
    return {
        "csms_link": snapshot.csms_link,
        "outbox_other_versions": dict(snapshot.outbox_other_versions),
        "connectors": [connector_json(c, core.view(c.id), card_name) for c in snapshot.connectors],
    }
