"""The timing given to a running adapter is the one its link uses (both OCPP versions).

Tools that drive a whole charger (bench/fault_trials.py, tests/test_malformed_csms.py) build
the app first and then give its adapter a quicker :class:`LinkTiming`; the link must back
off by that timing from its next delay on, not by the one the adapter was built with.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.csms.link import LinkTiming
from controller.local_csms import LocalCsms
from tests.support.sim_app import controller
from tests.support.wait import until

#: A backoff no default could produce (the default is 1 s, ±20 %).
SLOW = LinkTiming(backoff_initial_s=40.0, backoff_max_s=40.0, backoff_jitter=0.0)


def delays(text: str) -> list[str]:
    """The backoff delays the link logged, in order."""
    return re.findall(r"reconnecting to \S+ in (\S+) s", text)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_timing_given_to_the_running_adapter_is_the_one_its_link_backs_off_by(
    csms: LocalCsms, tmp_path: Path, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="controller")
    csms.refuse_connections = True  # every attempt fails: the link backs off again and again
    async with controller(csms, tmp_path, ocpp={"version": version}, wait_ready=False) as rig:
        await until(lambda: len(delays(caplog.text)) >= 1)
        assert delays(caplog.text)[0] != "40.0"  # built with the default timing
        rig.app.adapter.timing = SLOW
        assert rig.app.adapter.timing is SLOW
        await until(lambda: len(delays(caplog.text)) >= 2)
        assert delays(caplog.text)[1] == "40.0"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_timing_with_another_interval_scale_is_refused(
    csms: LocalCsms, tmp_path: Path, version: str
) -> None:
    """The timers were built with the adapter's interval scale: a new one would not reach
    them, so it is refused rather than half applied."""
    csms.refuse_connections = True
    async with controller(csms, tmp_path, ocpp={"version": version}, wait_ready=False) as rig:
        before = rig.app.adapter.timing
        with pytest.raises(ValueError, match="interval_scale"):
            rig.app.adapter.timing = LinkTiming(interval_scale=0.5)
        assert rig.app.adapter.timing is before
