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
    """Whether a connector's offered current moved significantly since last reported.

    :meth:`changed` is True when the offer differs from the one last reported for the
    connector (at first: the first one seen) by more than ``significance()`` of it. An offer
    of 0 A (paused) is left to the ChargingStateChanged of SuspendedEVSE and never counts.
    :meth:`forget` starts a connector afresh (a transaction began or ended there).
    """

    def __init__(self, significance: Callable[[], float]) -> None:
        self._significance = significance
        self._reported: dict[int, float] = {}

    def forget(self, connector_id: int) -> None:
        self._reported.pop(connector_id, None)

    def changed(self, connector_id: int, offered_a: float) -> bool:
        if offered_a <= 0.0:
            return False
        before = self._reported.setdefault(connector_id, offered_a)
        if abs(offered_a - before) <= self._significance() * before:
            return False
        self._reported[connector_id] = offered_a
        return True
