"""PN532 13.56 MHz (ISO 14443A) reader over HSU/UART or I2C (hardware reference 4.2).

Start-up, repeated after any lost contact:

1. transport wake-up (HSU: ``55 55`` + zeros; I2C: a status read, which wakes the chip),
2. SAMConfiguration ``01 14 01`` (normal mode). It comes before the firmware check because
   after power-up an HSU-attached chip sits in LowVbat mode, which SAMConfiguration ends;
   Adafruit's drivers do the same on every transport,
3. GetFirmwareVersion, which must report IC 0x32,
4. RFConfiguration item 0x05 (MaxRetries) with MxRtyPassiveActivation = 1, so that
   InListPassiveTarget answers NbTg = 0 at once when no card is there instead of waiting for
   one (the power-on value 0xFF retries forever).

Then InListPassiveTarget ``01 00`` every ``poll_interval_s``, or every
``expected_poll_interval_s`` while the charger expects a card (:meth:`Pn532Reader.expect_card`:
a car is plugged in and waits for one, so a tap must start the session at once). The UID is
``data[6 : 6 + data[5]]`` (4, 7 or 10 bytes) as uppercase hex, byte 0 first. A card seen in
consecutive polls is one presentation; after ``removal_polls`` polls without it, it counts
again.

Threading: polling is the only thing the reader does, and it blocks (serial or I2C), so
``run`` does it on a thread of its own (``rfid-pn532``) that sleeps between polls; the loop
only hears of cards and events (``loop.call_soon_threadsafe``). Polling through
``asyncio.to_thread`` woke the event loop twice per poll: of an idle charger's CPU, that was
the largest part (docs/benchmarks.md).

Failures: a garbled frame is a ``bad_frame`` event and the poll is retried; a timeout or an
I/O error is a ``timeout``/``io_error`` event and the chip is re-initialised before the next
poll (it may have reset). After ``failure_threshold`` consecutive failures one
``reader_failure`` event with FaultKind.READER_FAILURE follows; the driver keeps retrying
with exponential backoff and reports ``recovered`` when the chip answers again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from drivers.base import DriverEvent, EventSink
from drivers.errors import FaultKind
from drivers.rfid_common import (
    EVENT_DEVICE,
    Backoff,
    SectionReader,
    read_backoff,
    uid_hex,
)
from drivers.rfid_pn532_frame import (
    CMD_GET_FIRMWARE_VERSION,
    CMD_IN_LIST_PASSIVE_TARGET,
    CMD_RF_CONFIGURATION,
    CMD_SAM_CONFIGURATION,
    Pn532FrameError,
    Pn532Timeout,
)
from drivers.rfid_pn532_transport import (
    I2C_ADDRESS,
    Pn532I2cTransport,
    Pn532Transport,
    Pn532UartTransport,
)
from drivers.seams import HardwareSeams
from drivers.threads import NamedThread

PN532_IC: Final = 0x32
SAM_NORMAL_MODE: Final = bytes([0x01, 0x14, 0x01])  # normal mode, 1 s timeout, use IRQ
#: RFConfiguration item 0x05: MxRtyATR 0xFF, MxRtyPSL 0x01, MxRtyPassiveActivation 0x01.
RF_MAX_RETRIES: Final = bytes([0x05, 0xFF, 0x01, 0x01])
LIST_ONE_TYPE_A: Final = bytes([0x01, 0x00])  # MaxTg = 1, BrTy = 106 kbps type A
UID_LENGTHS: Final = (4, 7, 10)

_log = logging.getLogger(__name__)


class ChipIdentityError(Pn532FrameError):
    """GetFirmwareVersion answered, but not with a PN532's IC code."""


def uid_from_target_list(params: bytes) -> bytes | None:
    """The first target's UID from InListPassiveTarget's response parameters, None if none.

    Layout: NbTg, Tg, SENS_RES (2), SEL_RES, NFCIDLength, NFCID..., [ATS].
    """
    if not params:
        raise Pn532FrameError("empty InListPassiveTarget response")
    if params[0] == 0:
        return None
    if len(params) < 6:
        raise Pn532FrameError(f"short target data: {params.hex(' ')}")
    length = params[5]
    if length not in UID_LENGTHS or len(params) < 6 + length:
        raise Pn532FrameError(f"bad NFCID length {length} in {params.hex(' ')}")
    return params[6 : 6 + length]


