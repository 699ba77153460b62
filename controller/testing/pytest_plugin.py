"""The picharge pytest plugin: a simulated charger as a fixture, for a CSMS's test suite.

Installed with picharge (entry point ``pytest11``: ``picharge``), so a project that has
picharge in its test environment gets the ``picharge_charger`` fixture without a conftest::

    def test_a_session_is_billed(picharge_charger, my_csms_url):
        charger = picharge_charger(my_csms_url, keys={"MeterValueSampleInterval": 5})
        charger.plug()
        charger.tap("04A1B2C3")
        charger.wait_for(lambda c: c["ocpp_status"] == "Charging")

Each call starts one ``picharge run --sim`` process (its own state directory under the
test's ``tmp_path``) and returns a :class:`~controller.testing.charger.SimulatedCharger`;
every charger the test started is stopped at its end, and its log is attached to a failed
test's report. Options: ``--picharge-speed`` (default 10: simulated car and meter time).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.testing.charger import SimulatedCharger

StartCharger = Callable[..., SimulatedCharger]
#: The chargers a test started, for its report.
CHARGERS = pytest.StashKey[list[SimulatedCharger]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("picharge", "picharge simulated charger")
    group.addoption(
        "--picharge-speed",
        type=float,
        default=10.0,
        help="how much faster than the wall clock the simulated car and meter run (10)",
    )


@pytest.fixture
def picharge_charger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartCharger]:
    """``picharge_charger(csms_url, *, chargepoint_id="picharge-sim", keys=None,
    speed=None, extra_args=(), ocpp="1.6")``: start a simulated charger speaking that OCPP
    version, return it started."""
    started: list[SimulatedCharger] = []

    def start(
        csms_url: str,
        *,
        chargepoint_id: str = "picharge-sim",
        keys: Mapping[str, Any] | None = None,
        speed: float | None = None,
        extra_args: Sequence[str] = (),
        state_dir: Path | None = None,
        ocpp: str = "1.6",
    ) -> SimulatedCharger:
        charger = SimulatedCharger(
            csms_url,
            state_dir or tmp_path / f"picharge-{len(started) + 1}",
            chargepoint_id=chargepoint_id,
            keys=keys,
            speed=speed if speed is not None else request.config.getoption("picharge_speed"),
            ocpp=ocpp,
            extra_args=extra_args,
        )
        started.append(charger)
        return charger.start()

    request.node.stash[CHARGERS] = started
    yield start
    for charger in started:
        charger.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries the end of each charger's log."""
    report = yield
    if report.when == "call" and report.failed:
        for charger in item.stash.get(CHARGERS, []):
            report.sections.append(
                (f"picharge {charger.chargepoint_id} log", charger.log()[-20000:])
            )
    return report
