"""OCPP 1.6 charging profiles: checking what a CSMS sends, and the book of installed ones.

:func:`parse_profile` turns a ``csChargingProfiles`` / ``chargingProfile`` (as the ocpp
library hands it over, snake_case) into an :class:`InstalledProfile` whose schedule is a
:class:`~controller.charging_schedule.Schedule`, or raises :class:`ProfileRejected` saying
why: the 1.6 rules (ChargePointMaxProfile on connector 0 only, TxProfile never there,
transactionId only on a TxProfile) and the SmartCharging keys (:class:`ProfileRules`).
minChargingRate is ignored (we cannot promise a minimum to the EV). An Absolute schedule
without startSchedule starts when it was installed; a Recurring one needs a startSchedule.

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
from decimal import Decimal
from typing import Any

from ocpp.v16.enums import ChargingProfilePurposeType as Purpose

from controller.charging_schedule import (
    Layer,
    Ranked,
    RateUnit,
    Recurrency,
    Schedule,
    ScheduleError,
    ScheduleKind,
    SchedulePeriod,
)
from controller.csms.wire import parse_iso


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
    remote start's idTag it waits for. ``body`` is the profile as received.
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


def plain(value: Any) -> Any:
    """``value`` with Decimals as floats: the library parses numbers of schemas with
    ``multipleOf`` (limits) as Decimal, which neither JSON nor our math wants."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


def _when(value: object) -> dt.datetime | None:
    return None if value is None else parse_iso(str(value))


def _schedule(body: Mapping[str, Any], installed_at: dt.datetime) -> Schedule:
    kind = ScheduleKind(body["charging_profile_kind"])
    raw = body["charging_schedule"]
    start = _when(raw.get("start_schedule"))
    if kind is ScheduleKind.ABSOLUTE and start is None:
        start = installed_at
    duration = raw.get("duration")
    return Schedule(
        kind=kind,
        unit=RateUnit(raw["charging_rate_unit"]),
        periods=tuple(
            SchedulePeriod(
                int(period["start_period"]),
                float(period["limit"]),
                None if period.get("number_phases") is None else int(period["number_phases"]),
            )
            for period in raw["charging_schedule_period"]
        ),
        start=start,
        duration_s=None if duration is None else int(duration),
        recurrency=(
            Recurrency(body["recurrency_kind"])
            if kind is ScheduleKind.RECURRING and body.get("recurrency_kind") is not None
            else None
        ),
        valid_from=_when(body.get("valid_from")),
        valid_to=_when(body.get("valid_to")),
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
    try:
        purpose = Purpose(body["charging_profile_purpose"])
        schedule = _schedule(body, installed_at)
        profile_id = int(body["charging_profile_id"])
        stack_level = int(body["stack_level"])
    except ScheduleError as exc:
        raise ProfileRejected(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileRejected(f"malformed profile ({type(exc).__name__}: {exc})") from exc
    if purpose is Purpose.charge_point_max_profile and connector_id != 0:
        raise ProfileRejected("a ChargePointMaxProfile belongs on connector 0")
    if purpose is Purpose.tx_profile and connector_id == 0:
        raise ProfileRejected("a TxProfile belongs on the connector of its transaction")
    if purpose is not Purpose.tx_profile and body.get("transaction_id") is not None:
        raise ProfileRejected(f"a transactionId on a {purpose}")
    if stack_level < 0:
        raise ProfileRejected(f"stack level {stack_level} is negative")
    if rules is not None:
        if stack_level > rules.max_stack_level:
            raise ProfileRejected(
                f"stack level {stack_level} is above ChargeProfileMaxStackLevel "
                f"{rules.max_stack_level}"
            )
        if schedule.unit not in rules.allowed_units:
            raise ProfileRejected(
                f"limits in {schedule.unit} are not in ChargingScheduleAllowedChargingRateUnit"
            )
        if len(schedule.periods) > rules.max_periods:
            raise ProfileRejected(
                f"{len(schedule.periods)} periods, ChargingScheduleMaxPeriods is "
                f"{rules.max_periods}"
            )
        if schedule.valid_to is not None and schedule.valid_to <= installed_at:
            raise ProfileRejected("validTo has passed")
    return InstalledProfile(
        key=key,
        profile_id=profile_id,
        connector_id=connector_id,
        purpose=purpose,
        stack_level=stack_level,
        schedule=schedule,
        body=body,
        installed_at=installed_at,
    )


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
            if p.purpose is Purpose.charge_point_max_profile
        ]
        if connector_id == 0:
            return [cp_max]
        tx: list[Ranked] = []
        for p in self._profiles:
            if p.purpose is Purpose.tx_profile:
                if p.connector_id == connector_id and p.transaction_key == transaction_key:
                    tx.append(Ranked((1, p.stack_level, 1), p.schedule))
            elif p.purpose is Purpose.tx_default_profile and p.connector_id in (0, connector_id):
                own = 1 if p.connector_id == connector_id else 0
                tx.append(Ranked((0, p.stack_level, own), p.schedule))
        return [cp_max, tx]
