"""Several connectors on one circuit: a fair share of the circuit's limit, per phase.

A ``[[circuit]]`` is a sub-distribution under the site's main fuse (its own breaker,
``limit_a`` per phase) feeding some of the connectors. Its rule, pure like the fuse's (no
I/O; the clock arrives as ``now``), in this order:

- Only connectors with a session that can use current (``Claim.wants``) take a share; one
  whose own cap (the fuse rule's limit, its maximum) is below 6 A cannot run at all.
- The running connectors share the limit max-min fairly on each phase (equal shares, and
  what one cannot take, being at its cap, goes to the others): on no phase does the sum of
  the offers exceed the limit, and no offer exceeds its connector's cap.
- IEC 61851 has no offer below 6 A: when a running connector's share would be less, the
  lowest-ranked connector among those sharing a phase with it is paused (offered 0) and
  the shares are made again; a paused connector is never offered "a little".
- The rank: a connector that started less than ``rotation_s`` ago keeps running (its
  contactor is spared); then the higher ``priority + whole rotation intervals waited``
  goes first, so a paused connector overtakes one of its own priority after one interval
  and one of a higher priority after more: nobody starves. Ties keep who runs running.

``tests/test_energy_circuits.py`` checks the bounds, the fairness and the rotation as
properties. The manager applies the result as the minimum with the fuse rule's limit, and
sets lowered connectors before raised ones.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.config_keys import CIRCUIT_KEYS
from controller.limits import MIN_OFFER_A
from drivers.errors import ConfigurationError

#: Currents closer than this count as equal when filling (floating point).
EPSILON_A = 1e-9
#: Default time a connector runs before a waiting one may take its place (s).
ROTATION_S = 900.0


@dataclass(frozen=True, slots=True)
class Circuit:
    """One circuit: its name, its per-phase limit (A) and its connectors with priorities.

    ``priorities`` holds one integer per connector (default all 0; higher goes first).
    """

    name: str
    limit_a: float
    connectors: tuple[int, ...]
    priorities: tuple[int, ...] = ()
    rotation_s: float = ROTATION_S

    def __post_init__(self) -> None:
        if not math.isfinite(self.limit_a) or self.limit_a < 0:
            raise ValueError(f"circuit {self.name}: limit_a must be >= 0, got {self.limit_a!r}")
        if not self.connectors or len(set(self.connectors)) != len(self.connectors):
            raise ValueError(f"circuit {self.name}: connectors must be distinct and not empty")
        if self.priorities and len(self.priorities) != len(self.connectors):
            raise ValueError(f"circuit {self.name}: one priority per connector")
        if not math.isfinite(self.rotation_s) or self.rotation_s <= 0:
            raise ValueError(f"circuit {self.name}: rotation_s must be > 0")

    def priority(self, connector_id: int) -> int:
        """The priority of one of this circuit's connectors."""
        if not self.priorities:
            return 0
        return self.priorities[self.connectors.index(connector_id)]


@dataclass(frozen=True, slots=True)
class Claim:
    """One connector as the circuit sees it: the phases it uses, its cap, whether it wants."""

    connector_id: int
    grid_phases: frozenset[int]
    cap_a: float
    wants: bool


def fair_fill(limit_a: float, claims: Sequence[Claim]) -> dict[int, float]:
    """Max-min fair shares of ``limit_a`` per phase among ``claims`` (every one is served).

    Progressive filling: everyone rises together until a phase is full or a connector
    reaches its cap; those are frozen and the rest go on. Each round freezes at least one
    connector, so it ends after at most ``len(claims)`` rounds.
    """
    alloc = {c.connector_id: 0.0 for c in claims}
    free = [c for c in claims if c.cap_a > EPSILON_A]
    left = {p: limit_a for c in claims for p in c.grid_phases}
    while free:
        users = {p: sum(1 for c in free if p in c.grid_phases) for p in left}
        rise = min(
            min(left[p] / users[p] for p in c.grid_phases) for c in free
        )  # the phase that fills first
        rise = min(rise, min(c.cap_a - alloc[c.connector_id] for c in free))
        rise = max(0.0, rise)
        for c in free:
            alloc[c.connector_id] += rise
        for p in left:
            left[p] -= rise * users[p]
        full = {p for p, a in left.items() if a <= EPSILON_A}
        free = [
            c
            for c in free
            if not c.grid_phases & full and c.cap_a - alloc[c.connector_id] > EPSILON_A
        ]
    return alloc


def share(limit_a: float, ranked: Sequence[Claim]) -> dict[int, float]:
    """Each claim's offer: 0, or a fair share of at least 6 A; ``ranked`` best first."""
    able = [c for c in ranked if c.wants and c.cap_a >= MIN_OFFER_A]
    running = list(able)
    while _starved(limit_a, running):
        crowded = frozenset().union(*(c.grid_phases for c in _starved(limit_a, running)))
        running.remove(next(c for c in reversed(running) if c.grid_phases & crowded))
    # A later pause may have made room for one paused earlier: take it back, best first.
    for c in able:
        if c not in running and not _starved(limit_a, [*running, c]):
            running.append(c)
    alloc = fair_fill(limit_a, running)
    return {c.connector_id: alloc.get(c.connector_id, 0.0) for c in ranked}


def _starved(limit_a: float, running: Sequence[Claim]) -> list[Claim]:
    """The claims whose fair share among ``running`` is below 6 A."""
    alloc = fair_fill(limit_a, running)
    return [c for c in running if alloc[c.connector_id] < MIN_OFFER_A - EPSILON_A]


