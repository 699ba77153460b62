"""The 1.6 keys the supervisor needs, as the version-neutral :class:`CsmsSettings`."""

from __future__ import annotations

from controller.domain import CsmsSettings
from controller.ocpp16.keys import OcppConfig

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
