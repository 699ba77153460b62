"""PN532 driver: real pyserial against a pty (HSU) and the real driver against SimSMBus (I2C)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import SMBusLike
from drivers.errors import ConfigurationError, FaultKind
from drivers.rfid_pn532 import (
    Pn532Reader,
    PresenceTracker,
    from_config,
    uid_from_target_list,
)
from drivers.rfid_pn532_frame import (
    ACK_FRAME,
    CMD_GET_FIRMWARE_VERSION,
    CMD_IN_LIST_PASSIVE_TARGET,
    CMD_RF_CONFIGURATION,
    CMD_SAM_CONFIGURATION,
    ERROR_FRAME,
    NACK_FRAME,
    Frame,
    FrameKind,
    FrameParser,
    Pn532FrameError,
    encode_command,
    encode_frame,
    encode_response,
    response_params,
)
from drivers.rfid_pn532_transport import (
    HSU_WAKEUP,
    Pn532I2cTransport,
    Pn532Transport,
    Pn532UartTransport,
)
from drivers.seams import HardwareSeams
from hw_sim.rfid import Pn532Chip, SimPn532I2c, SimPn532Uart
from hw_sim.smbus import SimSMBus
from tests.support.card_reader import Harness
from tests.support.wait import until

UIDS = {
    4: bytes.fromhex("de ad be ef"),
    7: bytes.fromhex("04 a1 b2 c3 d4 e5 f6"),
    10: bytes.fromhex("08 11 22 33 44 55 66 77 88 99"),
}


# ---- fixtures and helpers ----------------------------------------------------------------


@dataclass
class Rig:
    """A simulated PN532 and the driver transport wired to it."""

    sim: SimPn532Uart | SimPn532I2c
    transport: Pn532Transport
    bus: SimSMBus | None = None

    @property
    def chip(self) -> Pn532Chip:
        return self.sim.chip


def _uart_rig() -> Rig:
    sim = SimPn532Uart()
    return Rig(sim, Pn532UartTransport(sim.port_path))


def _i2c_rig() -> Rig:
    bus = SimSMBus()
    sim = SimPn532I2c()
    sim.attach(bus)
    return Rig(sim, Pn532I2cTransport(lambda: bus), bus)


@pytest.fixture(params=["uart", "i2c"])
def rig(request: pytest.FixtureRequest, no_leaks: None) -> Iterator[Rig]:
    made = _uart_rig() if request.param == "uart" else _i2c_rig()
    yield made
    made.sim.close()


@pytest.fixture
def i2c_rig(no_leaks: None) -> Iterator[Rig]:
    made = _i2c_rig()
    yield made
    made.sim.close()


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Harness]]:
    harnesses: list[Harness] = []

    def _start(transport: Pn532Transport, **kwargs: Any) -> Harness:
        options: dict[str, Any] = {
            "poll_interval_s": 0.03,
            "response_timeout_s": 0.1,
            "retry_backoff_s": 0.05,
            "retry_backoff_max_s": 0.2,
        }
        options.update(kwargs)
        harnesses.append(Harness(Pn532Reader(transport, **options)))
        return harnesses[-1]

    yield _start
    for harness in harnesses:
        if not harness.task.done():
            await harness.stop()
        harness.reader.close()


async def polling(rig: Rig) -> None:
    """Wait until the driver initialised the chip and polls for cards."""
    await until(
        lambda: CMD_IN_LIST_PASSIVE_TARGET in rig.chip.received_commands, what="the first poll"
    )


# ---- frames ------------------------------------------------------------------------------


def test_pn532_command_frames_match_the_documented_bytes() -> None:
    assert encode_command(CMD_GET_FIRMWARE_VERSION) == bytes.fromhex("0000ff02fed4022a00")
    assert encode_command(CMD_SAM_CONFIGURATION, b"\x01\x14\x01") == bytes.fromhex(
        "0000ff05fbd41401140102 00".replace(" ", "")
    )
    firmware = encode_response(CMD_GET_FIRMWARE_VERSION, bytes([0x32, 0x01, 0x06, 0x07]))
    assert firmware == bytes.fromhex("0000ff06fad50332010607e800")
    assert firmware.startswith(bytes.fromhex("0000ff06fad5"))  # Adafruit's header check


def test_pn532_parser_tells_ack_nack_error_and_information_frames_apart() -> None:
    parser = FrameParser()
    parser.feed(ACK_FRAME + NACK_FRAME + ERROR_FRAME + encode_response(0x14))
    assert parser.next_frame() == Frame(FrameKind.ACK)
    assert parser.next_frame() == Frame(FrameKind.NACK)
    error = parser.next_frame()
    assert error == Frame(FrameKind.INFO, tfi=0x7F)
    sam = parser.next_frame()
    assert sam == Frame(FrameKind.INFO, tfi=0xD5, data=b"\x15")
    assert parser.next_frame() is None
    assert error is not None and sam is not None
    assert response_params(sam, 0x14) == b""
    with pytest.raises(Pn532FrameError, match="error frame"):
        response_params(error, 0x14)
    with pytest.raises(Pn532FrameError, match="expected D5 4B"):
        response_params(sam, CMD_IN_LIST_PASSIVE_TARGET)


def test_pn532_start_code_with_a_bad_length_checksum_is_skipped_as_noise() -> None:
    good = encode_response(CMD_GET_FIRMWARE_VERSION, bytes([0x32, 1, 6, 7]))
    bad_lcs = good[:4] + bytes([good[4] ^ 0x01]) + good[5:]
    parser = FrameParser()
    parser.feed(bad_lcs + b"\xff" + good)  # also: postamble 00 + noise FF looks like 00 FF
    frame = parser.next_frame()
    assert frame is not None and frame.data == bytes([0x03, 0x32, 1, 6, 7])
    assert parser.bad_headers == 2
    assert parser.next_frame() is None


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda f: f[:-2] + bytes([f[-2] ^ 0x01, 0]), "data checksum"),
        (lambda f: f[:-3] + bytes([f[-3] ^ 0x40]) + f[-2:], "data checksum"),
        (lambda f: bytes.fromhex("0000ffffff0003fd"), "extended frame"),
    ],
    ids=["dcs", "data-bit", "extended"],
)
def test_pn532_damaged_frame_raises_and_the_parser_resumes_behind_it(
    damage: Callable[[bytes], bytes], problem: str
) -> None:
    good = encode_response(CMD_GET_FIRMWARE_VERSION, bytes([0x32, 1, 6, 7]))
    parser = FrameParser()
    parser.feed(damage(good) + good)
    with pytest.raises(Pn532FrameError, match=problem):
        while parser.next_frame() is not None:
            pass
    frame = parser.next_frame()
    assert frame is not None and frame.data == bytes([0x03, 0x32, 1, 6, 7])


@given(
    tfi=st.sampled_from([0xD4, 0xD5]),
    data=st.binary(min_size=1, max_size=253),
    # Noise without 00 or FF cannot form a start code; the postamble plus FF is tested above.
    noise=st.binary(max_size=20).filter(lambda b: 0x00 not in b and 0xFF not in b),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
)
def test_pn532_frames_round_trip_through_noise_and_any_split(
    tfi: int, data: bytes, noise: bytes, cuts: list[int]
) -> None:
    frame = encode_frame(tfi, data)
    length, lcs = frame[3], frame[4]
    assert (length + lcs) & 0xFF == 0
    assert (sum(frame[5:-1])) & 0xFF == 0  # TFI + data + DCS
    stream = noise + frame + noise + frame
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    parser = FrameParser()
    frames: list[Frame] = []
    for begin, end in itertools.pairwise(bounds):
        parser.feed(stream[begin:end])
        while (found := parser.next_frame()) is not None:
            frames.append(found)
    assert frames == [Frame(FrameKind.INFO, tfi=tfi, data=data)] * 2


def test_pn532_target_list_gives_the_uid_or_none() -> None:
    assert uid_from_target_list(b"\x00") is None
    target = bytes.fromhex("01 01 00 44 00 07") + UIDS[7] + b"\x99"  # trailing ATS byte
    assert uid_from_target_list(target) == UIDS[7]
    for bad in (b"", bytes.fromhex("01 01 00 04 08 05 01 02 03 04 05"), bytes.fromhex("0101")):
        with pytest.raises(Pn532FrameError):
            uid_from_target_list(bad)


def test_pn532_card_must_be_absent_for_removal_polls_before_it_counts_again() -> None:
    tracker = PresenceTracker(removal_polls=2)
    polls = ["A", "A", None, "A", None, None, "A", "B", "A"]
    assert [tracker.update(uid) for uid in polls] == [
        True,
        False,
        False,
        False,  # one empty poll is a flicker, not a removal
        False,
        False,
        True,  # absent for two polls: a new presentation
        True,
        True,
    ]


# ---- the chip model ----------------------------------------------------------------------


def _drain(chip: Pn532Chip) -> list[bytes]:
    out = []
    while (frame := chip.next_output(consume=True)) is not None:
        out.append(frame)
    return out


def test_sim_pn532_on_hsu_ignores_commands_until_the_wakeup_preamble() -> None:
    chip = Pn532Chip()
    chip.receive_hsu(encode_command(CMD_GET_FIRMWARE_VERSION))
    assert _drain(chip) == []
    chip.receive_hsu(HSU_WAKEUP[:1])
    chip.receive_hsu(HSU_WAKEUP[1:] + encode_command(CMD_GET_FIRMWARE_VERSION))
    assert _drain(chip) == [
        ACK_FRAME,
        encode_response(CMD_GET_FIRMWARE_VERSION, bytes([0x32, 1, 6, 7])),
    ]


def test_sim_pn532_waits_for_a_card_until_passive_retries_are_limited() -> None:
    chip = Pn532Chip()
    chip.receive_i2c_write(encode_command(CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00"))
    assert _drain(chip) == [ACK_FRAME]  # MxRtyPassiveActivation 0xFF: waits for a card
    chip.present(UIDS[4], hold_s=None)
    target = bytes.fromhex("01 01 00 04 08 04") + UIDS[4]
    assert _drain(chip) == [encode_response(CMD_IN_LIST_PASSIVE_TARGET, target)]
    chip.remove()
    chip.receive_i2c_write(encode_command(CMD_RF_CONFIGURATION, b"\x05\xff\x01\x01"))
    chip.receive_i2c_write(encode_command(CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00"))
    assert _drain(chip)[-1] == encode_response(CMD_IN_LIST_PASSIVE_TARGET, b"\x00")


def test_sim_pn532_i2c_status_read_does_not_consume_the_answer() -> None:
    device = SimPn532I2c()
    assert device.i2c_read(1) == b"\x00"  # nothing pending: busy
    device.i2c_write(encode_command(CMD_GET_FIRMWARE_VERSION))
    assert device.i2c_read(1) == b"\x01"
    assert device.i2c_read(7) == b"\x01" + ACK_FRAME
    response = device.i2c_read(20)
    assert response[0] == 0x01
    assert response[1:14] == encode_response(CMD_GET_FIRMWARE_VERSION, bytes([0x32, 1, 6, 7]))
    assert device.i2c_read(4) == bytes(4)


@pytest.mark.parametrize("length", [0, 1, 3, 5, 6, 8, 11])
def test_sim_pn532_rejects_uids_that_are_not_4_7_or_10_bytes(length: int) -> None:
    with pytest.raises(ValueError, match="4, 7 or 10 bytes"):
        SimPn532I2c().present(bytes(length))


def test_sim_pn532_rejects_a_non_positive_hold_time() -> None:
    with pytest.raises(ValueError, match="hold_s"):
        Pn532Chip().present(UIDS[4], hold_s=0)


# ---- the driver against the simulated chip -----------------------------------------------


@pytest.mark.parametrize("length", [4, 7, 10])
async def test_pn532_reads_a_uid_once_per_presentation(
    rig: Rig, start: Callable[..., Harness], length: int
) -> None:
    harness = start(rig.transport)
    await polling(rig)
    rig.sim.present(UIDS[length], hold_s=0.25)  # about eight polls see it
    await until(lambda: harness.cards != [], what="the card")
    # the card stays 0.25 s: every later poll sees it, none may report it again
    await asyncio.sleep(0.3)
    assert harness.cards == [UIDS[length].hex().upper()]
    assert harness.events == []


async def test_pn532_start_up_configures_sam_checks_firmware_and_limits_retries(
    rig: Rig, start: Callable[..., Harness]
) -> None:
    harness = start(rig.transport)
    await polling(rig)
    assert rig.chip.received_commands[:4] == [
        CMD_SAM_CONFIGURATION,
        CMD_GET_FIRMWARE_VERSION,
        CMD_RF_CONFIGURATION,
        CMD_IN_LIST_PASSIVE_TARGET,
    ]
    assert harness.reader.firmware == (0x32, 0x01, 0x06, 0x07)


async def test_pn532_card_taken_away_and_presented_again_counts_twice(
    rig: Rig, start: Callable[..., Harness]
) -> None:
    harness = start(rig.transport)
    await polling(rig)
    rig.sim.present(UIDS[4], hold_s=None)
    await until(lambda: len(harness.cards) == 1, what="the first presentation")
    # the card is held a while (the hold is the point)
    await asyncio.sleep(0.15)
    rig.sim.remove()
    await asyncio.sleep(0.15)  # five polls, more than removal_polls
    rig.sim.present(UIDS[4], hold_s=None)
    await until(lambda: len(harness.cards) == 2, what="the second presentation")
    assert harness.cards == [UIDS[4].hex().upper()] * 2


async def test_pn532_garbled_answer_is_a_bad_frame_event_and_polling_goes_on(
    rig: Rig, start: Callable[..., Harness]
) -> None:
    harness = start(rig.transport)
    await polling(rig)
    rig.sim.inject_garbage()
    await until(lambda: harness.kinds() == ["bad_frame"], what="the bad-frame event")
    assert "checksum" in harness.events[0].detail
    rig.sim.present(UIDS[7], hold_s=0.2)
    await until(lambda: harness.cards == [UIDS[7].hex().upper()], what="the card")
    assert harness.kinds() == ["bad_frame"]


async def test_pn532_silent_chip_is_a_reader_failure_then_recovers(
    rig: Rig, start: Callable[..., Harness]
) -> None:
    harness = start(rig.transport, failure_threshold=3)
    await polling(rig)
    rig.sim.set_silent(True)
    await until(lambda: "reader_failure" in harness.kinds(), what="the reader failure")
    await asyncio.sleep(0.25)  # more failed attempts: no more events while failed
    assert harness.kinds() == ["timeout", "timeout", "timeout", "reader_failure"]
    assert harness.events[-1].fault is FaultKind.READER_FAILURE
    assert all(event.fault is None for event in harness.events[:-1])

    rig.sim.set_silent(False)
    await until(lambda: "recovered" in harness.kinds(), what="recovery")
    rig.sim.present(UIDS[10], hold_s=0.2)
    await until(lambda: harness.cards == [UIDS[10].hex().upper()], what="the card")
    assert harness.kinds()[-1] == "recovered"
    assert harness.events[-1].fault is None


async def test_pn532_that_lost_power_is_initialised_again_after_one_timeout(
    rig: Rig, start: Callable[..., Harness]
) -> None:
    harness = start(rig.transport)
    await polling(rig)
    rig.sim.power_cycle()  # HSU asleep again; passive retries back to "forever"
    await until(lambda: harness.kinds() == ["timeout"], what="the timeout")
    rig.sim.present(UIDS[4], hold_s=0.2)
    await until(lambda: harness.cards == [UIDS[4].hex().upper()], what="the card")
    assert harness.kinds() == ["timeout"]
    assert rig.chip.received_commands.count(CMD_SAM_CONFIGURATION) == 2


async def test_pn532_i2c_chip_that_stops_acknowledging_is_a_reader_failure(
    i2c_rig: Rig, start: Callable[..., Harness]
) -> None:
    assert i2c_rig.bus is not None and isinstance(i2c_rig.sim, SimPn532I2c)
    harness = start(i2c_rig.transport, failure_threshold=2)
    await polling(i2c_rig)
    i2c_rig.bus.detach(0x24)  # every transfer now fails with EREMOTEIO
    await until(lambda: "reader_failure" in harness.kinds(), what="the reader failure")
    assert harness.kinds() == ["io_error", "io_error", "reader_failure"]
    assert "0x24" in harness.events[0].detail
    i2c_rig.sim.attach(i2c_rig.bus)
    await until(lambda: "recovered" in harness.kinds(), what="recovery")


async def test_pn532_uart_port_that_vanished_is_reopened(
    no_leaks: None, tmp_path: Path, start: Callable[..., Harness]
) -> None:
    link = tmp_path / "ttyNFC"
    first = SimPn532Uart()
    second: SimPn532Uart | None = None
    try:
        link.symlink_to(first.port_path)
        harness = start(Pn532UartTransport(str(link)))
        await until(lambda: bool(first.chip.received_commands), what="the first command")
        first.close()  # the USB adapter is unplugged: its by-id link goes with it (and the
        link.unlink()  # pty number may be reused at once by any other process on the machine)
        await until(lambda: "reader_failure" in harness.kinds(), what="the reader failure")
        assert harness.kinds() == ["io_error", "io_error", "io_error", "reader_failure"]
        assert harness.events[-1].fault is FaultKind.READER_FAILURE
        second = SimPn532Uart()  # plugged back in
        link.symlink_to(second.port_path)
        await until(lambda: "recovered" in harness.kinds(), what="recovery")
        second.present(UIDS[7], hold_s=0.2)
        await until(lambda: harness.cards == [UIDS[7].hex().upper()], what="the card")
        assert harness.kinds()[4:] == ["recovered"]
        await harness.stop()
    finally:
        first.close()
        if second is not None:
            second.close()


async def test_pn532_chip_that_is_not_a_pn532_is_a_reader_failure(
    no_leaks: None, start: Callable[..., Harness]
) -> None:
    bus = SimSMBus()
    sim = SimPn532I2c(Pn532Chip(firmware=bytes([0x31, 0x01, 0x04, 0x07])))
    sim.attach(bus)
    try:
        harness = start(Pn532I2cTransport(lambda: bus), failure_threshold=2)
        await until(lambda: "reader_failure" in harness.kinds(), what="the reader failure")
        assert harness.kinds() == ["bad_frame", "bad_frame", "reader_failure"]
        assert "not a PN532" in harness.events[-1].detail
    finally:
        sim.close()


# ---- configuration -----------------------------------------------------------------------


class CountingOpener:
    """An ``open_i2c_bus`` seam that hands out one SimSMBus and records the bus numbers."""

    def __init__(self, bus: SimSMBus) -> None:
        self.bus = bus
        self.opened: list[int] = []

    def __call__(self, number: int) -> SMBusLike:
        self.opened.append(number)
        return self.bus


def test_pn532_uart_config_defaults() -> None:
    reader = from_config({"type": "pn532_uart"}, HardwareSeams())
    transport = reader.transport
    assert isinstance(transport, Pn532UartTransport)
    assert (transport.port, transport.baudrate) == ("/dev/serial0", 115200)
    assert (reader.poll_interval_s, reader.removal_polls) == (0.2, 2)
    assert (reader.response_timeout_s, reader.failure_threshold) == (0.5, 3)


def test_pn532_i2c_config_opens_the_bus_only_when_run_starts() -> None:
    opener = CountingOpener(SimSMBus())
    reader = from_config(
        {"type": "pn532_i2c", "i2c_bus": 3, "i2c_address": 0x25, "poll_interval_s": 0.1},
        HardwareSeams(open_i2c_bus=opener),
    )
    transport = reader.transport
    assert isinstance(transport, Pn532I2cTransport)
    assert transport.address == 0x25
    assert reader.poll_interval_s == 0.1
    assert opener.opened == []


async def test_pn532_i2c_reader_built_from_config_reads_a_card_and_closes_its_bus(
    no_leaks: None,
) -> None:
    bus = SimSMBus()
    sim = SimPn532I2c()
    sim.attach(bus)
    opener = CountingOpener(bus)
    reader = from_config(
        {"type": "pn532_i2c", "poll_interval_s": 0.03, "response_timeout_s": 0.1},
        HardwareSeams(open_i2c_bus=opener),
    )
    cards: list[str] = []
    task = asyncio.create_task(reader.run(cards.append, print))
    try:
        sim.present(UIDS[4], hold_s=0.3)
        await until(lambda: cards == [UIDS[4].hex().upper()], what="the card")
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        sim.close()
    assert opener.opened == [1]
    assert bus.closed


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({}, "rfid.type"),
        ({"type": "pn532_spi"}, "rfid.type"),
        ({"type": "pn532_uart", "baudrate": 300}, "rfid.baudrate"),
        ({"type": "pn532_uart", "serial_port": ""}, "rfid.serial_port"),
        ({"type": "pn532_uart", "i2c_bus": 1}, "rfid.i2c_bus"),
        ({"type": "pn532_i2c", "baudrate": 115200}, "rfid.baudrate"),
        ({"type": "pn532_i2c", "i2c_bus": "1"}, "rfid.i2c_bus"),
        ({"type": "pn532_i2c", "i2c_address": 0x80}, "rfid.i2c_address"),
        ({"type": "pn532_i2c", "i2c_address": True}, "rfid.i2c_address"),
        ({"type": "pn532_i2c", "poll_interval_s": 0}, "rfid.poll_interval_s"),
        ({"type": "pn532_i2c", "poll_interval_s": "fast"}, "rfid.poll_interval_s"),
        ({"type": "pn532_i2c", "removal_polls": 0}, "rfid.removal_polls"),
        ({"type": "pn532_i2c", "removal_polls": 1.5}, "rfid.removal_polls"),
        ({"type": "pn532_i2c", "response_timeout_s": float("inf")}, "rfid.response_timeout_s"),
        ({"type": "pn532_i2c", "failure_threshold": 0}, "rfid.failure_threshold"),
        ({"type": "pn532_i2c", "retry_backoff_max_s": 0.1}, "rfid.retry_backoff_max_s"),
        ({"type": "pn532_i2c", "pol_interval_s": 0.1}, "rfid.pol_interval_s"),
    ],
)
def test_pn532_bad_config_names_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config(section, HardwareSeams())
    assert caught.value.key == key
