"""Current-limit sources: several parties may cap what a connector offers, each on its own.

The CSMS's smart charging, local load management (fuse, circuits, solar), a user's limit
from the web page, API or MQTT, and thermal derating each set or clear their own limit;
none overwrites another's. What the car is offered is the minimum of the fixed bounds (the
connector's configured maximum, the cable's PP rating) and every source that is set
(design.md, "State machines"), and below 6 A nothing at all: IEC 61851 has no duty for
less, so the PWM goes off and the car is paused (SuspendedEVSE).

Everything here is pure and immutable: :class:`CurrentLimits` is held by the connector
state machine and replaced, never mutated, so a snapshot of it can be handed to any
listener. Currents are in amperes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

#: IEC 61851-1: no PWM duty encodes less than 6 A; a lower offer means "nothing" (100 % duty).
MIN_OFFER_A = 6.0


class LimitSource(StrEnum):
    """Who set a limit. Each source is set and cleared independently of the others.

    ``THERMAL`` is reserved for derating on temperature: today the supervisor does not
    derate, it raises an overtemperature fault (which opens the contactor) and clears it
    with hysteresis, so nothing in the tree sets this source yet.
    """

    CSMS = "csms"  # the composite OCPP charging profile (ChargePointMax, TxDefault, Tx)
    LOAD_MANAGEMENT = "load_management"  # fuse, circuits
    MODE = "mode"  # the charging mode: solar surplus, min+solar, schedule (fast sets none)
    USER = "user"  # the owner's limit from the web page, the API or MQTT
    THERMAL = "thermal"  # derating on temperature
    #: 0 A while a 1/3-phase switch is under way (controller.energy.phase_switch): the PWM
    #: pauses and the main contactor stays open until the phase contactor has moved.
    PHASE_SWITCH = "phase_switch"


class FixedBound(StrEnum):
    """The bounds that are not sources: they always apply and cannot be cleared."""

    CONNECTOR = "connector"  # ConnectorSettings.max_current_a: wiring, contactor, config
    CABLE = "cable"  # the plugged cable's PP rating (none read yet on a socket: 0 A)


def check_limit(current_a: float | None) -> None:
    """Raise ValueError unless ``current_a`` is None (cleared) or a finite current >= 0 A."""
    if current_a is None:
        return
    if not math.isfinite(current_a) or current_a < 0:
        raise ValueError(f"a current limit must be a finite current >= 0 A, got {current_a!r}")


def _in_order(item: tuple[LimitSource, float]) -> int:
    return _ORDER[item[0]]


_ORDER = {source: i for i, source in enumerate(LimitSource)}


@dataclass(frozen=True, slots=True)
class CurrentLimits:
    """The limits set by each source (absent = not set). Immutable: :meth:`with_limit`
    returns a new value, so setting one source can never touch another's."""

    _by_source: tuple[tuple[LimitSource, float], ...] = ()

    def with_limit(self, source: LimitSource, current_a: float | None) -> CurrentLimits:
        """These limits with ``source`` set to ``current_a``, or cleared when None."""
        check_limit(current_a)
        kept = tuple((s, a) for s, a in self._by_source if s is not source)
        if current_a is None:
            return CurrentLimits(kept)
        return CurrentLimits(tuple(sorted((*kept, (source, float(current_a))), key=_in_order)))

    @property
    def active(self) -> Mapping[LimitSource, float]:
        """Every source that is set, with its limit in A (read-only)."""
        return MappingProxyType(dict(self._by_source))

    def get(self, source: LimitSource) -> float | None:
        """The limit ``source`` set, None when it has none."""
        return self.active.get(source)

    @property
    def limit_a(self) -> float | None:
        """The lowest limit of all sources that are set, None when none is."""
        return min((a for _, a in self._by_source), default=None)

    def lowest_except(self, source: LimitSource) -> float | None:
        """The lowest limit of every source but ``source``, None when no other is set.

        GetCompositeSchedule reports the CSMS's own schedule capped by the others (the local
        limits: load management, the user, thermal derating)."""
        return min((a for s, a in self._by_source if s is not source), default=None)

    @property
    def binding(self) -> tuple[LimitSource, ...]:
        """The sources whose limit is the lowest (several when they tie), in enum order."""
        lowest = self.limit_a
        return tuple(s for s, a in self._by_source if a == lowest)


@dataclass(frozen=True, slots=True)
class Offer:
    """What a connector may offer and why.

    ``limit_a``: the minimum of every bound and source (may be below 6 A).
    ``current_a``: what the PWM offers: ``limit_a``, or 0 when that is below 6 A.
    ``limited_by``: the bounds and sources at that minimum ("Limited by ..."), the fixed
    bounds first.
    """

    limit_a: float
    current_a: float
    limited_by: tuple[FixedBound | LimitSource, ...]


def compute_offer(
    max_current_a: float,
    cable_rating_a: float | None,
    cable_rating_required: bool,
    limits: CurrentLimits,
) -> Offer:
    """The offer for these bounds and sources: min of all of them, 0 below 6 A.

    An unknown cable rating limits nothing on a tethered cable and everything on a socket
    (``cable_rating_required``): a 13 A cable must never see a 32 A offer.
    """
    cable = math.inf if cable_rating_a is None else cable_rating_a
    if cable_rating_a is None and cable_rating_required:
        cable = 0.0
    bounds: list[tuple[FixedBound | LimitSource, float]] = [
        (FixedBound.CONNECTOR, max_current_a),
        (FixedBound.CABLE, cable),
        *limits.active.items(),
    ]
    lowest = min(a for _, a in bounds)
    limited_by = tuple(name for name, a in bounds if a == lowest)
    return Offer(lowest, lowest if lowest >= MIN_OFFER_A else 0.0, limited_by)
