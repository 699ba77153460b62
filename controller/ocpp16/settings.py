"""The 1.6 keys the supervisor needs, as the version-neutral :class:`CsmsSettings`."""

from __future__ import annotations

from controller.domain import CsmsSettings
from controller.ocpp16.keys import OcppConfig

#: The feature profile that brings ReserveNow and CancelReservation.
RESERVATION_PROFILE = "Reservation"
#: The keys :func:`csms_settings` reads (casefolded: 1.6 keys compare case-insensitively).
SETTING_KEYS = frozenset(
    key.casefold() for key in ("StopTransactionOnEVSideDisconnect", "ConnectionTimeOut")
)


def csms_settings(config: OcppConfig) -> CsmsSettings:
    """The session settings as the key table holds them now (ConnectionTimeOut is >= 1)."""
    return CsmsSettings(
        stop_on_ev_disconnect=config.get_bool("StopTransactionOnEVSideDisconnect"),
        connection_timeout_s=float(config.get_int("ConnectionTimeOut")),
    )


class AuthKeys:
    """:class:`~controller.csms.auth.AuthSettings` read from the 1.6 keys at each decision."""

    def __init__(self, config: OcppConfig) -> None:
        self._config = config

    @property
    def cache_enabled(self) -> bool:
        return self._config.get_bool("AuthorizationCacheEnabled")

    @property
    def local_pre_authorize(self) -> bool:
        return self._config.get_bool("LocalPreAuthorize")

    @property
    def local_authorize_offline(self) -> bool:
        return self._config.get_bool("LocalAuthorizeOffline")

    @property
    def allow_offline_unknown(self) -> bool:
        return self._config.get_bool("AllowOfflineTxForUnknownId")

    @property
    def local_list_enabled(self) -> bool:
        # None: the charger is built without the LocalAuthListManagement profile
        return self._config.get("LocalAuthListEnabled") == "true"

    @property
    def local_list_max(self) -> int:
        return self._limit("LocalAuthListMaxLength")

    @property
    def local_list_update_max(self) -> int:
        return self._limit("SendLocalListMaxLength")

    def _limit(self, key: str) -> int:
        value = self._config.get(key)
        return int(value) if value is not None else 0


class ReservationKeys:
    """:class:`~controller.csms.reservations.ReservationSettings` from the 1.6 keys."""

    def __init__(self, config: OcppConfig) -> None:
        self._config = config

    @property
    def reservations_supported(self) -> bool:
        return RESERVATION_PROFILE in self._config.table.ctx.profiles

    @property
    def reserve_any_connector(self) -> bool:
        return self._config.get("ReserveConnectorZeroSupported") == "true"
