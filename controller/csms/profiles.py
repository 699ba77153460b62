"""Charging profiles as installed, whatever version brought them, and the book of them.

A version adapter parses what its CSMS sends into an :class:`InstalledProfile` whose
schedule is a :class:`~controller.charging_schedule.Schedule` (1.6:
:func:`controller.ocpp16.profiles.parse_profile`), or raises :class:`ProfileRejected`
saying why, checking the :class:`ProfileRules` the configuration allows.

:class:`ProfileBook` keeps the installed profiles and arranges them into the layers whose
minimum is a connector's limit (1.6 section 3.13): ChargePointMaxProfile, and "the
transaction's TxProfile, else a TxDefaultProfile", each layer won by its highest stack level
among the profiles in force. A connector's own TxDefaultProfile beats connector 0's at the
same stack level. A TxProfile belongs to one transaction (``transaction_key``, our local id);
one that a RemoteStartTransaction brought waits unbound for its transaction and limits its
connector only while no other transaction runs there.

Pure (no I/O, no clock); loop thread only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from controller.charging_schedule import Layer, Ranked, RateUnit, Schedule


class Purpose(StrEnum):
    """What a profile limits. Spelled as 1.6 does (its log lines and answers use the value);
    2.0.1's ChargingStationMaxProfile maps onto :attr:`CHARGE_POINT_MAX`."""

    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


@dataclass(frozen=True, slots=True)
class ProfileRules:
    """What the SmartCharging configuration keys allow a new profile."""

    max_stack_level: int  # ChargeProfileMaxStackLevel
    allowed_units: frozenset[RateUnit]  # ChargingScheduleAllowedChargingRateUnit
    max_periods: int  # ChargingScheduleMaxPeriods
    max_installed: int  # MaxChargingProfilesInstalled


class ProfileRejected(Exception):
    """A profile this charger does not install; the message is the reason (for the log)."""


@dataclass(frozen=True, slots=True)
class InstalledProfile:
    """One installed charging profile.

    ``key`` identifies this installation (a replacement with the same id gets a new key).
    ``connector_id`` is None only for a RemoteStartTransaction's TxProfile on a charger with
    several connectors, until its transaction starts somewhere. ``transaction_key`` is the
    local id of the transaction a TxProfile belongs to (None: waiting for it); ``id_tag`` the
    remote start's idTag it waits for. ``body`` is the profile as received (stored, and
    parsed again after a restart); ``csms_transaction_id`` the transaction a TxProfile
    names, if it names one.
    """

    key: str
    profile_id: int
    connector_id: int | None
    purpose: Purpose
    stack_level: int
    schedule: Schedule
    body: Mapping[str, Any]
    installed_at: dt.datetime
    transaction_key: str | None = None
    id_tag: str | None = None
    csms_transaction_id: int | None = None


class ParseProfile(Protocol):
    """A version's parser: ``body`` for ``connector_id`` (None: the remote start's, not yet
    known) installed at ``installed_at``; ``rules`` None skips the configuration's rules (a
    profile loaded after a restart was accepted under the rules of its day). Raises
    :class:`ProfileRejected`."""

    def __call__(
        self,
        body: Mapping[str, Any],
        connector_id: int | None,
        installed_at: dt.datetime,
        rules: ProfileRules | None,
        *,
        key: str,
    ) -> InstalledProfile: ...


class ProfileBook:
    """The installed profiles; replacement, clearing and the layers of a connector."""

    def __init__(self) -> None:
        self._profiles: list[InstalledProfile] = []

    def __len__(self) -> int:
        return len(self._profiles)

    def __iter__(self) -> Iterator[InstalledProfile]:
        return iter(list(self._profiles))

    def replaced_by(self, new: InstalledProfile) -> list[InstalledProfile]:
        """The profiles ``new`` replaces: its id, or its connector, purpose and stack level."""
        return [
            p
            for p in self._profiles
            if p.profile_id == new.profile_id
            or (p.connector_id, p.purpose, p.stack_level)
            == (new.connector_id, new.purpose, new.stack_level)
        ]

    def put(self, new: InstalledProfile) -> None:
        """Install ``new`` in place of what it replaces."""
        gone = {p.key for p in self.replaced_by(new)}
        self._profiles = [p for p in self._profiles if p.key not in gone]
        self._profiles.append(new)

    def matching(
        self,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> list[InstalledProfile]:
        """ClearChargingProfile's choice: by id alone when given, else every given criterion
        (connector 0 means the profiles installed on connector 0)."""
        if profile_id is not None:
            return [p for p in self._profiles if p.profile_id == profile_id]
        return [
            p
            for p in self._profiles
            if (connector_id is None or p.connector_id == connector_id)
            and (purpose is None or p.purpose == purpose)
            and (stack_level is None or p.stack_level == stack_level)
        ]

    def remove(self, keys: Collection[str]) -> None:
        self._profiles = [p for p in self._profiles if p.key not in keys]

    def bind(self, key: str, connector_id: int, transaction_key: str) -> InstalledProfile | None:
        """Give a waiting TxProfile its transaction; the updated profile (None: gone)."""
        for index, profile in enumerate(self._profiles):
            if profile.key == key:
                bound = dataclasses.replace(
                    profile, connector_id=connector_id, transaction_key=transaction_key
                )
                self._profiles[index] = bound
                return bound
        return None

    def layers(self, connector_id: int, transaction_key: str | None) -> list[Layer]:
        """The layers limiting ``connector_id`` (0: the charge point) while the transaction
        ``transaction_key`` (None: none) runs there."""
        cp_max = [
            Ranked((p.stack_level,), p.schedule)
            for p in self._profiles
            if p.purpose is Purpose.CHARGE_POINT_MAX
        ]
        if connector_id == 0:
            return [cp_max]
        tx: list[Ranked] = []
        for p in self._profiles:
            if p.purpose is Purpose.TX:
                if p.connector_id == connector_id and p.transaction_key == transaction_key:
                    tx.append(Ranked((1, p.stack_level, 1), p.schedule))
            elif p.purpose is Purpose.TX_DEFAULT and p.connector_id in (0, connector_id):
                own = 1 if p.connector_id == connector_id else 0
                tx.append(Ranked((0, p.stack_level, own), p.schedule))
        return [cp_max, tx]
