"""The small part of 1.6 smart charging this adapter serves until issue 4: constant limits.

A TxDefaultProfile or TxProfile in amperes with a single period starting at 0 (no duration,
no validity window, not recurring) is a constant current limit; anything else is Rejected.
Installed profiles are kept per connector and purpose with their stack levels, so that
ClearChargingProfile can remove them and the effective limit falls back as 1.6 says: the
transaction's TxProfile over the connector's TxDefaultProfile over connector 0's. A TxProfile
ends with its transaction. Loop thread only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ocpp.v16.enums import ChargingProfilePurposeType as Purpose

from controller.ocpp16.wire import parse_iso


@dataclass(frozen=True, slots=True)
class ConstantProfile:
    profile_id: int
    connector_id: int
    purpose: Purpose
    stack_level: int
    limit_a: float


class Unsupported(Exception):
    """The profile is valid OCPP but more than a constant limit (issue 4)."""


def parse_profile(
    connector_id: int, profile: Mapping[str, Any], now: dt.datetime
) -> ConstantProfile:
    """A csChargingProfiles / chargingProfile (library snake_case) as a constant limit.

    Raises :class:`Unsupported` naming what this adapter cannot serve yet.
    """
    purpose = Purpose(profile["charging_profile_purpose"])
    if purpose is Purpose.charge_point_max_profile:
        raise Unsupported("ChargePointMaxProfile")
    if profile["charging_profile_kind"] == "Recurring":
        raise Unsupported("recurring profiles")
    for key in ("valid_from", "valid_to"):
        if profile.get(key) is not None:
            raise Unsupported(f"{key}")
    schedule = profile["charging_schedule"]
    if schedule["charging_rate_unit"] != "A":
        raise Unsupported("limits in W")
    if schedule.get("duration") is not None:
        raise Unsupported("a schedule duration")
    start = schedule.get("start_schedule")
    if start is not None and parse_iso(str(start)) > now:
        raise Unsupported("a schedule starting in the future")
    periods = schedule["charging_schedule_period"]
    if len(periods) != 1 or int(periods[0]["start_period"]) != 0:
        raise Unsupported("more than one period")
    limit = float(periods[0]["limit"])
    if limit < 0:
        raise Unsupported("a negative limit")
    return ConstantProfile(
        int(profile["charging_profile_id"]),
        connector_id,
        purpose,
        int(profile["stack_level"]),
        limit,
    )


class ProfileBook:
    """Installed constant profiles and the limit they give each connector."""

    def __init__(self) -> None:
        self._profiles: list[ConstantProfile] = []

    def install(self, profile: ConstantProfile) -> None:
        """Add ``profile``, replacing one with its id or its connector, purpose and level."""
        self._profiles = [
            p
            for p in self._profiles
            if p.profile_id != profile.profile_id
            and (p.connector_id, p.purpose, p.stack_level)
            != (profile.connector_id, profile.purpose, profile.stack_level)
        ]
        self._profiles.append(profile)

    def clear(
        self,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> bool:
        """ClearChargingProfile: remove what matches every given criterion; False for none."""

        def matches(p: ConstantProfile) -> bool:
            if profile_id is not None:
                return p.profile_id == profile_id
            return (
                (connector_id is None or p.connector_id == connector_id)
                and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        kept = [p for p in self._profiles if not matches(p)]
        removed = len(kept) != len(self._profiles)
        self._profiles = kept
        return removed

    def end_transaction(self, connector_id: int) -> bool:
        """The transaction on ``connector_id`` ended: its TxProfiles go. True if any went."""
        return self.clear(connector_id=connector_id, purpose=Purpose.tx_profile)

    def _top(self, connector_id: int, purpose: Purpose) -> ConstantProfile | None:
        found = [
            p for p in self._profiles if (p.connector_id, p.purpose) == (connector_id, purpose)
        ]
        return max(found, key=lambda p: p.stack_level, default=None)

    def limit_a(self, connector_id: int) -> float | None:
        """The effective limit of ``connector_id`` (None: no profile limits it)."""
        for owner, purpose in (
            (connector_id, Purpose.tx_profile),
            (connector_id, Purpose.tx_default_profile),
            (0, Purpose.tx_default_profile),
        ):
            top = self._top(owner, purpose)
            if top is not None:
                return top.limit_a
        return None

    def limits(self, connector_ids: Iterable[int]) -> dict[int, float | None]:
        return {c: self.limit_a(c) for c in connector_ids}
