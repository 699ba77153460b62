"""Main fuse protection per phase: what each connector may draw after the house's other load.

Pure and thread-agnostic: no I/O, no clock (the caller passes ``now``). Currents in amperes,
per grid phase L1, L2, L3 (index 0, 1, 2); grid currents are signed, import positive.

The house's other load on a phase is the grid current minus what our chargers draw on it.
The headroom on a phase is the fuse less the margin less that other load; it is shared
equally by the connectors whose cars draw on the phase, and a connector gets the smallest
share among its phases: a one-phase car on L2 is limited by L2 alone, a three-phase car by
the fullest phase. Given the readings, no phase can then exceed ``fuse_a - margin_a`` from
our chargers' doing (``tests/test_energy_fuse.py`` checks it as a property).

A charger's current counts as the house's other load on a phase its car is not expected to
draw on (``grid_phases``): that keeps the guarantee even when a car draws a little on a
phase it was not limited on. Exported current (PV) on a phase is not counted as headroom:
PV can vanish behind a cloud between two readings, and the car must never depend on it to
stay under the fuse, so a phase's other load counts as zero at least (solar modes use the
surplus, within that bound).

With no fresh grid reading (the meter silent, garbled, or a phase missing) nothing is known
of the house, and every connector falls back to the configured safe current.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Phases = tuple[float, float, float]

#: A phase carrying less than this is taken as not used by the car (meter noise, standby).
IN_USE_THRESHOLD_A = 1.0


@dataclass(frozen=True, slots=True)
class Site:
    """The house connection: its main fuse per phase, the margin kept below it, its phases.

    ``fallback_a`` is what each connector may offer while the grid meter gives no fresh
    reading for ``max_age_s`` seconds.
    """

    fuse_a: float
    margin_a: float = 1.0
    phases: int = 3
    fallback_a: float = 6.0
    max_age_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("fuse_a", "margin_a", "fallback_a", "max_age_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite value >= 0, got {value!r}")
        if self.phases not in (1, 3):
            raise ValueError(f"phases must be 1 or 3, got {self.phases}")

    @property
    def usable_a(self) -> float:
        """The most any phase may carry: the fuse less the margin (never below 0)."""
        return max(0.0, self.fuse_a - self.margin_a)

    @property
    def grid_phases(self) -> frozenset[int]:
        """The phases of the connection, 0-based (a one-phase house has L1 only)."""
        return frozenset(range(self.phases))


@dataclass(frozen=True, slots=True)
class GridSample:
    """One grid meter reading: signed current per phase (None where the meter has none)."""

    current_a: tuple[float | None, float | None, float | None]
    taken_at: float  # time.monotonic() of the reading


@dataclass(frozen=True, slots=True)
class ConnectorLoad:
    """One connector as the fuse sees it.

    ``grid_phases``: the grid phases (0-based) its car draws on or may draw on.
    ``current_a``: what it draws now on each grid phase (>= 0, from its own meter).
    """

    connector_id: int
    grid_phases: frozenset[int]
    current_a: Phases = (0.0, 0.0, 0.0)


def grid_phases_of(rotation: Sequence[int], car_current_a: Phases) -> frozenset[int]:
    """The grid phases a connector's car draws on, or may draw on.

    ``rotation`` maps the connector's phases to grid phases (0-based): ``(1, 2, 0)`` is a
    connector wired L2-L3-L1, ``(1,)`` a one-phase connector on L2. ``car_current_a`` is
    what its meter measures on the connector's own L1-L3. While the car draws on none of
    them, it may draw on every wired phase; once it draws, only those it draws on count
    (a one-phase car on a three-phase connector).
    """
    drawing = frozenset(
        rotation[i] for i in range(len(rotation)) if car_current_a[i] >= IN_USE_THRESHOLD_A
    )
    return drawing or frozenset(rotation)


def on_grid(rotation: Sequence[int], car_current_a: Phases) -> Phases:
    """The connector's per-phase currents re-ordered onto the grid phases."""
    grid = [0.0, 0.0, 0.0]
    for i, phase in enumerate(rotation):
        grid[phase] += max(0.0, car_current_a[i])
    return (grid[0], grid[1], grid[2])


def is_fresh(site: Site, sample: GridSample | None, now: float) -> bool:
    """True when ``sample`` is recent enough and has a finite current on every site phase."""
    if sample is None or now - sample.taken_at > site.max_age_s:
        return False
    return all(
        (value := sample.current_a[p]) is not None and math.isfinite(value)
        for p in site.grid_phases
    )


def fuse_limits(
    site: Site, sample: GridSample | None, connectors: Sequence[ConnectorLoad], now: float
) -> Mapping[int, float]:
    """The most each connector may offer (A, >= 0) to keep every phase under the fuse.

    Falls back to ``site.fallback_a`` for every connector when the sample is stale or
    incomplete. A connector on a phase the site lacks raises ValueError (a configuration
    the caller refuses at start).
    """
    for c in connectors:
        if not c.grid_phases <= site.grid_phases or not c.grid_phases:
            raise ValueError(
                f"connector {c.connector_id} uses phases {sorted(c.grid_phases)}, "
                f"the site has {sorted(site.grid_phases)}"
            )
    if sample is None or not is_fresh(site, sample, now):
        return {c.connector_id: site.fallback_a for c in connectors}
    share: dict[int, float] = {}
    for p in site.grid_phases:
        grid_a = sample.current_a[p]
        assert grid_a is not None  # is_fresh checked it
        users = [c for c in connectors if p in c.grid_phases]
        other_load_a = max(0.0, grid_a - math.fsum(c.current_a[p] for c in users))
        headroom_a = max(0.0, site.usable_a - other_load_a)
        share[p] = headroom_a / len(users) if users else headroom_a
    return {c.connector_id: min(share[p] for p in c.grid_phases) for c in connectors}
