"""A Shelly Pro 3EM as the grid meter, read over its local HTTP API (Gen2 RPC).

``GET http://<host>/rpc/EM.GetStatus?id=0`` returns the three phases' currents (magnitudes),
voltages and signed active powers (negative: returned to the grid) as ``a_current``,
``a_voltage``, ``a_act_power`` and the same for ``b`` and ``c`` (Shelly's Gen2 API, EM
component). Each answer becomes a grid sample with the currents signed by the power, like a
Modbus grid meter's (:func:`controller.energy.grid.signed_currents`).

The poller behaves like the Modbus one: one request every ``interval_s``, each bounded by
``timeout_s``; an answer that does not come, is not 200, or lacks a phase pushes nothing,
and the fuse rule sees the samples age (staleness is judged there, from ``taken_at``). It
logs when the Shelly stops answering and when it answers again, once each.

Not supported: a Shelly with authentication enabled (Gen2 uses HTTP digest auth, which
aiohttp does not do): leave it off on the house network, or push readings instead.

Runs on the loop (aiohttp). An edge module: imported only by the energy setup.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from controller.energy.fuse import GridSample
from controller.energy.grid import GridFeed, signed_currents
from controller.energy.grid_meter import ShellySettings

log = logging.getLogger(__name__)

PHASES = ("a", "b", "c")


class ShellyAnswerError(ValueError):
    """The Shelly answered, but not with a usable EM status."""


def sample_from_status(status: Mapping[str, Any], taken_at: float) -> GridSample:
    """A grid sample from an ``EM.GetStatus`` body; ShellyAnswerError if it is unusable."""

    def phase(field: str) -> tuple[float | None, float | None, float | None]:
        values: list[float | None] = []
        for p in PHASES:
            value = status.get(f"{p}_{field}")
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ShellyAnswerError(f"{p}_{field} is {value!r}")
            values.append(None if value is None else float(value))
        return (values[0], values[1], values[2])

    try:
        current = signed_currents(phase("current"), phase("act_power"), phase("voltage"))
    except ValueError as exc:
        raise ShellyAnswerError(str(exc)) from exc
    return GridSample(current, taken_at)


async def poll_shelly(settings: ShellySettings, feed: GridFeed, interval_s: float) -> None:
    """Read the Shelly every ``interval_s`` and push each usable answer; runs until cancelled."""
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    answering = True
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            started = time.monotonic()
            problem = await _read_once(session, settings, feed)
            if (problem is None) != answering:
                answering = problem is None
                if answering:
                    log.info("grid meter (Shelly at %s) answers again", settings.host)
                else:
                    log.warning("grid meter (Shelly at %s): %s", settings.host, problem)
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))


async def _read_once(
    session: aiohttp.ClientSession, settings: ShellySettings, feed: GridFeed
) -> str | None:
    """One request; the sample is pushed. Returns what went wrong in words, or None."""
    try:
        async with session.get(settings.url) as response:
            if response.status != 200:
                return f"HTTP {response.status} from {settings.url}"
            body = await response.json(content_type=None)
        taken_at = time.monotonic()
        if not isinstance(body, Mapping):
            return f"the answer is not a JSON object: {body!r:.80}"
        feed.push_sample(sample_from_status(body, taken_at))
    except TimeoutError:
        return f"no answer within {settings.timeout_s:g} s"
    except (aiohttp.ClientError, ValueError) as exc:  # ValueError: JSON, ShellyAnswerError
        return f"unusable answer from {settings.url}: {exc}"
    return None
