"""The grid meter's readings, from wherever they come: one place that holds the newest.

The house connection is measured by a grid meter that is polled over Modbus
(:mod:`controller.energy.grid_meter`) or whose readings are pushed by another edge (a Home
Assistant or smart-meter bridge over MQTT or the local API): both end in
:meth:`GridFeed.push`. A pushed reading is ``{"current_a": [L1, L2, L3]}`` whichever edge
brought it, checked by one parser (:func:`parse_pushed`). The feed does not judge
staleness itself; the fuse rule does, from ``taken_at``
(:func:`controller.energy.fuse.is_fresh`), so a feed that stops is noticed whoever
stopped it.

Loop thread only: ``push`` wakes waiters through an ``asyncio.Event``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence

from controller.energy.fuse import GridSample
from drivers.base import MeterReading

Triple = tuple[float | None, float | None, float | None]
#: A pushed grid current beyond this is a bridge's error, not a house (A per phase).
MAX_GRID_A = 2000.0


class BadReading(ValueError):
    """A pushed reading that is not one: ``field`` names what is wrong, ``problem`` how."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def parse_pushed(body: object) -> Triple:
    """The per-phase currents of a pushed reading, ``{"current_a": [L1, L2, L3]}`` decoded
    from JSON: the grid's signed current on each phase (A, import positive; null for a
    phase not measured), each finite and within :data:`MAX_GRID_A`. BadReading otherwise.

    The local API and the MQTT bridge both take readings through it, so a bridge may
    switch from one to the other with the same payload.
    """
    if not isinstance(body, dict):
        raise BadReading("body", "must be a JSON object")
    for key in body:
        if key != "current_a":
            raise BadReading(key, "unknown field; expected current_a")
    current = body.get("current_a")
    if not isinstance(current, list) or not all(
        value is None
        or (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and abs(value) <= MAX_GRID_A
        )
        for value in current
    ):
        raise BadReading(
            "current_a",
            f"must be a list of per-phase currents (A, |I| <= {MAX_GRID_A:g}, or null)",
        )
    try:
        return _triple(current, "current_a")
    except ValueError as exc:
        raise BadReading("current_a", str(exc)) from None


def _triple(values: Sequence[float | None], what: str) -> Triple:
    if len(values) != 3:
        raise ValueError(f"{what} needs three values (L1, L2, L3), got {len(values)}")
    for value in values:
        if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
            raise ValueError(f"{what} must be finite numbers or None, got {value!r}")
    return (values[0], values[1], values[2])


def sample_from_meter(reading: MeterReading) -> GridSample:
    """A grid sample from a meter reading: currents signed by the direction of the power.

    Most meters report current as a magnitude (Eastron) and the direction only in the
    sign of the power; a phase that exports (PV) gets a negative current. A meter without
    a phase current but with power and voltage gets ``P / U`` (signed already).
    """
    return GridSample(
        signed_currents(reading.current_a, reading.power_w, reading.voltage_v), reading.taken_at
    )


def signed_currents(
    current_a: Sequence[float | None],
    power_w: Sequence[float | None],
    voltage_v: Sequence[float | None],
) -> Triple:
    """Per-phase currents signed by the direction of each phase's power (export negative);
    ``P / U`` where a phase has power and voltage but no current. ValueError unless three
    finite values (or None) come out."""
    current: list[float | None] = []
    for i_a, p_w, u_v in zip(current_a, power_w, voltage_v, strict=True):
        if i_a is None:
            current.append(p_w / u_v if p_w is not None and u_v else None)
        elif p_w is not None and p_w < 0:
            current.append(-abs(i_a))
        else:
            current.append(abs(i_a))
    return _triple(current, "current_a")


class GridFeed:
    """The newest grid sample and a way to wait for the next one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._latest: GridSample | None = None
        self._changed = asyncio.Event()
        self.samples = 0  # how many were pushed, for status and tests

    @property
    def latest(self) -> GridSample | None:
        """The newest sample, however old (None before the first)."""
        return self._latest

    def push(self, current_a: Sequence[float | None]) -> GridSample:
        """The version-neutral entry for pushed readings (MQTT, the local API): the grid's
        signed current per phase now (A, import positive; None for a phase not measured).
        Raises ValueError for anything else, before the feed changed."""
        sample = GridSample(_triple(list(current_a), "current_a"), self._clock())
        self.push_sample(sample)
        return sample

    def push_sample(self, sample: GridSample) -> None:
        """Take a sample made elsewhere (the Modbus poller); an older one than the newest
        is ignored, so a slow reply can never hide a newer reading."""
        _triple(sample.current_a, "current_a")
        if self._latest is not None and sample.taken_at < self._latest.taken_at:
            return
        self._latest = sample
        self.samples += 1
        self._changed.set()

    async def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a sample pushed after this call; True if one came."""
        self._changed.clear()
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await self._changed.wait()
        except TimeoutError:
            return False
        return True
