"""What the version-neutral services and the supervisor read from the 2.0.1 device model.

:class:`AuthVariables` is :class:`~controller.csms.auth.AuthSettings` over AuthCtrlr,
AuthCacheCtrlr and LocalAuthListCtrlr (the list holds Entries' maxLimit, one
SendLocalList carries ItemsPerMessage); :class:`ReservationVariables` is
:class:`~controller.csms.reservations.ReservationSettings` over ReservationCtrlr;
:func:`csms_settings` the session settings of TxCtrlr.
"""

from __future__ import annotations

from controller.domain import CsmsSettings
from controller.ocpp201.device_model import DeviceModel

#: The variables :func:`csms_settings` reads.
SETTING_VARIABLES = frozenset({"TxCtrlr.StopTxOnEVSideDisconnect", "TxCtrlr.EVConnectionTimeOut"})


def csms_settings(model: DeviceModel) -> CsmsSettings:
    return CsmsSettings(
        stop_on_ev_disconnect=model.get_bool("TxCtrlr.StopTxOnEVSideDisconnect"),
        connection_timeout_s=float(model.get_int("TxCtrlr.EVConnectionTimeOut")),
    )


class AuthVariables:
    """AuthCtrlr/AuthCacheCtrlr read at each decision (a SetVariables applies at once)."""

    def __init__(self, model: DeviceModel) -> None:
        self._model = model

    @property
    def cache_enabled(self) -> bool:
        return self._model.get_bool("AuthCacheCtrlr.Enabled")

    @property
    def local_pre_authorize(self) -> bool:
        return self._model.get_bool("AuthCtrlr.LocalPreAuthorize")

    @property
    def local_authorize_offline(self) -> bool:
        return self._model.get_bool("AuthCtrlr.LocalAuthorizeOffline")

    @property
    def allow_offline_unknown(self) -> bool:
        return self._model.get_bool("AuthCtrlr.OfflineTxForUnknownIdEnabled")

    @property
    def local_list_enabled(self) -> bool:
        return self._model.get_bool("LocalAuthListCtrlr.Enabled")

    @property
    def local_list_max(self) -> int:
        entries = self._model.definition("LocalAuthListCtrlr.Entries")
        assert entries is not None and entries.max_value is not None  # the table says so
        return entries.max_value

    @property
    def local_list_update_max(self) -> int:
        return self._model.get_int("LocalAuthListCtrlr.ItemsPerMessage")

    @property
    def cache_lifetime_s(self) -> int:
        """AuthCacheCtrlr.LifeTime: how long an entry stays valid after it was stored."""
        return self._model.get_int("AuthCacheCtrlr.LifeTime")


class ReservationVariables:
    """ReservationCtrlr read at each ReserveNow."""

    def __init__(self, model: DeviceModel) -> None:
        self._model = model

    @property
    def reservations_supported(self) -> bool:
        return self._model.get_bool("ReservationCtrlr.Enabled")

    @property
    def reserve_any_connector(self) -> bool:
        return self._model.get_bool("ReservationCtrlr.NonEvseSpecific")
