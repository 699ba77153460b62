"""The ADS1115 driver against the simulated chip on the simulated I2C bus, register by register."""

from __future__ import annotations

import threading
import time

import pytest

from drivers.ads1115 import Ads1115, single_shot_config
from drivers.errors import TransientError
from hw_sim.ads1115 import SimAds1115
from hw_sim.smbus import SimSMBus

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests


class Recorder:
    """Sits between the bus and the chip and keeps every write transaction."""

    def __init__(self, chip: SimAds1115) -> None:
        self.chip = chip
        self.writes: list[bytes] = []

    def i2c_write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.chip.i2c_write(data)

    def i2c_read(self, length: int) -> bytes:
        return self.chip.i2c_read(length)


def _bus_with(inputs: dict[int, float]) -> tuple[SimSMBus, SimAds1115]:
    chip = SimAds1115(lambda channel: inputs[channel])
    bus = SimSMBus()
    bus.attach(0x48, chip)
    return bus, chip


def test_a_conversion_writes_the_datasheet_config_word_msb_first() -> None:
    chip = SimAds1115(lambda channel: 1.0)
    recorder = Recorder(chip)
    bus = SimSMBus()
    bus.attach(0x48, recorder)
    adc = Ads1115(bus)
    adc.read_raw(2)
    # OS=1, MUX=110 (AIN2-GND), PGA=001 (4.096 V), MODE=1, DR=111 (860 SPS), COMP_QUE=11
    assert recorder.writes[0] == bytes([0x01, 0xE3, 0xE3])
    assert single_shot_config(0, 1, 7) == 0xC3E3
    # then pointer-only writes for the reads of config (0x01) and conversion (0x00)
    assert recorder.writes[-1] == bytes([0x00])
    assert all(len(w) == 1 for w in recorder.writes[1:])


@pytest.mark.parametrize(
    ("full_scale_v", "input_v", "expected_raw"),
    [
        (6.144, 1.0, 5333),
        (4.096, 1.0, 8000),
        (4.096, 3.3, 26400),
        (2.048, 1.0, 16000),
        (1.024, 0.5, 16000),
        (0.512, 0.1, 6400),
        (0.256, 0.1, 12800),
        (4.096, -0.05, -400),
    ],
)
def test_codes_and_volts_follow_the_pga_range(
    full_scale_v: float, input_v: float, expected_raw: int
) -> None:
    bus, _ = _bus_with({0: input_v})
    adc = Ads1115(bus, full_scale_v=full_scale_v)
    assert adc.read_raw(0) == expected_raw
    assert adc.read_volts(0) == pytest.approx(input_v, abs=full_scale_v / 32768)


def test_inputs_beyond_the_pga_range_saturate() -> None:
    bus, _ = _bus_with({0: 3.3, 1: -0.3})
    adc = Ads1115(bus, full_scale_v=2.048)
    high = adc.read_raw(0)
    assert high == 0x7FFF and Ads1115.saturated(high)
    narrow = Ads1115(bus, full_scale_v=0.256)
    low = narrow.read_raw(1)
    assert low == -0x8000 and Ads1115.saturated(low)
    assert not Ads1115.saturated(adc.read_raw(1) + 1)


def test_each_channel_reads_its_own_input() -> None:
    bus, _ = _bus_with({0: 0.5, 1: 1.0, 2: 1.5, 3: 2.0})
    adc = Ads1115(bus)
    assert [round(adc.read_volts(ch), 3) for ch in range(4)] == [0.5, 1.0, 1.5, 2.0]


def test_stuck_codes_come_through_msb_first_and_signed() -> None:
    bus, chip = _bus_with({0: 1.0})
    adc = Ads1115(bus)
    chip.set_stuck(0x1234)
    assert adc.read_raw(0) == 0x1234
    chip.set_stuck(-2)
    assert adc.read_raw(0) == -2
    chip.set_stuck(None)
    assert adc.read_raw(0) == 8000


def test_a_read_waits_for_the_conversion_time() -> None:
    bus, _ = _bus_with({0: 1.0})
    fast = Ads1115(bus, data_rate_sps=860)
    slow = Ads1115(bus, data_rate_sps=128)
    started = time.monotonic()
    fast.read_raw(0)
    fast_s = time.monotonic() - started
    started = time.monotonic()
    assert slow.read_raw(0) == 8000
    slow_s = time.monotonic() - started
    assert 1 / 860 <= fast_s < 0.02
    assert 1 / 128 <= slow_s < 0.05


def _config_looks(recorder: Recorder) -> int:
    """Reads of the config register (OS polls): a pointer write of 0x01 alone each."""
    return recorder.writes.count(bytes([0x01]))


class VirtualTime:
    """``time`` for the driver and the chip alike: sleeping advances it, nothing else does,
    so what the driver looks at when is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def test_a_chip_on_time_is_read_at_the_nominal_time_not_the_slowest_chips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One look at OS per conversion, after 1/860 s, not after the 10 % slower chip's time:
    the CP sampler needs three conversions to see C->B (drivers/pilot_sensor.py)."""
    virtual = VirtualTime()
    monkeypatch.setattr("drivers.ads1115.time", virtual)
    recorder = Recorder(SimAds1115(lambda channel: 1.0, clock=virtual.monotonic))
    bus = SimSMBus()
    bus.attach(0x48, recorder)
    adc = Ads1115(bus, data_rate_sps=860)
    for n in range(1, 6):
        started = virtual.now
        assert adc.read_raw(0) == 8000
        assert virtual.now - started == pytest.approx(1 / 860)
        assert _config_looks(recorder) == n


