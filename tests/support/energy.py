"""Configuration shared by the end-to-end tests of the charging modes (issue 16)."""

from __future__ import annotations

#: ``[energy]`` for a solar mode whose delays are seconds: the simulation runs x30, and the
#: rules are the same as with the defaults' minutes.
QUICK_SOLAR: dict[str, object] = {
    "mode": "solar",
    "start_delay_s": 1.0,
    "stop_delay_s": 1.5,
    "min_run_s": 3.0,
    "min_pause_s": 2.0,
    "settle_s": 1.5,
}
