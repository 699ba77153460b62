"""RDM6300 driver: real pyserial against a pty driven by the simulated reader."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import rfid_reader
from drivers.errors import ConfigurationError, FaultKind
from drivers.rfid_pn532 import Pn532Reader
from drivers.rfid_rdm6300 import (
    BadFrame,
    CardFrame,
    FrameError,
    Rdm6300FrameParser,
    Rdm6300Reader,
    RepeatCollapser,
    decode_frame,
    from_config,
)
from drivers.seams import HardwareSeams
from hw_sim.rfid import SimRdm6300, rdm6300_frame
from tests.support.card_reader import Harness
from tests.support.wait import until

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests

CARD = bytes.fromhex("0a00c3d2e1")
CARD_HEX = "0A00C3D2E1"
OTHER = bytes.fromhex("1f2e3d4c5b")
OTHER_HEX = "1F2E3D4C5B"


# ---- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def sim(no_leaks: None) -> Iterator[SimRdm6300]:
    with SimRdm6300() as reader:
        yield reader


@pytest.fixture
def sim_no_gap(no_leaks: None) -> Iterator[SimRdm6300]:
    """A reader whose card may come back at once (a hand lifting it and bringing it straight
    back); the simulation otherwise keeps the field silent long enough in between."""
    with SimRdm6300(same_card_gap_s=0.0) as reader:
        yield reader


@pytest.fixture
async def start() -> AsyncIterator[Callable[[Any], Harness]]:
    harnesses: list[Harness] = []

    def _start(reader: Any) -> Harness:
        harnesses.append(Harness(reader))
        return harnesses[-1]

    yield _start
    for harness in harnesses:
        if not harness.task.done():
            await harness.stop()
        harness.reader.close()


async def listening(sim: SimRdm6300) -> None:
    """Wait until the driver has the port open: frames sent before that are lost."""
    await until(sim.has_listener, what="the driver to open the port")


async def played(sim: SimRdm6300) -> None:
    """Wait until the simulator wrote everything, plus time for the driver to read it."""
    assert await asyncio.to_thread(sim.wait_idle, 5.0)
    # the driver reads the repeats too: a duplicate report would show by then
    await asyncio.sleep(0.1)


def fast_reader(port: str, **kwargs: Any) -> Rdm6300Reader:
    options: dict[str, Any] = {"retry_backoff_s": 0.05, "retry_backoff_max_s": 0.2}
    options.update(kwargs)
    return Rdm6300Reader(port, **options)


def bad_checksum_frame(uid: bytes) -> bytes:
    frame = bytearray(rdm6300_frame(uid))
    frame[11:13] = b"00" if frame[11:13] != b"00" else b"11"
    return bytes(frame)


# ---- frame decoding ----------------------------------------------------------------------


def test_rdm6300_frame_decodes_to_the_five_data_bytes_as_uppercase_hex() -> None:
    assert decode_frame(b"\x020A00C3D2E1FA\x03") == CARD_HEX
    assert decode_frame(b"\x020a00c3d2e1fa\x03") == CARD_HEX


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"\x020A00C3D2E1FB\x03", "bad checksum"),
        (b"\x020A00C3D2G1FA\x03", "non-hex"),
        (b"\x020A00C3D2 1FA\x03", "non-hex"),
        (b"\x020A00C3D2E1FA\x04", "not an STX..ETX frame"),
        (b"\x020A00C3D2E1F\x03", "not an STX..ETX frame"),
    ],
)
def test_rdm6300_invalid_frame_is_rejected_with_the_reason(frame: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        decode_frame(frame)


@given(
    uids=st.lists(st.binary(min_size=5, max_size=5), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
)
def test_rdm6300_frames_split_anywhere_decode_to_the_same_uids(
    uids: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(rdm6300_frame(uid) for uid in uids)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    parser = Rdm6300FrameParser()
    out: list[CardFrame | BadFrame] = []
    for start, end in itertools.pairwise(bounds):
        out += parser.feed(stream[start:end])
    assert out == [CardFrame(uid.hex().upper()) for uid in uids]


@given(
    noise=st.binary(min_size=1, max_size=40).filter(lambda b: 0x02 not in b),
    uid=st.binary(min_size=5, max_size=5),
)
def test_rdm6300_noise_before_a_frame_is_one_event_and_the_frame_still_reads(
    noise: bytes, uid: bytes
) -> None:
    out = Rdm6300FrameParser().feed(noise + rdm6300_frame(uid))
    assert len(out) == 2
    assert isinstance(out[0], BadFrame) and "garbage" in out[0].detail
    assert out[1] == CardFrame(uid.hex().upper())


def test_rdm6300_parser_reports_each_kind_of_damage_once_and_resynchronises() -> None:
    good = rdm6300_frame(CARD)
    parser = Rdm6300FrameParser()
    out = parser.feed(good[:6] + good)  # truncated: a new STX arrives early
    out += parser.feed(good[:-1] + b"Z" + b"junk" + good)  # ETX missing, then its tail
    out += parser.feed(bad_checksum_frame(CARD) + good)
    details = [item.detail for item in out if isinstance(item, BadFrame)]
    assert len(details) == 3
    assert "truncated" in details[0]
    assert "missing ETX" in details[1]
    assert "bad checksum" in details[2]
    assert [item for item in out if isinstance(item, CardFrame)] == [CardFrame(CARD_HEX)] * 3


def test_rdm6300_partial_frame_then_silence_expires_as_truncated() -> None:
    parser = Rdm6300FrameParser()
    assert parser.feed(rdm6300_frame(CARD)[:9]) == []
    expired = parser.expire()
    assert expired is not None and "truncated" in expired.detail
    assert parser.expire() is None
    assert parser.feed(rdm6300_frame(CARD)) == [CardFrame(CARD_HEX)]


def test_rdm6300_repeats_collapse_until_the_gap_or_another_card() -> None:
    collapser = RepeatCollapser(repeat_gap_s=1.0)
    seen = [
        collapser.is_new_presentation(uid, t)
        for uid, t in [
            ("A", 0.0),
            ("A", 0.1),
            ("A", 0.9),
            ("A", 1.8),  # 0.9 s after the last frame: still held
            ("A", 2.85),  # over 1 s of silence: a new tap
            ("B", 2.9),
            ("A", 3.0),
        ]
    ]
    assert seen == [True, False, False, False, True, True, True]


# ---- the driver against the simulated reader -----------------------------------------------


async def test_rdm6300_tap_of_many_repeated_frames_is_one_presentation(
    sim: SimRdm6300, start: Callable[[Any], Harness]
) -> None:
    harness = start(fast_reader(sim.port_path))
    await listening(sim)
    sim.tap(CARD, hold_s=0.6)  # 6 frames, ~100 ms apart
    await played(sim)
    assert harness.cards == [CARD_HEX]
    assert harness.events == []


async def test_rdm6300_taps_separated_by_the_repeat_gap_are_two_presentations(
    sim: SimRdm6300, start: Callable[[Any], Harness]
) -> None:
    harness = start(fast_reader(sim.port_path, repeat_gap_s=0.3))
    await listening(sim)
    sim.tap(CARD, hold_s=0.2)
    await played(sim)
    # a gap longer than one presentation's repeats: the next tap is a new one
    await asyncio.sleep(0.3)
    sim.tap(CARD, hold_s=0.2)
    await played(sim)
    assert harness.cards == [CARD_HEX, CARD_HEX]


async def test_rdm6300_card_back_within_the_repeat_gap_is_still_the_same_presentation(
    sim_no_gap: SimRdm6300, start: Callable[[Any], Harness]
) -> None:
    sim = sim_no_gap
    harness = start(fast_reader(sim.port_path, repeat_gap_s=1.0))
    await listening(sim)
    sim.tap(CARD, hold_s=0.2)
    sim.tap(CARD, hold_s=0.2)
    sim.tap(OTHER, hold_s=0.2)
    await played(sim)
    assert harness.cards == [CARD_HEX, OTHER_HEX]


async def test_rdm6300_simulated_taps_of_one_card_are_each_a_presentation(
    sim: SimRdm6300, start: Callable[[Any], Harness]
) -> None:
    harness = start(fast_reader(sim.port_path, repeat_gap_s=1.0))
    await listening(sim)
    for _ in range(3):
        sim.tap(CARD, hold_s=0.2)
    await played(sim)
    assert harness.cards == [CARD_HEX] * 3


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (b"\xff\x10 line noise \x81", "garbage"),
        (bad_checksum_frame(CARD), "bad checksum"),
        (rdm6300_frame(CARD)[:7], "truncated"),
        (b"\x020A00C3D2ZZFA\x03", "non-hex"),
        (rdm6300_frame(CARD)[:-1] + b"\x04", "missing ETX"),
    ],
    ids=["garbage", "bad-checksum", "truncated", "non-hex", "missing-etx"],
)
async def test_rdm6300_damaged_bytes_become_one_event_and_the_next_frame_is_read(
    sim: SimRdm6300, start: Callable[[Any], Harness], damage: bytes, problem: str
) -> None:
    harness = start(fast_reader(sim.port_path))
    await listening(sim)
    sim.write_raw(damage)
    sim.tap(OTHER, hold_s=0.1)
    await played(sim)
    assert harness.cards == [OTHER_HEX]
    assert harness.kinds() == ["bad_frame"]
    assert problem in harness.events[0].detail
    assert harness.events[0].device == "rfid"
    assert harness.events[0].fault is None


async def test_rdm6300_truncated_frame_followed_by_silence_becomes_an_event(
    sim: SimRdm6300, start: Callable[[Any], Harness]
) -> None:
    harness = start(fast_reader(sim.port_path))
    await listening(sim)
    sim.write_raw(rdm6300_frame(CARD)[:10])
    await played(sim)
    await until(lambda: harness.kinds() == ["bad_frame"], what="the truncated-frame event")
    assert "then silence" in harness.events[0].detail
    assert harness.cards == []


async def test_rdm6300_vanished_port_is_a_reader_failure_then_reopened_with_backoff(
    no_leaks: None, tmp_path: Path, start: Callable[[Any], Harness]
) -> None:
    link = tmp_path / "ttyRFID"  # like a /dev/serial/by-id link that follows the adapter
    first = SimRdm6300()
    second: SimRdm6300 | None = None
    try:
        link.symlink_to(first.port_path)
        harness = start(fast_reader(str(link)))
        await listening(first)
        first.tap(CARD, hold_s=0.1)
        await played(first)
        assert harness.cards == [CARD_HEX]

        first.close()  # the adapter is unplugged: its by-id link goes with it (and the pty
        link.unlink()  # number may be reused at once by any other process on the machine)
        await until(lambda: "reader_failure" in harness.kinds(), what="a reader failure")
        failure = harness.events[harness.kinds().index("reader_failure")]
        assert failure.fault is FaultKind.READER_FAILURE
        await asyncio.sleep(0.4)  # several reopen attempts fail meanwhile: one event only
        assert harness.kinds() == ["reader_failure"]

        second = SimRdm6300()  # plugged back in
        link.symlink_to(second.port_path)
        await until(lambda: "recovered" in harness.kinds(), what="recovery", timeout_s=2.0)
        await listening(second)
        second.tap(OTHER, hold_s=0.1)
        await played(second)
        assert harness.cards == [CARD_HEX, OTHER_HEX]
        assert harness.kinds() == ["reader_failure", "recovered"]
        await harness.stop()
    finally:
        first.close()
        if second is not None:
            second.close()


async def test_rdm6300_missing_port_at_start_is_a_reader_failure_not_a_crash(
    tmp_path: Path, start: Callable[[Any], Harness]
) -> None:
    harness = start(fast_reader(str(tmp_path / "no-such-tty")))
    await until(lambda: harness.kinds() == ["reader_failure"], what="a reader failure")
    assert "no-such-tty" in harness.events[0].detail
    # nothing may happen here; the charger acts within tens of ms, so 0.3 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.3)
    assert not harness.task.done()
    assert harness.kinds() == ["reader_failure"]


async def test_rdm6300_close_is_idempotent_and_run_cannot_run_twice(
    sim: SimRdm6300, start: Callable[[Any], Harness]
) -> None:
    reader = fast_reader(sim.port_path)
    start(reader)
    await until(sim.has_listener, what="the reader to open the port")
    with pytest.raises(RuntimeError, match="already running"):
        await reader.run(print, print)
    reader.close()
    reader.close()


# ---- the simulator itself ----------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 4, 6, 7, 10])
def test_sim_rdm6300_rejects_card_ids_that_are_not_five_bytes(sim: SimRdm6300, length: int) -> None:
    with pytest.raises(ValueError, match="5-byte ID"):
        sim.tap(bytes(length))


def test_sim_rdm6300_refuses_taps_after_close(no_leaks: None) -> None:
    reader = SimRdm6300()
    reader.close()
    reader.close()
    with pytest.raises(RuntimeError, match="closed"):
        reader.tap(CARD)


# ---- configuration -----------------------------------------------------------------------


def test_rdm6300_config_defaults() -> None:
    reader = from_config({"type": "rdm6300"}, HardwareSeams())
    assert (reader.port, reader.baudrate, reader.repeat_gap_s) == ("/dev/serial0", 9600, 1.0)


def test_rdm6300_config_values_are_used() -> None:
    reader = from_config(
        {"serial_port": "/dev/ttyAMA0", "baudrate": 19200, "repeat_gap_s": 2}, HardwareSeams()
    )
    assert (reader.port, reader.baudrate, reader.repeat_gap_s) == ("/dev/ttyAMA0", 19200, 2.0)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"type": "pn532_uart"}, "rfid.type"),
        ({"serial_port": ""}, "rfid.serial_port"),
        ({"serial_port": 5}, "rfid.serial_port"),
        ({"baudrate": "fast"}, "rfid.baudrate"),
        ({"baudrate": True}, "rfid.baudrate"),
        ({"baudrate": 0}, "rfid.baudrate"),
        ({"repeat_gap_s": -1.0}, "rfid.repeat_gap_s"),
        ({"repeat_gap_s": float("nan")}, "rfid.repeat_gap_s"),
        ({"retry_backoff_s": 0}, "rfid.retry_backoff_s"),
        ({"retry_backoff_s": 5.0, "retry_backoff_max_s": 1.0}, "rfid.retry_backoff_max_s"),
        ({"serial_prot": "/dev/ttyS0"}, "rfid.serial_prot"),
        ({"i2c_bus": 1}, "rfid.i2c_bus"),
    ],
)
def test_rdm6300_bad_config_names_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config(section, HardwareSeams())
    assert caught.value.key == key


def test_reader_type_picks_the_driver_and_is_required() -> None:
    seams = HardwareSeams()
    assert isinstance(rfid_reader.from_config({"type": "rdm6300"}, seams), Rdm6300Reader)
    assert isinstance(rfid_reader.from_config({"type": "pn532_uart"}, seams), Pn532Reader)
    assert isinstance(rfid_reader.from_config({"type": "pn532_i2c"}, seams), Pn532Reader)
    for section in ({}, {"type": "mfrc522"}):
        with pytest.raises(ConfigurationError) as caught:
            rfid_reader.from_config(section, seams)
        assert caught.value.key == "rfid.type"
    with pytest.raises(ConfigurationError) as caught:
        rfid_reader.from_config(
            {"type": "rdm6300", "baudrate": -1}, seams, key_prefix="connector[2].rfid"
        )
    assert caught.value.key == "connector[2].rfid.baudrate"