@pytest.mark.parametrize("slow_pct", [3, 8])
def test_a_slow_chip_costs_one_extra_look_once_then_its_time_is_known(
    monkeypatch: pytest.MonkeyPatch, slow_pct: int
) -> None:
    """A chip whose oscillator runs slow (the datasheet allows 10 %) is not done at the
    nominal time: the first conversion needs a second look, later ones do not."""
    virtual = VirtualTime()
    monkeypatch.setattr("drivers.ads1115.time", virtual)
    chip = SimAds1115(lambda channel: 1.0, clock=lambda: virtual.now * (1 - slow_pct / 100))
    recorder = Recorder(chip)
    bus = SimSMBus()
    bus.attach(0x48, recorder)
    adc = Ads1115(bus, data_rate_sps=860)
    assert adc.read_raw(0) == 8000
    assert _config_looks(recorder) == 2
    for n in range(1, 6):
        assert adc.read_raw(0) == 8000
        assert _config_looks(recorder) == 2 + n


def test_a_conversion_that_never_finishes_is_a_transient_error_after_a_bounded_wait() -> None:
    frozen = SimAds1115(lambda channel: 1.0, clock=lambda: 100.0)  # time stands still
    bus = SimSMBus()
    bus.attach(0x48, frozen)
    adc = Ads1115(bus)
    started = time.monotonic()
    with pytest.raises(TransientError, match="not done"):
        adc.read_raw(0)
    assert time.monotonic() - started < 0.05


def test_bus_errors_become_transient_errors_and_reads_recover() -> None:
    bus, chip = _bus_with({0: 1.0})
    adc = Ads1115(bus)
    chip.set_nack(True)
    with pytest.raises(TransientError, match="AIN0"):
        adc.read_raw(0)
    chip.set_nack(False)
    assert adc.read_raw(0) == 8000
    missing = Ads1115(bus, 0x49)  # nothing at that address: Linux says EREMOTEIO
    with pytest.raises(TransientError):
        missing.read_raw(0)


def test_concurrent_readers_do_not_mix_up_conversions() -> None:
    bus, _ = _bus_with({0: 0.5, 2: 2.5})
    adc = Ads1115(bus)
    results: dict[int, set[int]] = {0: set(), 2: set()}

    def reader(channel: int) -> None:
        for _ in range(15):
            results[channel].add(adc.read_raw(channel))

    threads = [threading.Thread(target=reader, args=(ch,)) for ch in (0, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: {4000}, 2: {20000}}


def test_closed_driver_refuses_to_read_and_close_is_idempotent() -> None:
    bus, _ = _bus_with({0: 1.0})
    adc = Ads1115(bus)
    adc.close()
    adc.close()
    with pytest.raises(TransientError, match="closed"):
        adc.read_raw(0)


def test_bad_settings_are_refused() -> None:
    bus, _ = _bus_with({})
    with pytest.raises(ValueError):
        Ads1115(bus, 0x50)
    with pytest.raises(ValueError):
        Ads1115(bus, full_scale_v=5.0)
    with pytest.raises(ValueError):
        Ads1115(bus, data_rate_sps=1000)
    with pytest.raises(ValueError):
        Ads1115(bus).read_raw(4)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _reg(chip: SimAds1115, register: int) -> int:
    chip.i2c_write(bytes([register]))
    data = chip.i2c_read(2)
    return data[0] << 8 | data[1]


def test_sim_chip_registers_behave_as_the_datasheet() -> None:
    clock = FakeClock()
    volts = {0: 1.0}
    chip = SimAds1115(lambda channel: volts[channel], clock=clock)
    assert _reg(chip, 0x01) == 0x8583  # power-on config, idle
    assert _reg(chip, 0x02) == 0x8000 and _reg(chip, 0x03) == 0x7FFF
    chip.i2c_write(bytes([0x01, 0xC3, 0xE3]))  # start AIN0 at 860 SPS
    assert not _reg(chip, 0x01) & 0x8000  # converting
    assert _reg(chip, 0x00) == 0  # previous result until the conversion completes
    volts[0] = 2.0  # too late: the input was sampled at the start
    clock.now += 1 / 860
    assert _reg(chip, 0x01) == 0xC3E3
    assert _reg(chip, 0x00) == 8000
    chip.i2c_write(bytes([0x00, 0x12, 0x34]))  # the conversion register is read-only
    assert _reg(chip, 0x00) == 8000
    chip.i2c_write(bytes([0x01]))
    assert chip.i2c_read(3) == bytes([0xC3, 0xE3, 0xFF])


def test_sim_chip_continuous_mode_and_differential_inputs() -> None:
    volts = {0: 1.5, 1: 0.5, 2: 0.0, 3: 1.0}
    chip = SimAds1115(lambda channel: volts[channel])
    chip.i2c_write(bytes([0x01, 0x02, 0xE3]))  # MUX=000 (AIN0-AIN1), PGA 4.096, MODE=0
    assert _reg(chip, 0x00) == 8000
    volts[0] = 2.5
    assert _reg(chip, 0x00) == 16000
    chip.i2c_write(bytes([0x01, 0x32, 0xE3]))  # MUX=011 (AIN2-AIN3)
    assert _reg(chip, 0x00) == (-8000) & 0xFFFF
    with pytest.raises(ValueError):
        chip.set_stuck(0x10000)
