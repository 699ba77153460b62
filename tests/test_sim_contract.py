"""The simulated charger as another project's CI target: `picharge run --sim` and `picharge
sim ACTION` behave as docs/simulator.md says, with no surprise on first contact (issue 13).

Everything here goes through the real command line, as a CSMS project's test harness does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ocpp.v16 import call
from ocpp.v16.enums import MessageTrigger

from controller.cli import FAULTS, build_parser
from controller.local_csms import LocalCsms
from controller.sim_client import MAX_SIM_CONNECTORS
from hw_sim.charger import FAULTS as SIM_HARDWARE_FAULT_NAMES
from hw_sim.charger import MAX_SIM_CONNECTORS as SIM_HARDWARE_CONNECTORS
from tests.support.cli_sim import CliSim, free_port, picharge
from tests.support.file_servers import HttpFiles
from tests.support.firmware_rig import now_iso
from tests.support.wait import until_sync

CARD = "04A1B2C3"
SIM_HARDWARE_FAULTS = set(SIM_HARDWARE_FAULT_NAMES)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def two_connectors(tmp_path: Path) -> Iterator[CliSim]:
    config = tmp_path / "config.toml"
    config.write_text(f'[authorization]\ncards = ["{CARD}"]\n')
    sim = CliSim(tmp_path / "state", ["--config", str(config), "--sim-connectors", "2"]).start()
    try:
        yield sim
    finally:
        assert sim.stop() == 0, sim.log()


# --- options anywhere ------------------------------------------------------------------------

_ACTIONS = [["plug"], ["unplug"], ["charge"], ["pause"], ["status"], ["tap", CARD]] + [
    ["fault", fault] for fault in FAULTS
]


@pytest.mark.parametrize("action", _ACTIONS, ids=lambda a: "-".join(a))
@pytest.mark.parametrize("where", ["before", "after", "split"])
def test_every_action_takes_control_and_connector_before_or_after_it(
    action: list[str], where: str
) -> None:
    control, connector = ["--control", "10.0.0.7:9000"], ["--connector", "3"]
    if where == "before":
        argv = ["sim", *control, *connector, *action]
    elif where == "after":
        argv = ["sim", *action, *connector, *control]
    else:
        argv = ["sim", *connector, *action, *control]
    args = build_parser().parse_args(argv)
    assert (args.control, args.connector) == ("10.0.0.7:9000", 3)


def test_the_options_default_to_the_first_connector_on_the_default_endpoint() -> None:
    args = build_parser().parse_args(["sim", "plug"])
    assert (args.control, args.connector) == ("127.0.0.1:8181", 1)


def test_an_option_after_the_action_reaches_the_running_simulation(
    two_connectors: CliSim,
) -> None:
    result = picharge("sim", "plug", "--connector", "2", "--control", two_connectors.control)
    assert result.returncode == 0, result.stderr
    status = two_connectors.status()
    assert [c["ev_plugged"] for c in status["connectors"]] == [False, True]
    result = picharge("sim", "--connector", "2", "unplug", "--control", two_connectors.control)
    assert result.returncode == 0, result.stderr
    assert two_connectors.connector(2)["ev_plugged"] is False


@pytest.mark.parametrize("bad", ["0", "-1", "x"])
def test_a_bad_connector_number_is_a_usage_error(bad: str) -> None:
    result = picharge("sim", "plug", "--connector", bad)
    assert result.returncode == 2
    assert "--connector" in result.stderr


def test_the_connector_count_limit_is_the_same_in_the_cli_the_simulation_and_the_docs() -> None:
    assert MAX_SIM_CONNECTORS == SIM_HARDWARE_CONNECTORS
    top = str(MAX_SIM_CONNECTORS)
    args = build_parser().parse_args(["run", "--sim", "--sim-connectors", top])
    assert args.sim_connectors == MAX_SIM_CONNECTORS
    result = picharge("run", "--sim", "--sim-connectors", str(MAX_SIM_CONNECTORS + 1))
    assert result.returncode == 2
    assert f"must be 1 to {top}" in result.stderr
    assert f"`--sim-connectors N` (up to {top})" in (ROOT / "README.md").read_text()


# --- the key preset is the operator's configuration ------------------------------------------

HARNESS_PRESET = """\
HeartbeatInterval = 30
ReserveConnectorZeroSupported = false
AdditionalRootCertificateCheck = true
ChargeProfileMaxStackLevel = 4
SupportedFeatureProfiles = ["Core", "Reservation", "SmartCharging"]
"""


async def test_a_harness_preset_with_read_only_keys_starts_the_charger_as_configured(
    tmp_path: Path, csms: LocalCsms
) -> None:
    preset = tmp_path / "keys.toml"
    preset.write_text(HARNESS_PRESET)
    extra = ["--csms", csms.url, "--id", "cp-ci", "--ocpp-keys", str(preset)]
    sim = CliSim(tmp_path / "state", extra)
    await asyncio.to_thread(sim.start)
    try:
        await csms.wait_for("BootNotification")
        conf = await csms.call("cp-ci", call.GetConfiguration())
        values = {e["key"]: e for e in conf.configuration_key}
        assert values["ReserveConnectorZeroSupported"]["value"] == "false"
        assert values["ReserveConnectorZeroSupported"]["readonly"] is True
        assert values["AdditionalRootCertificateCheck"]["value"] == "true"
        assert values["ChargeProfileMaxStackLevel"]["value"] == "4"
        assert values["SupportedFeatureProfiles"]["value"] == "Core,Reservation,SmartCharging"
        # a profile the preset switched off answers NotSupported; one it kept works
        error = await csms.call(
            "cp-ci",
            call.TriggerMessage(requested_message=MessageTrigger.heartbeat),
            expect_error=True,
        )
        assert error.error_code == "NotSupported"
        error = await csms.call("cp-ci", call.GetLocalListVersion(), expect_error=True)
        assert error.error_code == "NotSupported"
        assert (await csms.call("cp-ci", call.CancelReservation(reservation_id=7))).status
    finally:
        assert await asyncio.to_thread(sim.stop) == 0, sim.log()


def test_an_unknown_key_in_the_preset_is_still_an_error_naming_it(tmp_path: Path) -> None:
    preset = tmp_path / "keys.toml"
    preset.write_text(HARNESS_PRESET + "HeartBeatIntervall = 30\n")
    result = picharge(
        "run", "--sim", "--csms", "ws://127.0.0.1:9/", "--ocpp-keys", str(preset),
        "--state-dir", str(tmp_path / "state"), "--sim-control", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--ocpp-keys HeartBeatIntervall: unknown OCPP 1.6 configuration key" in result.stderr


# --- no tap is lost --------------------------------------------------------------------------


def test_five_taps_of_one_card_a_fifth_of_a_second_apart_are_five_presentations(
    two_connectors: CliSim,
) -> None:
    for _ in range(5):
        started = time.monotonic()
        result = two_connectors.sim("tap", CARD)
        assert result.returncode == 0, result.stderr
        time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))  # the harness's own pace

    def presentations() -> int:
        return two_connectors.log().count(f"card {CARD} presented")

    until_sync(lambda: presentations() >= 5, 20, what="five presentations of the card")
    # and not more: each tap is one presentation (the reader's repeats are not new ones)
    time.sleep(1.0)  # a window: a sixth would come from a tap played twice, within ~0.6 s
    assert presentations() == 5


# --- what survives a restart -----------------------------------------------------------------


def test_the_car_stays_plugged_across_a_power_cut_and_a_restart(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[authorization]\ncards = ["{CARD}"]\n')
    extra = ["--config", str(config), "--sim-connectors", "2"]
    sim = CliSim(tmp_path / "state", extra).start()
    try:
        assert sim.sim("plug").returncode == 0
        assert sim.sim("plug", "--connector", "2").returncode == 0
        assert sim.sim("pause", "--connector", "2").returncode == 0
        assert sim.sim("tap", CARD).returncode == 0
        sim.wait_for(lambda s: s["connectors"][0]["ev_current_a"] > 15, what="charging")
    finally:
        sim.kill()  # the power goes: no shutdown, the simulation dies with the controller
    again = CliSim(tmp_path / "state", extra, control=sim.control).start()
    try:
        status = again.wait_for(
            lambda s: s["connectors"][0]["ocpp_status"] == "Preparing", what="Preparing"
        )
        first, second = status["connectors"]
        # the car is still there and still wants energy; the charger waits for a new card
        assert first["ev_plugged"] is True and first["cp_state"] in ("B", "C")
        assert first["contactor_closed"] is False and first["transaction_id"] is None
        assert second["ev_plugged"] is True
        assert again.sim("tap", CARD).returncode == 0
        again.wait_for(lambda s: s["connectors"][0]["ev_current_a"] > 15, what="charging again")
        assert again.sim("unplug").returncode == 0
    finally:
        assert again.stop() == 0, again.log()
    third = CliSim(tmp_path / "state", extra, control=sim.control).start()
    try:
        assert [c["ev_plugged"] for c in third.status()["connectors"]] == [False, True]
    finally:
        assert third.stop() == 0, third.log()


# --- firmware in the simulation --------------------------------------------------------------

FAST_KEYS = "HeartbeatInterval = 30\nWebSocketPingInterval = 0\nClockAlignedDataInterval = 0\n"
ANY_FILE = b"not a picharge package: any file a CSMS test suite has at hand\n"


def _firmware_statuses(csms: LocalCsms, after: int) -> list[str]:
    return [
        str(r.payload["status"])
        for r in csms.received[after:]
        if r.action == "FirmwareStatusNotification"
    ]


@pytest.mark.parametrize("fault", [False, True], ids=["installs", "sim-fault-firmware"])
async def test_any_file_installs_in_the_simulation_and_the_new_version_reports_in(
    tmp_path: Path, csms: LocalCsms, fault: bool
) -> None:
    preset = tmp_path / "keys.toml"
    preset.write_text(FAST_KEYS)
    # the trust rules apply unchanged: an unsigned file needs the operator's consent
    config = tmp_path / "config.toml"
    config.write_text("[ocpp]\nallow_unsigned_firmware = true\n")
    extra = ["--csms", csms.url, "--id", "cp-fw", "--ocpp-keys", str(preset)]
    extra += ["--config", str(config)]
    sim = CliSim(tmp_path / "state", extra)
    await asyncio.to_thread(sim.start)
    try:
        boot = await csms.wait_for("BootNotification")
        if fault:
            assert (await asyncio.to_thread(sim.sim, "fault", "firmware")).returncode == 0
        with HttpFiles(files={"/update.bin": ANY_FILE}) as server:
            mark = len(csms.received)
            request = call.UpdateFirmware(
                location=f"{server.base}/update.bin", retrieve_date=now_iso()
            )
            await csms.call("cp-fw", request)
            final = "InstallationFailed" if fault else "Installed"
            await csms.wait_for(
                "FirmwareStatusNotification",
                lambda p: p["status"] == final,
                after=mark,
                timeout_s=40,
            )
        if fault:
            assert _firmware_statuses(csms, mark) == [
                "Downloading", "Downloaded", "Installing", "InstallationFailed"
            ]  # fmt: skip
            return
        # the restart ran the same code, which now reports the version it "installed"
        again = await csms.wait_for("BootNotification", after=mark)
        assert boot["firmwareVersion"] != again["firmwareVersion"]
        assert again["firmwareVersion"].startswith("picharge-sim-")
        assert _firmware_statuses(csms, mark) == [
            "Downloading", "Downloaded", "Installing", "Installed"
        ]  # fmt: skip
        assert not (tmp_path / "state" / "firmware" / "current").exists()  # nothing installed
    finally:
        assert await asyncio.to_thread(sim.stop) == 0, sim.log()


# --- more faults: mains voltage, power-fail warning, storage ---------------------------------


def _status_after(csms: LocalCsms, after: int, status: str, **match: str) -> object:
    return csms.wait_for(
        "StatusNotification",
        lambda p: (
            p["connectorId"] == 1
            and p["status"] == status
            and all(p.get(k) == v for k, v in match.items())
        ),
        after=after,
        timeout_s=20,
    )


@pytest.fixture
async def with_csms(tmp_path: Path, csms: LocalCsms) -> AsyncIterator[CliSim]:
    preset = tmp_path / "keys.toml"
    preset.write_text(FAST_KEYS)
    extra = ["--csms", csms.url, "--id", "cp-faults", "--ocpp-keys", str(preset)]
    sim = CliSim(tmp_path / "state", extra)
    await asyncio.to_thread(sim.start)
    try:
        await _status_after(csms, 0, "Available")
        yield sim
    finally:
        assert await asyncio.to_thread(sim.stop) == 0, sim.log()


async def _sim(sim: CliSim, *args: str) -> None:
    result = await asyncio.to_thread(sim.sim, *args)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("fault", "code"), [("undervoltage", "UnderVoltage"), ("overvoltage", "OverVoltage")]
)
async def test_mains_out_of_tolerance_faults_the_connector_until_it_is_back(
    with_csms: CliSim, csms: LocalCsms, fault: str, code: str
) -> None:
    mark = len(csms.received)
    await _sim(with_csms, "fault", fault)
    await _status_after(csms, mark, "Faulted", errorCode=code)
    mark = len(csms.received)
    await _sim(with_csms, "fault", "clear")
    await _status_after(csms, mark, "Available", errorCode="NoError")


async def test_a_power_fail_warning_stops_the_session_with_power_loss_before_the_power_goes(
    with_csms: CliSim, csms: LocalCsms
) -> None:
    await _sim(with_csms, "plug")
    await _sim(with_csms, "tap", CARD)
    await csms.wait_for("StartTransaction", timeout_s=20)
    await asyncio.to_thread(
        with_csms.wait_for, lambda s: s["connectors"][0]["contactor_closed"], 20, "charging"
    )
    mark = len(csms.received)
    await _sim(with_csms, "power-fail")
    stop = await csms.wait_for("StopTransaction", after=mark, timeout_s=20)
    assert stop["reason"] == "PowerLoss"
    faulted = await _status_after(csms, mark, "Faulted", errorCode="OtherError")
    assert faulted["info"] == "power_fail"  # type: ignore[index]
    status = await asyncio.to_thread(with_csms.status)
    assert status["power_fail"] is True
    assert status["connectors"][0]["contactor_closed"] is False
    mark = len(csms.received)
    await _sim(with_csms, "fault", "clear")  # the supply is back
    await _status_after(csms, mark, "Finishing", errorCode="NoError")


async def test_an_unwritable_state_database_faults_with_internal_error_and_recovers(
    with_csms: CliSim, csms: LocalCsms
) -> None:
    mark = len(csms.received)
    await _sim(with_csms, "fault", "storage")
    await _status_after(csms, mark, "Faulted", errorCode="InternalError")
    mark = len(csms.received)
    await _sim(with_csms, "fault", "clear")
    # the durability watch probes every 10 s
    await _status_after(csms, mark, "Available", errorCode="NoError")


# --- the docs page matches the code -----------------------------------------------------------

DOCS = (ROOT / "docs" / "simulator.md").read_text()


def _sim_actions() -> list[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    sim = commands.choices["sim"]  # type: ignore[index]
    actions = next(a for a in sim._actions if a.dest == "action")
    return sorted(actions.choices)  # type: ignore[arg-type]


def test_every_action_and_fault_is_documented() -> None:
    for action in _sim_actions():
        assert f"| `{action}" in DOCS, action
    for fault in FAULTS:
        assert f"| `{fault}` |" in DOCS or fault == "clear", fault
    assert "| `fault clear` |" in DOCS
    assert set(FAULTS) == SIM_HARDWARE_FAULTS


def test_every_status_field_is_documented(two_connectors: CliSim) -> None:
    status = two_connectors.status()
    for key in [*status, *status["connectors"][0], *status["connectors"][0]["meter"]]:
        assert f"`{key}`" in DOCS, key


# --- the connector lock ---------------------------------------------------------------------


async def _station(tmp_path: Path, csms: LocalCsms, *extra: str) -> CliSim:
    preset = tmp_path / "keys.toml"
    preset.write_text(FAST_KEYS)
    args = ["--csms", csms.url, "--id", "cp-lock", "--ocpp-keys", str(preset), *extra]
    sim = CliSim(tmp_path / "state", args)
    await asyncio.to_thread(sim.start)
    await _status_after(csms, 0, "Available")
    return sim


async def _session(sim: CliSim, csms: LocalCsms) -> None:
    await _sim(sim, "plug")
    await _sim(sim, "tap", CARD)
    await csms.wait_for("StartTransaction", timeout_s=20)
    await asyncio.to_thread(
        sim.wait_for, lambda s: s["connectors"][0]["contactor_closed"], 20, "charging"
    )


async def test_the_socket_is_locked_while_a_session_runs_and_unlock_connector_releases_it(
    tmp_path: Path, csms: LocalCsms
) -> None:
    sim = await _station(tmp_path, csms)
    try:
        await _session(sim, csms)
        assert (await asyncio.to_thread(sim.connector))["lock_engaged"] is True
        mark = len(csms.received)
        answer = await csms.call("cp-lock", call.UnlockConnector(connector_id=1))
        assert answer.status == "Unlocked"
        stop = await csms.wait_for("StopTransaction", after=mark, timeout_s=20)
        assert stop["reason"] == "UnlockCommand"
        connector = await asyncio.to_thread(sim.connector)
        assert connector["lock_engaged"] is False and connector["contactor_closed"] is False
    finally:
        assert await asyncio.to_thread(sim.stop) == 0, sim.log()


async def test_a_lock_that_fails_to_lock_keeps_the_contactor_open(
    tmp_path: Path, csms: LocalCsms
) -> None:
    sim = await _station(tmp_path, csms)
    try:
        await _sim(sim, "fault", "lock")
        mark = len(csms.received)
        await _sim(sim, "plug")
        await _sim(sim, "tap", CARD)
        await _status_after(csms, mark, "Faulted", errorCode="ConnectorLockFailure")
        connector = await asyncio.to_thread(sim.connector)
        assert connector["contactor_closed"] is False and connector["ev_current_a"] == 0.0
        assert not [
            p for p in csms.received[mark:] if p.action == "StatusNotification"
            and p.payload["status"] == "Charging"
        ]  # fmt: skip
    finally:
        assert await asyncio.to_thread(sim.stop) == 0, sim.log()


async def test_a_jammed_lock_answers_unlock_failed(tmp_path: Path, csms: LocalCsms) -> None:
    sim = await _station(tmp_path, csms)
    try:
        await _session(sim, csms)
        await _sim(sim, "fault", "lock")  # jammed in the locked position
        answer = await csms.call("cp-lock", call.UnlockConnector(connector_id=1))
        assert answer.status == "UnlockFailed"
    finally:
        assert await asyncio.to_thread(sim.stop) == 0, sim.log()


async def test_a_tethered_cable_charges_without_a_lock_and_unlock_is_not_supported(
    tmp_path: Path, csms: LocalCsms
) -> None:
    sim = await _station(tmp_path, csms, "--sim-cable", "tethered")
    try:
        await _session(sim, csms)
        connector = await asyncio.to_thread(sim.connector)
        assert connector["cable"] == "tethered" and connector["lock_engaged"] is None
        answer = await csms.call("cp-lock", call.UnlockConnector(connector_id=1))
        assert answer.status == "NotSupported"
        result = await asyncio.to_thread(sim.sim, "fault", "lock")
        assert result.returncode == 1 and "no lock" in result.stderr
    finally:
        assert await asyncio.to_thread(sim.stop) == 0, sim.log()
