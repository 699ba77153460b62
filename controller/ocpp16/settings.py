"""The 1.6 keys, read as the version-neutral settings the core and the services take.

:func:`csms_settings` gives the supervisor its :class:`~controller.domain.CsmsSettings`; the
``*Keys`` classes implement the settings protocols of :mod:`controller.csms` (authorization,
reservations, smart charging, certificates) by reading the key table at each use, so a
ChangeConfiguration applies at once.
"""

from __future__ import annotations

from controller.charging_schedule import RateUnit
from controller.csms.profiles import ProfileRules
from controller.csms.security import SecurityKeyNames
from controller.domain import CsmsSettings
from controller.ocpp16.keys import OcppConfig

#: Configuration keys whose values never leave the charger (diagnostics and logs redact them).
SECRET_KEYS = ("AuthorizationKey",)
#: The 1.6 security whitepaper's keys of the link's security profile and Basic-auth password.
SECURITY_KEYS = SecurityKeyNames(profile="SecurityProfile", password="AuthorizationKey")
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


#: Fallbacks when the configuration lacks the SmartCharging keys (built without the profile).
DEFAULT_RULES = ProfileRules(
    max_stack_level=8,
    allowed_units=frozenset(RateUnit),
    max_periods=48,
    max_installed=16,
)
_UNIT_NAMES = {"current": RateUnit.AMPS, "power": RateUnit.WATTS}


class SmartChargingKeys:
    """:class:`~controller.csms.smart_charging.SmartChargingSettings` from the 1.6 keys."""

    def __init__(self, config: OcppConfig) -> None:
        self._config = config

    def rules(self) -> ProfileRules:
        def number(key: str, default: int) -> int:
            value = self._config.get(key)
            return default if value is None else int(value)

        units = self._config.get("ChargingScheduleAllowedChargingRateUnit")
        return ProfileRules(
            max_stack_level=number("ChargeProfileMaxStackLevel", DEFAULT_RULES.max_stack_level),
            allowed_units=(
                DEFAULT_RULES.allowed_units
                if units is None
                else frozenset(_UNIT_NAMES[u.lower()] for u in units.split(",") if u)
            ),
            max_periods=number("ChargingScheduleMaxPeriods", DEFAULT_RULES.max_periods),
            max_installed=number("MaxChargingProfilesInstalled", DEFAULT_RULES.max_installed),
        )

    @property
    def connection_timeout_s(self) -> float:
        return float(self._config.get_int("ConnectionTimeOut"))


class CertificateKeys:
    """:class:`~controller.csms.certificates.CertificateSettings` from the 1.6 keys."""

    def __init__(self, config: OcppConfig) -> None:
        self._config = config

    @property
    def additional_root_check(self) -> bool:
        return self._config.get_bool("AdditionalRootCertificateCheck")

    @property
    def store_max(self) -> int:
        return self._config.get_int("CertificateStoreMaxLength")

    @property
    def organization(self) -> str:
        return self._config.get("CpoName") or ""

    @property
    def signed_chain_max_bytes(self) -> int:
        return self._config.get_int("CertificateSignedMaxChainSize")
