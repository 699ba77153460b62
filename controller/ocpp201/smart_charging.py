"""Smart charging under 2.0.1 (block K): the version-neutral
:class:`~controller.csms.smart_charging.SmartCharging` with SmartChargingCtrlr's rules.

:func:`build` makes the service the handlers (:mod:`.smart_charging_handlers`) and the
adapter share: 2.0.1's parser (:mod:`.profiles`), the charger's own transactionId as the one
a TxProfile names, and SmartChargingCtrlr.Entries reporting how many profiles are installed.
:class:`SmartChargingVariables` reads SmartChargingCtrlr at each use. :class:`RateWatch`
tells when a running transaction's limit moved by more than LimitChangeSignificance (the
TransactionEvent's ChargingRateChanged). Loop thread only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from controller.charging_schedule import ConnectorRating, RateUnit
from controller.csms.calls import Spawn
from controller.csms.profiles import ProfileRules
from controller.csms.smart_charging import SmartCharging
from controller.domain import ChargePointControl
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.profiles import parse_profile
from controller.storage import Storage

ENTRIES = "SmartChargingCtrlr.Entries"


class SmartChargingVariables:
    """:class:`~controller.csms.smart_charging.SmartChargingSettings` from SmartChargingCtrlr
    (and TxCtrlr.EVConnectionTimeOut for how long a remote start's profile waits)."""

    def __init__(self, model: DeviceModel) -> None:
        self._model = model

    def rules(self) -> ProfileRules:
        entries = self._model.definition(ENTRIES)
        assert entries is not None and entries.max_value is not None  # the table's
        return ProfileRules(
            max_stack_level=self._model.get_int("SmartChargingCtrlr.ProfileStackLevel"),
            allowed_units=frozenset(
                RateUnit(u) for u in self._model.get_list("SmartChargingCtrlr.RateUnit")
            ),
            max_periods=self._model.get_int("SmartChargingCtrlr.PeriodsPerSchedule"),
            max_installed=entries.max_value,
            replace_same_level=False,
        )

    @property
    def connection_timeout_s(self) -> float:
        return float(self._model.get_int("TxCtrlr.EVConnectionTimeOut"))

    @property
    def enabled(self) -> bool:
        """SmartChargingCtrlr.Enabled: whether the CSMS may install profiles."""
        return self._model.get_bool("SmartChargingCtrlr.Enabled")

    @property
    def significance(self) -> float:
        """LimitChangeSignificance as a fraction (10 % -> 0.1)."""
        return self._model.get_float("SmartChargingCtrlr.LimitChangeSignificance") / 100.0


def build(
    *,
    model: DeviceModel,
    control: ChargePointControl,
    storage: Storage,
    spawn: Spawn,
    clock: Callable[[], dt.datetime],
    ratings: Mapping[int, ConnectorRating] | None,
) -> SmartCharging:
    """The station's profiles under 2.0.1; SmartChargingCtrlr.Entries counts them."""
    profiles = SmartCharging(
        control=control,
        settings=SmartChargingVariables(model),
        parse=parse_profile,
        storage=storage,
        spawn=spawn,
        clock=clock,
        ratings=ratings,
        transaction_id_of=lambda tx: tx.local_id,
    )
    model.provide(ENTRIES, lambda: str(len(profiles.book)))
    return profiles


class RateWatch:
    """Which connectors' offered current changed significantly since last reported.

    ``changed(connector_id, offered_a)`` is True when ``offered_a`` differs from the value
    last reported for the connector by more than ``significance()`` of it (any change from
    or to 0 A counts); the first value of a transaction is its baseline
    (:meth:`baseline`).
    """

    def __init__(self, significance: Callable[[], float]) -> None:
        self._significance = significance
        self._reported: dict[int, float] = {}

    def baseline(self, connector_id: int, offered_a: float | None) -> None:
        """Start (or end, with None) watching ``connector_id`` from ``offered_a``."""
        if offered_a is None:
            self._reported.pop(connector_id, None)
        else:
            self._reported[connector_id] = offered_a

    def changed(self, connector_id: int, offered_a: float) -> bool:
        before = self._reported.get(connector_id)
        if before is None or before == offered_a:
            return False
        if before == 0.0 or offered_a == 0.0:
            moved = True
        else:
            moved = abs(offered_a - before) / before > self._significance()
        if moved:
            self._reported[connector_id] = offered_a
        return moved
