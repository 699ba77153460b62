"""A simulated PN532: one chip model behind an HSU (pty) or an I2C (SimSMBus) interface.

:class:`Pn532Chip` answers command frames the way the chip does: an ACK, then the response
(TFI 0xD5, code = command + 1), or the error frame for commands it does not model. It knows
GetFirmwareVersion (IC 0x32, firmware 1.6), SAMConfiguration, RFConfiguration item 0x05
(MaxRetries) and InListPassiveTarget at 106 kbps type A. As on the real chip,
MxRtyPassiveActivation starts at 0xFF, meaning InListPassiveTarget waits until a card
arrives; a driver must lower it to get NbTg = 0 back when the field is empty.

Over HSU the chip starts asleep and ignores everything until the ``55 55`` wake-up preamble.
Over I2C each read begins with a status byte: 0x00 while nothing is ready, 0x01 followed by
the pending frame otherwise; a one-byte status read does not consume the frame.

Two ways to bring a card: :meth:`Pn532Chip.present` puts one in the field at once (replacing
any other), as a test of the driver wants; :meth:`Pn532Chip.tap` queues a *presentation*, as
a hand does: the card stays until the host has seen it at least once and ``hold_s`` passed,
then the field stays empty until the host has polled it empty ``gap_polls`` times, then the
next queued card comes. However close together taps are requested, none merges with the one
before (the same card twice is two presentations) and none is lost.

Fault knobs: :meth:`Pn532Chip.set_silent` (the chip stops answering), :meth:`inject_garbage`
(the next response arrives after line noise and with a wrong data checksum),
:meth:`power_cycle` (back to power-on state).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

from drivers.rfid_pn532_frame import (
    ACK_FRAME,
    CMD_GET_FIRMWARE_VERSION,
    CMD_IN_LIST_PASSIVE_TARGET,
    CMD_RF_CONFIGURATION,
    CMD_SAM_CONFIGURATION,
    ERROR_FRAME,
    TFI_HOST_TO_PN532,
    FrameKind,
    FrameParser,
    Pn532FrameError,
    encode_response,
)
from drivers.threads import NamedThread
from hw_sim.pty import open_pty
from hw_sim.smbus import SimSMBus

PN532_I2C_ADDRESS: Final = 0x24
UID_LENGTHS: Final = (4, 7, 10)
#: How long a tapped card stays in the field at least (seconds), and how many empty polls
#: the host must see between two taps: more than a driver's ``removal_polls`` (default 2).
TAP_HOLD_S: Final = 0.3
TAP_GAP_POLLS: Final = 3
FIRMWARE: Final = bytes([0x32, 0x01, 0x06, 0x07])  # IC, Ver, Rev, Support
NOISE: Final = b"\x55\xaa\x13"
#: SENS_RES (ATQA, as the PN532 reports it) and SEL_RES (SAK) per UID size: MIFARE Classic
#: 1K for single size, Ultralight-like for double, a triple-size UID card for 10 bytes.
_CARD_TYPE: Final = {4: (b"\x00\x04", 0x08), 7: (b"\x00\x44", 0x00), 10: (b"\x00\x84", 0x00)}

_log = logging.getLogger(__name__)


def _check_uid(uid: bytes) -> bytes:
    if len(uid) not in UID_LENGTHS:
        raise ValueError(
            f"an ISO 14443A UID for the PN532 has 4, 7 or 10 bytes, got {len(uid)} bytes"
        )
    return bytes(uid)


class Pn532Chip:
    """The chip's command processor. Thread-safe: the interface thread feeds it host bytes,
    the test or simulator thread moves cards in and out of the field."""

    def __init__(self, *, firmware: bytes = FIRMWARE, tap_gap_polls: int = TAP_GAP_POLLS) -> None:
        self._firmware = bytes(firmware)
        self._tap_gap_polls = tap_gap_polls
        self._taps: deque[tuple[bytes, float]] = deque()  # (uid, hold_s) not yet begun
        self._tap: _Presentation | None = None  # the tap in the field, or its gap after
        self._lock = threading.Lock()
        self._outbox: deque[bytes] = deque()
        self._parser = FrameParser()
        self._commands: list[int] = []
        self._card: bytes | None = None
        self._card_until: float | None = None
        self._silent = False
        self._garbage_next = False
        self._power_on()

    def _power_on(self) -> None:
        self._outbox.clear()
        self._parser = FrameParser()
        self._hsu_awake = False
        self._wake_run = 0  # consecutive 0x55 bytes seen while asleep
        self._mx_rty_passive = 0xFF
        self._list_pending = False

    # ---- the world side: cards and faults ------------------------------------------------

    def present(self, uid: bytes, hold_s: float | None = 0.5) -> None:
        """Put a card in the field for ``hold_s`` seconds (None: until :meth:`remove`)."""
        card = _check_uid(uid)
        if hold_s is not None and not hold_s > 0:
            raise ValueError(f"hold_s must be positive or None, got {hold_s}")
        with self._lock:
            self._card = card
            self._card_until = None if hold_s is None else time.monotonic() + hold_s
            if self._list_pending:  # InListPassiveTarget was waiting for a card
                self._list_pending = False
                self._queue_response(self._target_list(card))

    def tap(self, uid: bytes, hold_s: float = TAP_HOLD_S) -> None:
        """Queue one presentation of a card (see the module docstring); returns at once.

        Once this returns the presentation cannot be lost: it is played when the ones before
        it have been seen and followed by an empty field.
        """
        card = _check_uid(uid)
        if not hold_s > 0:
            raise ValueError(f"hold_s must be positive, got {hold_s}")
        with self._lock:
            self._taps.append((card, hold_s))
            if self._list_pending and (card_now := self._card_now()) is not None:
                self._list_pending = False
                self._queue_response(self._target_list(card_now))
                self._seen(card_now)

    @property
    def taps_pending(self) -> int:
        """Presentations queued or under way (the one in the field or its gap included)."""
        with self._lock:
            return len(self._taps) + (self._tap is not None)

    def remove(self) -> None:
        """Take the card out of the field."""
        with self._lock:
            self._card = None
            self._card_until = None

    def set_silent(self, silent: bool) -> None:
        """Stop (True) or resume (False) answering; unread answers are lost."""
        with self._lock:
            self._silent = silent
            if silent:
                self._outbox.clear()
                self._parser = FrameParser()
                self._list_pending = False

    def inject_garbage(self) -> None:
        """Corrupt the next response: line noise before it and a wrong data checksum."""
        with self._lock:
            self._garbage_next = True

    def power_cycle(self) -> None:
        """Back to power-on state: asleep on HSU, MxRtyPassiveActivation 0xFF."""
        with self._lock:
            self._power_on()

    @property
    def received_commands(self) -> list[int]:
        """Command codes received so far, in order (for tests checking the start-up)."""
        with self._lock:
            return list(self._commands)

    @property
    def card_in_field(self) -> bytes | None:
        with self._lock:
            return self._card_now()

    # ---- the host side --------------------------------------------------------------------

    def receive_hsu(self, data: bytes) -> None:
        """Bytes from the host's UART, in whatever pieces they arrive."""
        with self._lock:
            if self._silent:
                return
            if not self._hsu_awake:
                data = self._consume_wakeup(data)
            self._parser.feed(data)
            self._handle_parsed()

    def receive_i2c_write(self, data: bytes) -> None:
        """One I2C write transaction: a complete command frame."""
        with self._lock:
            if self._silent:
                return
            self._parser = FrameParser()
            self._parser.feed(data)
            self._handle_parsed()

    def next_output(self, *, consume: bool) -> bytes | None:
        """The next frame for the host (ACK or response), None when nothing is ready."""
        with self._lock:
            if self._silent or not self._outbox:
                return None
            return self._outbox.popleft() if consume else self._outbox[0]

    # ---- command processing (lock held) ---------------------------------------------------

    def _consume_wakeup(self, data: bytes) -> bytes:
        for index, byte in enumerate(data):
            self._wake_run = self._wake_run + 1 if byte == 0x55 else 0
            if self._wake_run >= 2:
                self._hsu_awake = True
                return data[index + 1 :]
        return b""

    def _handle_parsed(self) -> None:
        while True:
            try:
                frame = self._parser.next_frame()
            except Pn532FrameError as exc:  # the real chip ignores a frame it cannot decode
                _log.debug("simulated PN532 ignored a frame: %s", exc)
                continue
            if frame is None:
                return
            if frame.kind is not FrameKind.INFO:  # a host ACK aborts the running command
                self._list_pending = False
                continue
            if frame.tfi != TFI_HOST_TO_PN532 or not frame.data:
                continue
            self._execute(frame.data[0], frame.data[1:])

    def _execute(self, command: int, params: bytes) -> None:
        self._commands.append(command)
        self._outbox.clear()  # a new command supersedes unread answers
        self._list_pending = False
        self._outbox.append(ACK_FRAME)
        if command == CMD_GET_FIRMWARE_VERSION:
            self._queue_response(encode_response(command, self._firmware))
        elif command == CMD_SAM_CONFIGURATION and params and 1 <= params[0] <= 4:
            self._queue_response(encode_response(command))
        elif command == CMD_RF_CONFIGURATION and params:
            if params[0] == 0x05 and len(params) >= 4:
                self._mx_rty_passive = params[3]
            self._queue_response(encode_response(command))
        elif command == CMD_IN_LIST_PASSIVE_TARGET and len(params) >= 2:
            self._in_list_passive_target(params)
        else:
            self._queue_response(ERROR_FRAME)

    def _in_list_passive_target(self, params: bytes) -> None:
        card = self._card_now() if params[1] == 0x00 else None  # only 106 kbps type A
        self._seen(card)
        if card is not None:
            self._queue_response(self._target_list(card))
        elif self._mx_rty_passive == 0xFF:
            self._list_pending = True  # retries forever: answers when a card comes
        else:
            self._queue_response(encode_response(CMD_IN_LIST_PASSIVE_TARGET, b"\x00"))

    @staticmethod
    def _target_list(card: bytes) -> bytes:
        sens_res, sel_res = _CARD_TYPE[len(card)]
        params = b"\x01\x01" + sens_res + bytes([sel_res, len(card)]) + card
        return encode_response(CMD_IN_LIST_PASSIVE_TARGET, params)

    def _queue_response(self, frame: bytes) -> None:
        if self._garbage_next:
            self._garbage_next = False
            corrupted = bytearray(frame)
            corrupted[-2] = (corrupted[-2] + 1) & 0xFF  # DCS
            frame = NOISE + bytes(corrupted)
        self._outbox.append(frame)

    def _card_now(self) -> bytes | None:
        now = time.monotonic()
        if self._card_until is not None and now >= self._card_until:
            self._card = None
            self._card_until = None
        if self._card is not None:
            return self._card  # a card put in the field by hand wins over queued taps
        tap = self._tap
        if tap is not None and tap.in_field and tap.seen and now >= tap.until:
            tap.in_field = False  # taken away: the gap begins
        if tap is not None and not tap.in_field and tap.empty_polls >= self._tap_gap_polls:
            self._tap = tap = None
        if tap is None and self._taps:
            uid, hold_s = self._taps.popleft()
            self._tap = tap = _Presentation(uid, now + hold_s)
        return tap.uid if tap is not None and tap.in_field else None

    def _seen(self, card: bytes | None) -> None:
        """The host has just been told ``card`` (None: an empty field) about the taps."""
        tap = self._tap
        if tap is None:
            return
        if card is not None and tap.in_field and card == tap.uid:
            tap.seen = True
        elif card is None and not tap.in_field:
            tap.empty_polls += 1


