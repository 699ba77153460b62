"""Charging profiles as installed, whatever version brought them, and the book of them.

A version adapter parses what its CSMS sends into an :class:`InstalledProfile` whose
schedule is a :class:`~controller.charging_schedule.Schedule` (1.6:
:func:`controller.ocpp16.profiles.parse_profile`, 2.0.1:
:func:`controller.ocpp201.profiles.parse_profile`), or raises :class:`ProfileRejected`
saying why, checking the :class:`ProfileRules` the configuration allows. What both versions
spell alike lives here: :func:`plain`, :func:`read_schedule` (a schedule as the library
hands it over, snake_case), :func:`malformed_rejected` and :func:`checked_profile` (the
configuration's rules, then the profile).

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
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

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
    #: 1.6 replaces a profile of the same connector, purpose and stack level (section
    #: 3.13.2); 2.0.1 replaces only the same id and rejects such a clash (K01.FR.05/06).
    replace_same_level: bool = True


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
    csms_transaction_id: int | str | None = None


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

    def replaced_by(self, new: InstalledProfile, same_level: bool = True) -> list[InstalledProfile]:
        """The profiles ``new`` replaces: its id, or (``same_level``) its connector, purpose
        and stack level."""
        return [
            p
            for p in self._profiles
            if p.profile_id == new.profile_id or (same_level and _same_level(p, new))
        ]

    def clashing(self, new: InstalledProfile) -> list[InstalledProfile]:
        """Profiles of another id at ``new``'s connector, purpose and stack level (for a
        TxProfile: of its transaction) whose validity overlaps ``new``'s: 2.0.1 refuses
        ``new`` then (K01.FR.06, K01.FR.39)."""
        return [
            p
            for p in self._profiles
            if p.profile_id != new.profile_id
            and _same_level(p, new)
            and (p.purpose is not Purpose.TX or p.transaction_key == new.transaction_key)
            and _overlap(p.schedule, new.schedule)
        ]

    def put(self, new: InstalledProfile, same_level: bool = True) -> None:
        """Install ``new`` in place of what it replaces."""
        gone = {p.key for p in self.replaced_by(new, same_level)}
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


def _same_level(a: InstalledProfile, b: InstalledProfile) -> bool:
    return (a.connector_id, a.purpose, a.stack_level) == (b.connector_id, b.purpose, b.stack_level)


def _overlap(a: Schedule, b: Schedule) -> bool:
    """Whether the validity windows of ``a`` and ``b`` share an instant (None: unbounded)."""
    starts_before_b_ends = a.valid_from is None or b.valid_to is None or a.valid_from < b.valid_to
    starts_before_a_ends = b.valid_from is None or a.valid_to is None or b.valid_from < a.valid_to
    return starts_before_b_ends and starts_before_a_ends


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


def read_schedule(
    body: Mapping[str, Any], raw: Mapping[str, Any], default_start: dt.datetime | None
) -> Schedule:
    """The :class:`Schedule` of a profile ``body`` whose chargingSchedule is ``raw`` (both
    versions spell its fields alike); an Absolute one without startSchedule starts at
    ``default_start`` (1.6: its installation; 2.0.1 requires one: None). Raises
    :class:`~controller.charging_schedule.ScheduleError`, KeyError, TypeError, ValueError."""
    kind = ScheduleKind(body["charging_profile_kind"])
    start = _when(raw.get("start_schedule"))
    if kind is ScheduleKind.ABSOLUTE and start is None:
        start = default_start
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


@contextmanager
def malformed_rejected() -> Iterator[None]:
    """Reading a profile's fields: a schedule that cannot be followed or a missing or
    mistyped field becomes :class:`ProfileRejected` saying so."""
    try:
        yield
    except ScheduleError as exc:
        raise ProfileRejected(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileRejected(f"malformed profile ({type(exc).__name__}: {exc})") from exc


def checked_profile(profile: InstalledProfile, rules: ProfileRules | None) -> InstalledProfile:
    """``profile`` once it keeps the configuration's ``rules`` (None: loaded after a
    restart, not checked again); else :class:`ProfileRejected`."""
    _check_rules(profile.schedule, profile.stack_level, rules, profile.installed_at)
    return profile


def _check_rules(
    schedule: Schedule, stack_level: int, rules: ProfileRules | None, installed_at: dt.datetime
) -> None:
    if stack_level < 0:
        raise ProfileRejected(f"stack level {stack_level} is negative")
    if rules is None:
        return
    if stack_level > rules.max_stack_level:
        raise ProfileRejected(
            f"stack level {stack_level} is above the maximum stack level {rules.max_stack_level}"
        )
    if schedule.unit not in rules.allowed_units:
        raise ProfileRejected(f"limits in {schedule.unit} are not among the allowed rate units")
    if len(schedule.periods) > rules.max_periods:
        raise ProfileRejected(
            f"{len(schedule.periods)} periods, at most {rules.max_periods} per schedule"
        )
    if schedule.valid_to is not None and schedule.valid_to <= installed_at:
        raise ProfileRejected("validTo has passed")
