"""OCPP 1.6 charging profiles: checking what a CSMS sends.

:func:`parse_profile` turns a ``csChargingProfiles`` / ``chargingProfile`` (as the ocpp
library hands it over, snake_case) into an :class:`~controller.csms.profiles.InstalledProfile`
whose schedule is a :class:`~controller.charging_schedule.Schedule`, or raises
:class:`~controller.csms.profiles.ProfileRejected` saying why: the 1.6 rules
(ChargePointMaxProfile on connector 0 only, TxProfile never there, transactionId only on a
TxProfile) and the SmartCharging keys (:class:`~controller.csms.profiles.ProfileRules`).
minChargingRate is ignored (we cannot promise a minimum to the EV). An Absolute schedule
without startSchedule starts when it was installed; a Recurring one needs a startSchedule.
Pure (no I/O, no clock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from controller.csms.profiles import (
    InstalledProfile,
    ProfileRejected,
    ProfileRules,
    Purpose,
    checked_profile,
    malformed_rejected,
    plain,
    read_schedule,
)


def parse_profile(
    body: Mapping[str, Any],
    connector_id: int | None,
    installed_at: dt.datetime,
    rules: ProfileRules | None,
    *,
    key: str,
) -> InstalledProfile:
    """``body`` for ``connector_id`` as an :class:`InstalledProfile`.

    ``rules`` None skips the configuration keys (a profile loaded after a restart was
    accepted under the rules of its day). Raises :class:`ProfileRejected`.
    """
    body = plain(body)
    with malformed_rejected():
        purpose = Purpose(body["charging_profile_purpose"])
        schedule = read_schedule(body, body["charging_schedule"], installed_at)
        profile_id = int(body["charging_profile_id"])
        stack_level = int(body["stack_level"])
    if purpose is Purpose.CHARGE_POINT_MAX and connector_id != 0:
        raise ProfileRejected("a ChargePointMaxProfile belongs on connector 0")
    if purpose is Purpose.TX and connector_id == 0:
        raise ProfileRejected("a TxProfile belongs on the connector of its transaction")
    if purpose is not Purpose.TX and body.get("transaction_id") is not None:
        raise ProfileRejected(f"a transactionId on a {purpose}")
    transaction_id = body.get("transaction_id")
    return checked_profile(
        InstalledProfile(
            key,
            profile_id,
            connector_id,
            purpose,
            stack_level,
            schedule,
            body,
            installed_at,
            csms_transaction_id=None if transaction_id is None else int(transaction_id),
        ),
        rules,
    )
