"""What the version-neutral services and the supervisor read from the 2.0.1 device model.

:class:`AuthVariables` is :class:`~controller.csms.auth.AuthSettings` over AuthCtrlr and
AuthCacheCtrlr (the local list, LocalAuthListCtrlr, is not in this slice: disabled);
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
        return False  # LocalAuthListCtrlr is not in this slice

    @property
    def local_list_max(self) -> int:
        return 0

    @property
    def local_list_update_max(self) -> int:
        return 0