@dataclass(slots=True)
class _Presentation:
    """One queued tap while it is played: the card in the field, then the empty field."""

    uid: bytes
    until: float  # monotonic s: not taken away before
    in_field: bool = True
    seen: bool = False
    empty_polls: int = 0


class _ChipControls:
    """The card and fault controls both interfaces share, forwarded to ``self.chip``."""

    chip: Pn532Chip

    def present(self, uid: bytes, hold_s: float | None = 0.5) -> None:
        """Put a card (4, 7 or 10-byte UID) in the field for ``hold_s`` seconds."""
        self.chip.present(uid, hold_s)

    def tap(self, uid: bytes, hold_s: float = TAP_HOLD_S) -> None:
        """Queue one presentation (see :meth:`Pn532Chip.tap`)."""
        self.chip.tap(uid, hold_s)

    def remove(self) -> None:
        self.chip.remove()

    def set_silent(self, silent: bool) -> None:
        self.chip.set_silent(silent)

    def inject_garbage(self) -> None:
        self.chip.inject_garbage()

    def power_cycle(self) -> None:
        self.chip.power_cycle()


class SimPn532Uart(_ChipControls):
    """A PN532 in HSU mode on a pty; a thread reads host bytes and writes the chip's answers.

    The driver opens :attr:`port_path`. Answers written while nobody has the port open are
    lost, as on a real UART.
    """

    def __init__(self, chip: Pn532Chip | None = None) -> None:
        self.chip = chip if chip is not None else Pn532Chip()
        self._master_fd, self._port_path = open_pty()
        os.set_blocking(self._master_fd, False)
        self._stop = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = NamedThread(target=self._serve, name="sim-pn532-uart", daemon=True)
        self._thread.start()

    @property
    def port_path(self) -> str:
        return self._port_path

    def close(self) -> None:
        """Stop the thread and close the pty; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._thread.join()
        os.close(self._master_fd)

    def __enter__(self) -> SimPn532Uart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._master_fd], [], [], 0.02)
            if readable:
                try:
                    data = os.read(self._master_fd, 4096)
                except BlockingIOError:
                    data = b""
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        _log.warning("simulated PN532 pty read failed: %s", exc)
                    # EIO: nobody has the slave open; wait for the driver to (re)open it.
                    self._stop.wait(0.02)
                    continue
                if data:
                    self.chip.receive_hsu(data)
            self._flush_output()

    def _flush_output(self) -> None:
        while (frame := self.chip.next_output(consume=True)) is not None:
            try:
                os.write(self._master_fd, frame)
            except OSError as exc:  # line buffer full or nobody listening: the bytes are lost
                _log.debug("simulated PN532: answer lost: %s", exc)


class SimPn532I2c(_ChipControls):
    """A PN532 in I2C mode: an :class:`hw_sim.smbus.I2CDevice` for :class:`SimSMBus`."""

    def __init__(self, chip: Pn532Chip | None = None) -> None:
        self.chip = chip if chip is not None else Pn532Chip()
        self._bus: SimSMBus | None = None
        self._address = PN532_I2C_ADDRESS

    def attach(self, bus: SimSMBus, address: int = PN532_I2C_ADDRESS) -> None:
        """Connect to ``bus`` at ``address`` (default 0x24)."""
        bus.attach(address, self)
        self._bus = bus
        self._address = address

    def i2c_write(self, data: bytes) -> None:
        self.chip.receive_i2c_write(data)

    def i2c_read(self, length: int) -> bytes:
        if length <= 0:
            return b""
        frame = self.chip.next_output(consume=length > 1)
        if frame is None:
            return bytes(length)  # status 0x00: busy
        return b"\x01" + frame[: length - 1].ljust(length - 1, b"\x00")

    def close(self) -> None:
        """Detach from the bus; idempotent."""
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.detach(self._address)


__all__ = ["PN532_I2C_ADDRESS", "Pn532Chip", "SimPn532I2c", "SimPn532Uart"]
