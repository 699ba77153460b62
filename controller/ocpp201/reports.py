"""GetBaseReport and GetReport (B07, B08): the device model as NotifyReport parts.

:func:`report_data` describes each variable as a ReportDataType (its Actual attribute with
mutability and persistence, never the value of a write-only one, and its characteristics);
:func:`split` cuts the list into NotifyReport parts of at most ``max_items`` items and about
``max_bytes`` bytes of JSON each (DeviceDataCtrlr ItemsPerMessage/BytesPerMessage, their
GetReport instance), every part but the last sent with ``tbc`` true.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from controller.ocpp201.device_model import (
    MEASURANDS,
    DataType,
    DeviceModel,
    Mutability,
    VariableDef,
)
from controller.ocppj.caller import call_checked, describe
from controller.ocppj.frames import CALL_FAILURES

if TYPE_CHECKING:
    from ocpp.charge_point import ChargePoint

log = logging.getLogger(__name__)

Item = dict[str, Any]


def _item(model: DeviceModel, defn: VariableDef) -> Item:
    attribute: Item = {
        "type": "Actual",
        "mutability": defn.mutability.value,
        "persistent": defn.persistent,
        # constant: read-only and not measured (a count or the clock changes by itself)
        "constant": defn.mutability is Mutability.READ_ONLY and not model.is_live(defn.name),
    }
    if defn.mutability is not Mutability.WRITE_ONLY:
        attribute["value"] = model.get(defn.name) or ""
    characteristics: Item = {"dataType": defn.data_type.value, "supportsMonitoring": False}
    if defn.unit is not None:
        characteristics["unit"] = defn.unit
    if defn.min_value is not None:
        characteristics["minLimit"] = defn.min_value
    if defn.max_value is not None:
        characteristics["maxLimit"] = defn.max_value
    if defn.data_type is DataType.MEMBER_LIST:
        characteristics["valuesList"] = ",".join(defn.members or MEASURANDS)
    bounds: list[Item] = [
        {"type": kind, "value": value, "mutability": "ReadOnly", "constant": True}
        for kind, value in defn.bounds.items()
    ]
    return {
        "component": {"name": defn.component},
        "variable": _variable(defn),
        "variableAttribute": [attribute, *bounds],
        "variableCharacteristics": characteristics,
    }


def _variable(defn: VariableDef) -> Item:
    if defn.instance is None:
        return {"name": defn.variable}
    return {"name": defn.variable, "instance": defn.instance}


def report_data(
    model: DeviceModel,
    *,
    configuration_only: bool = False,
    wanted: Iterable[tuple[str, str | None]] | None = None,
) -> list[Item]:
    """The ReportDataType items of ``model`` (camelCase): every variable, only the ones a
    CSMS can set (``configuration_only``), or those ``wanted`` as (component, variable or
    None for all of the component's)."""
    wanted_set = None if wanted is None else set(wanted)
    items = []
    for defn in model.definitions():
        if configuration_only and defn.mutability is Mutability.READ_ONLY:
            continue
        if wanted_set is not None and not (
            (defn.component, defn.variable) in wanted_set or (defn.component, None) in wanted_set
        ):
            continue
        items.append(_item(model, defn))
    return items


async def send_in_parts(
    cp: ChargePoint,
    model: DeviceModel,
    items: Sequence[Item],
    request: Callable[[int, list[Item], bool], Any],
    what: str,
) -> None:
    """Send ``items`` over ``cp`` as :func:`split` cuts them (DeviceDataCtrlr's
    ItemsPerMessage and BytesPerMessage): ``request(seq_no, part, tbc)`` builds each part
    (NotifyReport, NotifyMonitoringReport); a part that fails ends the report (logged as
    ``what``)."""
    parts = split(
        items,
        model.get_int("DeviceDataCtrlr.ItemsPerMessage[GetReport]"),
        model.get_int("DeviceDataCtrlr.BytesPerMessage[GetReport]"),
    )
    for seq_no, part in enumerate(parts):
        try:
            await call_checked(cp, request(seq_no, part, seq_no < len(parts) - 1))
        except CALL_FAILURES as exc:
            log.warning("%s part %d failed: %s", what, seq_no, describe(exc))
            return


def split(items: Sequence[Item], max_items: int, max_bytes: int) -> list[list[Item]]:
    """NotifyReport parts: at most ``max_items`` items each, and no more JSON than
    ``max_bytes`` unless one item alone is larger (it then goes alone)."""
    parts: list[list[Item]] = []
    part: list[Item] = []
    size = 0
    for item in items:
        item_size = len(json.dumps(item, separators=(",", ":")))
        if part and (len(part) >= max_items or size + item_size > max_bytes):
            parts.append(part)
            part, size = [], 0
        part.append(item)
        size += item_size
    if part:
        parts.append(part)
    return parts
