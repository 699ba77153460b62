"""The sysfs PWM driver against a simulated /sys/class/pwm tree."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.errors import ConfigurationError, FaultKind, PermanentFault
from drivers.pwm_sysfs import SysfsPwm, find_chip
from hw_sim.pwm_sysfs import SimPwmSysfs
from tests.support.wait import until_sync

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimPwmSysfs]:
    sim = SimPwmSysfs(tmp_path, chip=0, channels=2)
    yield sim
    sim.close()
    assert not any(t.name.startswith("sim-pwmchip") for t in threading.enumerate())


def _export_by_hand(sim: SimPwmSysfs, channel: int) -> None:
    (sim.chip_dir / "export").write_text(f"{channel}\n")
    until_sync(lambda: sim.exported(channel), 1.0, what="the simulated kernel to export")


def test_opening_exports_the_channel_at_1khz_and_holds_state_f(sim: SimPwmSysfs) -> None:
    assert not sim.exported(0)
    pwm = SysfsPwm(sim.root, chip=0, channel=0)
    assert sim.exported(0)
    assert sim.period_ns(0) == 1_000_000
    assert sim.duty_cycle_ns(0) == 0  # logical 0 %: steady -12 V behind the stage
    assert sim.enabled(0)
    assert pwm.duty_pct == 0.0
    pwm.close()


def test_duty_is_written_in_whole_ns_rounded_down(sim: SimPwmSysfs) -> None:
    pwm = SysfsPwm(sim.root, channel=1)
    pwm.set_duty_pct(100 * 32 / 0.6 / 100)  # 53.333 %: 32 A
    assert sim.duty_cycle_ns(1) == 533_333
    pwm.set_duty_pct(100.0)
    assert sim.duty_cycle_ns(1) == 1_000_000
    assert sim.output_pct(1) == 100.0
    pwm.close()


def test_inverting_stage_gets_the_complementary_duty(sim: SimPwmSysfs) -> None:
    pwm = SysfsPwm(sim.root, channel=0, inverted=True)
    assert sim.duty_cycle_ns(0) == 1_000_000  # pin high = -12 V behind an inverting stage
    pwm.set_duty_pct(53.3)
    assert sim.duty_cycle_ns(0) == 467_000
    assert pwm.duty_pct == 53.3
    pwm.close()
    assert sim.duty_cycle_ns(0) == 1_000_000
    assert sim.enabled(0)


def test_close_leaves_a_steady_state_f_level_and_is_idempotent(sim: SimPwmSysfs) -> None:
    pwm = SysfsPwm(sim.root, channel=0)
    pwm.set_duty_pct(26.7)
    pwm.close()
    pwm.close()
    assert sim.duty_cycle_ns(0) == 0
    assert sim.enabled(0), "a disabled channel would leave the pin to the controller's idle"
    with pytest.raises(RuntimeError):
        pwm.set_duty_pct(50.0)


def test_unchanged_duty_does_not_touch_sysfs(sim: SimPwmSysfs) -> None:
    pwm = SysfsPwm(sim.root, channel=0)
    pwm.set_duty_pct(40.0)
    duty_file = sim.channel_dir(0) / "duty_cycle"
    duty_file.write_text("123\n")  # a write would overwrite this marker
    pwm.set_duty_pct(40.0)
    assert duty_file.read_text() == "123\n"
    pwm.close()


def test_an_already_exported_channel_is_reused_and_polarity_reset(sim: SimPwmSysfs) -> None:
    _export_by_hand(sim, 1)
    (sim.channel_dir(1) / "polarity").write_text("inversed\n")
    (sim.channel_dir(1) / "period").write_text("20000000\n")
    (sim.channel_dir(1) / "duty_cycle").write_text("15000000\n")
    pwm = SysfsPwm(sim.root, channel=1)
    assert sim.polarity(1) == "normal"
    assert sim.period_ns(1) == 1_000_000
    assert sim.duty_pct(1) == 0.0
    pwm.close()


def test_out_of_range_duty_is_refused(sim: SimPwmSysfs) -> None:
    pwm = SysfsPwm(sim.root, channel=0)
    for bad in (-0.1, 100.1, float("nan")):
        with pytest.raises(ValueError):
            pwm.set_duty_pct(bad)
    assert sim.duty_cycle_ns(0) == 0
    pwm.close()


def test_a_failing_duty_write_is_a_cp_fault(sim: SimPwmSysfs) -> None:
    pwm = SysfsPwm(sim.root, channel=0)
    duty_file = sim.channel_dir(0) / "duty_cycle"
    duty_file.unlink()
    duty_file.mkdir()  # even root cannot open a directory for writing
    with pytest.raises(PermanentFault) as caught:
        pwm.set_duty_pct(50.0)
    assert caught.value.kind is FaultKind.CP_ERROR
    duty_file.rmdir()
    duty_file.write_text("0\n")
    pwm.close()


def test_the_only_chip_is_found_by_looking(sim: SimPwmSysfs) -> None:
    assert find_chip(sim.root) == 0
    pwm = SysfsPwm(sim.root, chip=None, channel=0)
    assert pwm.path == sim.channel_dir(0)
    pwm.close()


def test_no_chip_or_several_chips_need_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as none:
        find_chip(tmp_path)
    assert none.value.key == "pwm_chip"
    with SimPwmSysfs(tmp_path, chip=0), SimPwmSysfs(tmp_path, chip=2):
        with pytest.raises(ConfigurationError) as several:
            SysfsPwm(tmp_path, chip=None)
        assert several.value.key == "pwm_chip"
        assert "pwmchip0, pwmchip2" in several.value.problem


def test_missing_chip_and_missing_channel_name_their_keys(sim: SimPwmSysfs) -> None:
    with pytest.raises(ConfigurationError) as chip:
        SysfsPwm(sim.root, chip=3)
    assert chip.value.key == "pwm_chip"
    with pytest.raises(ConfigurationError) as channel:
        SysfsPwm(sim.root, chip=0, channel=2)
    assert channel.value.key == "pwm_channel"
    assert "0-1" in channel.value.problem


def test_export_that_never_appears_times_out(tmp_path: Path) -> None:
    chip = tmp_path / "pwmchip0"
    chip.mkdir()
    (chip / "npwm").write_text("2\n")
    (chip / "export").write_text("")  # a plain file: nobody creates pwm0/
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        SysfsPwm(tmp_path, chip=0, channel=0, export_timeout_s=0.05)
    assert caught.value.key == "pwm_channel"
    assert "not writable" in caught.value.problem
    assert time.monotonic() - started < 1.0


def test_export_without_a_kernel_listening_fails_fast(tmp_path: Path) -> None:
    sim = SimPwmSysfs(tmp_path)
    sim.close()  # the pipe has no reader now: a non-blocking open gets ENXIO
    with pytest.raises(ConfigurationError) as caught:
        SysfsPwm(tmp_path, chip=0, channel=0)
    assert caught.value.key == "pwm_channel"


def test_sim_reports_what_the_kernel_would_refuse(sim: SimPwmSysfs) -> None:
    _export_by_hand(sim, 0)
    (sim.channel_dir(0) / "period").write_text("1000\n")
    (sim.channel_dir(0) / "duty_cycle").write_text("2000\n")
    with pytest.raises(ValueError, match="kernel refuses"):
        sim.duty_pct(0)


def test_sim_pin_is_low_while_disabled_and_unexport_removes_the_channel(
    sim: SimPwmSysfs,
) -> None:
    _export_by_hand(sim, 0)
    (sim.channel_dir(0) / "period").write_text("1000000\n")
    (sim.channel_dir(0) / "duty_cycle").write_text("500000\n")
    assert sim.duty_pct(0) == 50.0
    assert sim.output_pct(0) == 0.0  # enable is still 0
    fd = os.open(sim.chip_dir / "unexport", os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"0\n")
    os.close(fd)
    until_sync(lambda: not sim.exported(0), 1.0, what="the simulated kernel to unexport")
    assert sim.output_pct(0) == 0.0


def test_a_pin_read_between_a_drivers_truncate_and_write_shows_the_old_duty(
    sim: SimPwmSysfs,
) -> None:
    """A kernel attribute never reads empty: while a driver's ``echo`` has truncated the
    plain file and not yet written it (its thread preempted on a loaded machine), the
    simulated pin keeps the duty it had, on the car's and ADC's threads alike."""
    pwm = SysfsPwm(sim.root, channel=0)
    pwm.set_duty_pct(50.0)
    assert sim.output_pct(0) == 50.0
    fd = os.open(sim.channel_dir(0) / "duty_cycle", os.O_WRONLY | os.O_TRUNC)  # mid-write
    try:
        assert sim.output_pct(0) == 50.0
    finally:
        os.write(fd, b"250000\n")
        os.close(fd)
    assert sim.output_pct(0) == 25.0
    pwm.close()
