"""Simulated RFID readers: an RDM6300 writing frames into a pty, and the PN532 family.

:class:`SimRdm6300` plays the reader's side of the UART: the driver opens ``port_path`` with
pyserial as it opens ``/dev/serial0`` on a Pi. A tap writes the card's frame the way the
real module does, repeated about every 100 ms while the card is held. Its frame encoder is
written here independently of the driver's decoder, so the two check each other.

The PN532 simulators live in :mod:`hw_sim.rfid_pn532` and are re-exported here.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Final

from drivers.threads import NamedThread
from hw_sim.pty import open_pty
from hw_sim.rfid_pn532 import Pn532Chip, SimPn532I2c, SimPn532Uart

RDM6300_UID_BYTES: Final = 5
REPEAT_INTERVAL_S: Final = 0.1
#: Silence before a card is played again right after itself: longer than the driver's
#: ``repeat_gap_s`` (default 1 s), so two taps of one card are two presentations, as when
#: a hand takes the card away and brings it back.
SAME_CARD_GAP_S: Final = 1.2

_log = logging.getLogger(__name__)


def rdm6300_frame(uid: bytes) -> bytes:
    """STX, 10 uppercase ASCII hex digits, 2 hex digits of XOR checksum, ETX."""
    if len(uid) != RDM6300_UID_BYTES:
        raise ValueError(
            f"an RDM6300 (EM4100) card has a {RDM6300_UID_BYTES}-byte ID, got {len(uid)} bytes"
        )
    checksum = 0
    for byte in uid:
        checksum ^= byte
    return b"\x02" + f"{uid.hex()}{checksum:02x}".upper().encode("ascii") + b"\x03"


@dataclass(frozen=True, slots=True)
class _Tap:
    frame: bytes
    hold_s: float


@dataclass(frozen=True, slots=True)
class _Raw:
    data: bytes


@dataclass(frozen=True, slots=True)
class _Marker:
    reached: threading.Event


class SimRdm6300:
    """An RDM6300 on a pty. Methods are thread-safe and return at once: a writer thread
    plays taps and raw bytes in the order they were requested.

    Like the real module's UART, bytes written while nobody has the port open, or faster
    than the port is read, are lost.
    """

    def __init__(
        self,
        *,
        repeat_interval_s: float = REPEAT_INTERVAL_S,
        same_card_gap_s: float = SAME_CARD_GAP_S,
    ) -> None:
        self._master_fd, self._port_path = open_pty()
        os.set_blocking(self._master_fd, False)
        self._repeat_interval_s = repeat_interval_s
        self._same_card_gap_s = same_card_gap_s
        self._last_frame = b""  # writer thread only: the card played last, and when it ended
        self._last_end = 0.0
        self._jobs: queue.Queue[_Tap | _Raw | _Marker | None] = queue.Queue()
        self._stop = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = NamedThread(target=self._writer, name="sim-rdm6300", daemon=True)
        self._thread.start()

    @property
    def port_path(self) -> str:
        """The pty slave path to configure as the driver's ``serial_port``."""
        return self._port_path

    def tap(self, uid: bytes, hold_s: float = 0.5) -> None:
        """Hold a card with this 5-byte ID in the field for ``hold_s`` seconds.

        The frame is written at once (after the taps requested before it) and then every
        ~100 ms while the card is held; the same card right after itself waits for
        ``same_card_gap_s`` of silence first, so every tap is a presentation of its own.
        """
        frame = rdm6300_frame(uid)
        if not hold_s > 0:
            raise ValueError(f"hold_s must be positive, got {hold_s}")
        self._submit(_Tap(frame, hold_s))

    def write_raw(self, data: bytes) -> None:
        """Put arbitrary bytes on the line (noise, truncated or corrupted frames)."""
        self._submit(_Raw(bytes(data)))

    def has_listener(self) -> bool:
        """True while some process has the port open (reading the master fails with EIO
        otherwise). Discards anything the host sent: the RDM6300 has no receiver."""
        try:
            os.read(self._master_fd, 4096)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False
            raise
        return True

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Block until every requested tap and write has been played; False on timeout."""
        reached = threading.Event()
        self._submit(_Marker(reached))
        return reached.wait(timeout_s)

    def close(self) -> None:
        """Stop the writer thread and close the pty; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._jobs.put(None)
        self._thread.join()
        os.close(self._master_fd)

    def __enter__(self) -> SimRdm6300:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self, job: _Tap | _Raw | _Marker) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the simulated RDM6300 is closed")
            self._jobs.put(job)

    def _writer(self) -> None:
        while not self._stop.is_set():
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, _Raw):
                self._write(job.data)
            elif isinstance(job, _Marker):
                job.reached.set()
            else:
                self._play_tap(job)

    def _play_tap(self, tap: _Tap) -> None:
        if tap.frame == self._last_frame:
            silence_s = self._last_end + self._same_card_gap_s - time.monotonic()
            if silence_s > 0 and self._stop.wait(silence_s):
                return
        repeats = max(1, round(tap.hold_s / self._repeat_interval_s))
        for index in range(repeats):
            if index and self._stop.wait(self._repeat_interval_s):
                return
            self._write(tap.frame)
        self._last_frame, self._last_end = tap.frame, time.monotonic()

    def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            os.write(self._master_fd, data)
        except BlockingIOError:
            _log.debug("simulated RDM6300: line buffer full, %d bytes lost", len(data))
        except OSError as exc:  # a real UART does not notice a missing listener either
            _log.warning("simulated RDM6300: write failed, %d bytes lost: %s", len(data), exc)


__all__ = [
    "RDM6300_UID_BYTES",
    "Pn532Chip",
    "SimPn532I2c",
    "SimPn532Uart",
    "SimRdm6300",
    "rdm6300_frame",
]
