"""The pytest plugin shipped with picharge, used as a CSMS project would use it: the
``picharge_charger`` fixture (found through the ``pytest11`` entry point, no conftest) starts
a simulated charger against a CSMS URL with a key preset, the test drives it with
``charger.plug(); charger.tap(...)``, the fixture stops it. The CSMS here is the bundled
one, running on a thread of its own as another project's CSMS would run in its own process.
"""

from __future__ import annotations

import asyncio
import threading
import tomllib
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controller.local_csms import LocalCsms
from controller.testing.charger import ChargerError, SimulatedCharger, preset_text
from tests.support.csms import ACCEPTED_TAG, TEST_TAGS

T = TypeVar("T")
KEYS = {"HeartbeatInterval": 30, "MeterValueSampleInterval": 1, "WebSocketPingInterval": 0}


class CsmsThread:
    """The bundled CSMS on its own thread and loop; :meth:`run` awaits one of its
    coroutines from the (synchronous) test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-csms")
        self.csms = LocalCsms(authorized_tags=TEST_TAGS, call_timeout_s=10.0)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def __enter__(self) -> CsmsThread:
        self.thread.start()
        self.run(self.csms.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.csms.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def csms_thread() -> Iterator[CsmsThread]:
    with CsmsThread() as running:
        yield running
    assert not running.csms.violations, running.csms.violations


def test_the_plugin_is_registered_by_the_entry_point(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.has_plugin("picharge")
    assert request.config.getoption("picharge_speed") == 10.0


def test_a_session_driven_through_the_fixture(
    picharge_charger: Callable[..., SimulatedCharger], csms_thread: CsmsThread
) -> None:
    csms = csms_thread.csms
    charger = picharge_charger(csms.url, chargepoint_id="cp-plugin", keys=KEYS)
    csms_thread.run(csms.wait_for("BootNotification"))
    charger.plug()
    charger.tap(ACCEPTED_TAG)
    start = csms_thread.run(csms.wait_for("StartTransaction"))
    assert start["idTag"] == ACCEPTED_TAG
    charging = charger.wait_for(lambda c: c["ev_current_a"] > 15)
    assert charging["ocpp_status"] == "Charging" and charging["contactor_closed"]
    charger.tap(ACCEPTED_TAG)  # the same card again ends the session
    stop = csms_thread.run(csms.wait_for("StopTransaction"))
    assert stop["reason"] == "Local"
    charger.unplug()
    charger.wait_for(lambda c: c["ocpp_status"] == "Available")


def test_a_session_over_ocpp_201_with_a_device_model_preset(
    picharge_charger: Callable[..., SimulatedCharger], csms_thread: CsmsThread
) -> None:
    csms = csms_thread.csms
    preset = {
        "SampledDataCtrlr": {"TxUpdatedInterval": 1},
        "OCPPCommCtrlr": {"WebSocketPingInterval": 0},
    }
    charger = picharge_charger(csms.url, chargepoint_id="cp-plugin-201", keys=preset, ocpp="2.0.1")
    csms_thread.run(csms.wait_for("BootNotification"))
    charger.plug()
    charger.tap(ACCEPTED_TAG)
    started = csms_thread.run(
        csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    )
    assert started["idToken"]["idToken"] == ACCEPTED_TAG.upper()
    charger.wait_for(lambda c: c["ev_current_a"] > 15)
    # the preset's 1 s TxUpdatedInterval: periodic values while the car draws
    csms_thread.run(
        csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic")
    )
    charger.tap(ACCEPTED_TAG)  # the same card again ends the session
    ended = csms_thread.run(csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended"))
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert ended["transactionInfo"]["stoppedReason"] == "Local"


def test_the_preset_of_a_201_charger_is_a_toml_table_per_component() -> None:
    text = preset_text({"HeartbeatInterval": 30, "TxCtrlr": {"EVConnectionTimeOut": 60}})
    assert tomllib.loads(text) == {"HeartbeatInterval": 30, "TxCtrlr": {"EVConnectionTimeOut": 60}}


def test_a_fault_and_its_recovery_through_the_fixture(
    picharge_charger: Callable[..., SimulatedCharger], csms_thread: CsmsThread
) -> None:
    csms = csms_thread.csms
    charger = picharge_charger(csms.url, chargepoint_id="cp-plugin-fault", keys=KEYS)
    charger.fault("rcd")
    faulted = csms_thread.run(
        csms.wait_for(
            "StatusNotification",
            lambda p: p["connectorId"] == 1 and p["errorCode"] == "GroundFailure",
        )
    )
    assert faulted["status"] == "Faulted"
    charger.fault("clear")
    charger.wait_for(lambda c: c["ocpp_status"] == "Available")


def test_a_charger_that_cannot_start_says_why(tmp_path: Path) -> None:
    preset = {"NoSuchKey": 1}
    charger = SimulatedCharger("ws://127.0.0.1:9/", tmp_path / "state", keys=preset)
    with pytest.raises(ChargerError, match=r"NoSuchKey: unknown OCPP 1\.6 configuration key"):
        charger.start()