@dataclass
class CircuitSharing:
    """One circuit's shares over time: who runs, who waits, since when. Loop thread only."""

    circuit: Circuit
    running_since: dict[int, float] = field(default_factory=dict)
    waiting_since: dict[int, float] = field(default_factory=dict)

    def rank(self, claims: Sequence[Claim], now: float) -> list[Claim]:
        """``claims`` best first (see the module's docstring)."""
        rotation_s = self.circuit.rotation_s
        order = {cid: i for i, cid in enumerate(self.circuit.connectors)}

        def key(c: Claim) -> tuple[bool, int, bool, float, int]:
            cid = c.connector_id
            started = self.running_since.get(cid)
            pinned = started is not None and now - started < rotation_s
            waited = now - self.waiting_since.get(cid, now)
            score = self.circuit.priority(cid) + math.floor(waited / rotation_s)
            # Among equals who runs keeps running, and the one running longest yields first.
            since = -math.inf if started is None else started
            return (not pinned, -score, started is None, -since, order[cid])

        return sorted(claims, key=key)

    def step(self, claims: Sequence[Claim], now: float) -> dict[int, float]:
        """The offers for this circuit's connectors now, and who runs from now on."""
        offers = share(self.circuit.limit_a, self.rank(claims, now))
        for c in claims:
            cid = c.connector_id
            if offers[cid] >= MIN_OFFER_A:
                self.running_since.setdefault(cid, now)
                self.waiting_since.pop(cid, None)
            else:
                self.running_since.pop(cid, None)
                if c.wants:
                    self.waiting_since.setdefault(cid, now)
                else:
                    self.waiting_since.pop(cid, None)
        return offers


class Circuits:
    """Every configured circuit: the circuits' offers folded into the fuse rule's limits."""

    def __init__(self, circuits: Sequence[Circuit]) -> None:
        seen: dict[int, str] = {}
        for circuit in circuits:
            for cid in circuit.connectors:
                if cid in seen:
                    raise ValueError(
                        f"connector {cid} is on circuits {seen[cid]} and {circuit.name}"
                    )
                seen[cid] = circuit.name
        self.sharing = [CircuitSharing(c) for c in circuits]

    def limits(
        self,
        fuse_a: Mapping[int, float],
        phases: Mapping[int, frozenset[int]],
        max_a: Mapping[int, float],
        wants: Mapping[int, bool],
        now: float,
    ) -> dict[int, float]:
        """``fuse_a`` with each circuit connector's limit lowered to its circuit's offer.

        ``phases``: the grid phases each connector uses; ``max_a``: its own maximum;
        ``wants``: whether it has a session that can use current.
        """
        out = dict(fuse_a)
        for sharing in self.sharing:
            claims = [
                Claim(
                    cid,
                    phases[cid],
                    min(fuse_a.get(cid, 0.0), max_a.get(cid, math.inf)),
                    wants.get(cid, False),
                )
                for cid in sharing.circuit.connectors
            ]
            for cid, offer_a in sharing.step(claims, now).items():
                out[cid] = min(out.get(cid, 0.0), offer_a)
        return out


def parse_circuits(
    tables: Sequence[Mapping[str, Any]], connector_ids: Collection[int]
) -> list[Circuit]:
    """Validate the ``[[circuit]]`` tables; ConfigurationError names ``circuit.<n>.<key>``.

    ``name`` (default "circuit <n>"), ``limit_a`` (required, 6-1000 A per phase),
    ``connectors`` (required: ids of configured connectors, each on one circuit only),
    ``priorities`` (optional, one integer per connector), ``rotation_s`` (60-86400 s).
    """
    circuits: list[Circuit] = []
    taken: dict[int, str] = {}
    for n, table in enumerate(tables, start=1):
        prefix = f"circuit.{n}"

        def bad(key: str, problem: str, prefix: str = prefix) -> ConfigurationError:
            return ConfigurationError(f"{prefix}.{key}", problem)

        unknown = sorted(set(table) - set(CIRCUIT_KEYS))
        if unknown:
            raise bad(unknown[0], f"unknown key; expected one of {', '.join(CIRCUIT_KEYS)}")
        name = table.get("name", f"circuit {n}")
        if not isinstance(name, str) or not name:
            raise bad("name", "must be a name")
        limit = table.get("limit_a")
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 6 <= limit <= 1000:
            raise bad("limit_a", f"must be the circuit's limit per phase, 6-1000 A, got {limit!r}")
        ids = table.get("connectors")
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            or len(set(ids)) != len(ids)
        ):
            raise bad("connectors", f"must list distinct connector ids, got {ids!r}")
        for cid in ids:
            if cid not in connector_ids:
                raise bad("connectors", f"connector {cid} is not configured")
            if cid in taken:
                raise bad("connectors", f"connector {cid} is already on circuit {taken[cid]!r}")
            taken[cid] = name
        priorities = table.get("priorities", [])
        if (
            not isinstance(priorities, list)
            or (priorities and len(priorities) != len(ids))
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in priorities)
        ):
            raise bad("priorities", "must hold one integer per connector")
        rotation = table.get("rotation_s", ROTATION_S)
        if isinstance(rotation, bool) or not isinstance(rotation, int | float):
            raise bad("rotation_s", f"must be a number of seconds, got {rotation!r}")
        if not 60 <= rotation <= 86400:
            raise bad("rotation_s", f"must be 60-86400 s, got {rotation}")
        circuits.append(Circuit(name, float(limit), tuple(ids), tuple(priorities), float(rotation)))
    return circuits