class PresenceTracker:
    """Collapses consecutive sightings of a card into one presentation."""

    def __init__(self, removal_polls: int) -> None:
        self._removal_polls = removal_polls
        self._present: str | None = None
        self._absent_polls = 0

    def update(self, uid: str | None) -> bool:
        """Record one successful poll; True when ``uid`` is a new presentation."""
        if uid is None:
            self._absent_polls += 1
            if self._absent_polls >= self._removal_polls:
                self._present = None
            return False
        self._absent_polls = 0
        if uid == self._present:
            return False
        self._present = uid
        return True


class Pn532Reader:
    """:class:`drivers.base.CardReader` for a PN532 behind ``transport``.

    ``run`` owns the transport and closes it when cancelled; :meth:`close` is idempotent.
    Callbacks run on the loop thread. Times are in seconds; ``expected_poll_interval_s``
    defaults to ``poll_interval_s``.
    """

    def __init__(
        self,
        transport: Pn532Transport,
        *,
        poll_interval_s: float = 0.2,
        expected_poll_interval_s: float | None = None,
        removal_polls: int = 2,
        response_timeout_s: float = 0.5,
        failure_threshold: int = 3,
        retry_backoff_s: float = 0.5,
        retry_backoff_max_s: float = 10.0,
    ) -> None:
        self._transport = transport
        self._poll_interval_s = poll_interval_s
        self._expected_poll_interval_s = (
            poll_interval_s if expected_poll_interval_s is None else expected_poll_interval_s
        )
        self._expecting = False
        self._wake = threading.Event()
        self._removal_polls = removal_polls
        self._timeout_s = response_timeout_s
        self._failure_threshold = failure_threshold
        self._retry_backoff_s = retry_backoff_s
        self._retry_backoff_max_s = retry_backoff_max_s
        self._running = False
        self.firmware: tuple[int, int, int, int] | None = None
        """(IC, Ver, Rev, Support) from the last successful initialisation."""

    @property
    def transport(self) -> Pn532Transport:
        return self._transport

    @property
    def poll_interval_s(self) -> float:
        return self._poll_interval_s

    @property
    def expected_poll_interval_s(self) -> float:
        return self._expected_poll_interval_s

    @property
    def card_expected(self) -> bool:
        """What :meth:`expect_card` last said: True while polling at the fast rate."""
        return self._expecting

    def expect_card(self, expected: bool) -> None:
        """Poll every ``expected_poll_interval_s`` while ``expected`` (a car waits for a card),
        else every ``poll_interval_s``. Any thread; a faster rate starts at once."""
        faster = expected and not self._expecting
        self._expecting = expected
        if faster:
            self._wake.set()

    @property
    def removal_polls(self) -> int:
        return self._removal_polls

    @property
    def response_timeout_s(self) -> float:
        return self._timeout_s

    @property
    def failure_threshold(self) -> int:
        return self._failure_threshold

    async def run(self, on_card: Callable[[str], None], on_event: EventSink) -> None:
        """Poll until cancelled; ``on_card`` gets each presentation's UID once.

        Polls on the ``rfid-pn532`` thread; ``on_card`` and ``on_event`` are called on the
        loop thread. When cancelled, waits for the poll in progress (bounded by
        ``response_timeout_s``), joins the thread and closes the transport. An unexpected
        error on the thread ends ``run`` with that error.
        """
        if self._running:
            raise RuntimeError("Pn532Reader.run is already running")
        self._running = True
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        done: asyncio.Future[None] = loop.create_future()

        def finish(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def post_card(uid: str) -> None:
            loop.call_soon_threadsafe(on_card, uid)

        def post_event(event: DriverEvent) -> None:
            loop.call_soon_threadsafe(on_event, event)

        def body() -> None:
            error: BaseException | None = None
            try:
                self._poll_loop(post_card, post_event, stop)
            except BaseException as exc:  # handed to run() on the loop, which raises it there
                _log.exception("PN532 polling stopped")
                error = exc
            finally:
                loop.call_soon_threadsafe(finish, error)

        self._wake.clear()
        thread = NamedThread(target=body, name="rfid-pn532", daemon=True)
        thread.start()
        try:
            await asyncio.shield(done)
        finally:
            stop.set()
            self._wake.set()
            try:
                if not done.done():
                    await asyncio.wait({done})
            finally:
                thread.join()  # normally already finished: at most one bounded poll
                self._transport.close()
                self._running = False

    def _poll_loop(
        self,
        on_card: Callable[[str], None],
        on_event: EventSink,
        stop: threading.Event,
    ) -> None:
        """The polling thread: initialise, poll, back off; returns once ``stop`` is set."""
        presence = PresenceTracker(self._removal_polls)
        health = _Health(
            self._failure_threshold,
            Backoff(self._retry_backoff_s, self._retry_backoff_max_s),
            on_event,
            self._detail,
        )
        needs_init = True
        while not stop.is_set():
            delay_s: float | None = None
            try:
                if needs_init:
                    self._initialise()
                    needs_init = False
                uid = self._poll_once()
            except (Pn532Timeout, Pn532FrameError, OSError) as exc:
                # A garbled answer is retried as is; silence or a wrong chip may mean the
                # chip reset (or was swapped), so it is initialised again.
                if not isinstance(exc, Pn532FrameError) or isinstance(exc, ChipIdentityError):
                    needs_init = True
                if isinstance(exc, OSError):
                    self._transport.drop_link()
                delay_s = health.attempt_failed(exc)
            else:
                health.attempt_succeeded()
                if presence.update(uid) and uid is not None:
                    on_card(uid)
            if stop.is_set():
                return
            if delay_s is None:
                delay_s = (
                    self._expected_poll_interval_s if self._expecting else self._poll_interval_s
                )
            if self._wake.wait(delay_s):
                self._wake.clear()

    def close(self) -> None:
        """Release the port or bus; idempotent. ``run`` does this too when cancelled."""
        self._transport.close()

    @property
    def _where(self) -> str:
        return self._transport.description

    def _detail(self, what: object) -> str:
        return f"PN532 {self._where}: {what}"

    def _initialise(self) -> None:
        """Polling thread: wake, SAMConfiguration, firmware check, RFConfiguration."""
        transport = self._transport
        transport.wake()
        transport.call(CMD_SAM_CONFIGURATION, SAM_NORMAL_MODE, self._timeout_s)
        version = transport.call(CMD_GET_FIRMWARE_VERSION, b"", self._timeout_s)
        if len(version) != 4 or version[0] != PN532_IC:
            raise ChipIdentityError(f"not a PN532: firmware version answer {version.hex(' ')}")
        self.firmware = (version[0], version[1], version[2], version[3])
        transport.call(CMD_RF_CONFIGURATION, RF_MAX_RETRIES, self._timeout_s)
        _log.info("PN532 %s ready, firmware %d.%d", self._where, version[1], version[2])

    def _poll_once(self) -> str | None:
        """Polling thread: one InListPassiveTarget; the UID as hex or None."""
        params = self._transport.call(CMD_IN_LIST_PASSIVE_TARGET, LIST_ONE_TYPE_A, self._timeout_s)
        uid = uid_from_target_list(params)
        return None if uid is None else uid_hex(uid)


class _Health:
    """Turns a run of failed attempts into events: one event per failure until
    ``threshold`` consecutive failures, then one READER_FAILURE, silence (log only) while
    it lasts, and ``recovered`` at the first success."""

    def __init__(
        self,
        threshold: int,
        backoff: Backoff,
        on_event: EventSink,
        detail: Callable[[object], str],
    ) -> None:
        self._threshold = threshold
        self._backoff = backoff
        self._on_event = on_event
        self._detail = detail
        self._failures = 0
        self._failed = False

    def attempt_failed(self, exc: Exception) -> float | None:
        """Record a failure; the backoff delay (s) once failed, None for the normal pace."""
        self._failures += 1
        if self._failed:
            _log.info("%s", self._detail(f"still failing: {exc}"))
            return self._backoff.next_delay_s()
        self._on_event(DriverEvent(EVENT_DEVICE, _event_kind(exc), self._detail(exc)))
        if self._failures < self._threshold:
            return None
        self._failed = True
        self._on_event(
            DriverEvent(
                EVENT_DEVICE,
                "reader_failure",
                self._detail(f"{self._failures} attempts failed, last: {exc}"),
                FaultKind.READER_FAILURE,
            )
        )
        return self._backoff.next_delay_s()

    def attempt_succeeded(self) -> None:
        self._failures = 0
        if self._failed:
            self._failed = False
            self._backoff.reset()
            self._on_event(DriverEvent(EVENT_DEVICE, "recovered", self._detail("answering")))


def _event_kind(exc: Exception) -> str:
    if isinstance(exc, Pn532FrameError):
        return "bad_frame"
    if isinstance(exc, Pn532Timeout):
        return "timeout"
    return "io_error"


_COMMON_KEYS: Final = (
    "type",
    "poll_interval_s",
    "expected_poll_interval_s",
    "removal_polls",
    "response_timeout_s",
    "failure_threshold",
    "retry_backoff_s",
    "retry_backoff_max_s",
)
UART_KEYS: Final = (*_COMMON_KEYS, "serial_port", "baudrate")
I2C_KEYS: Final = (*_COMMON_KEYS, "i2c_bus", "i2c_address")
TYPES: Final = ("pn532_uart", "pn532_i2c")


def from_config(
    section: Mapping[str, Any], seams: HardwareSeams, *, key_prefix: str = "rfid"
) -> Pn532Reader:
    """Build a reader from the ``[rfid]`` table, ``type = "pn532_uart"`` or ``"pn532_i2c"``.

    UART keys: ``serial_port = "/dev/serial0"``, ``baudrate = 115200``. I2C keys:
    ``i2c_bus = 1`` (opened through ``seams.open_i2c_bus`` when ``run`` starts),
    ``i2c_address = 0x24``. Both: ``poll_interval_s = 0.2``, ``expected_poll_interval_s =
    0.03`` (while a car waits for a card: a tap starts the session within about that),
    ``removal_polls = 2``,
    ``response_timeout_s = 0.5``, ``failure_threshold = 3``, ``retry_backoff_s = 0.5``,
    ``retry_backoff_max_s = 10.0``. Raises ConfigurationError naming the key.
    """
    cfg = SectionReader(section, key_prefix)
    kind = cfg.choice("type", TYPES)
    transport: Pn532Transport
    if kind == "pn532_uart":
        cfg.reject_unknown(UART_KEYS, 'type "pn532_uart"')
        transport = Pn532UartTransport(
            cfg.string("serial_port", "/dev/serial0"),
            baudrate=cfg.integer("baudrate", 115200, minimum=9600, maximum=1_288_000),
        )
    else:
        cfg.reject_unknown(I2C_KEYS, 'type "pn532_i2c"')
        bus = cfg.integer("i2c_bus", 1, minimum=0, maximum=255)
        address = cfg.integer("i2c_address", I2C_ADDRESS, minimum=0x08, maximum=0x77)
        open_bus = seams.open_i2c_bus
        transport = Pn532I2cTransport(lambda: open_bus(bus), address=address, label=f"i2c-{bus}")
    backoff_s, backoff_max_s = read_backoff(cfg)
    return Pn532Reader(
        transport,
        poll_interval_s=cfg.number("poll_interval_s", 0.2, above=0.0, maximum=10.0),
        expected_poll_interval_s=cfg.number(
            "expected_poll_interval_s", 0.03, above=0.0, maximum=10.0
        ),
        removal_polls=cfg.integer("removal_polls", 2, minimum=1, maximum=100),
        response_timeout_s=cfg.number("response_timeout_s", 0.5, above=0.0, maximum=10.0),
        failure_threshold=cfg.integer("failure_threshold", 3, minimum=1, maximum=100),
        retry_backoff_s=backoff_s,
        retry_backoff_max_s=backoff_max_s,
    )
