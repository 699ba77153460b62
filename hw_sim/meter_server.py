"""The simulated energy meter: a real pymodbus server serving a model's register map.

:class:`SimMeter` reads the same ``drivers/meter_models/<model>.toml`` as the driver and
serves it over Modbus TCP on 127.0.0.1 and/or Modbus RTU on a pseudo-terminal, so the
unchanged :class:`drivers.meter.ModbusMeter` (or any Modbus master, e.g. ``mbpoll``) reads
it exactly as it reads a meter on an RS485 line.

RTU needs two serial ports facing each other, and pymodbus opens ports by path, so
:class:`PtyLink` joins two pseudo-terminals back to back with relay threads (like
``socat pty,raw pty,raw``): the driver opens :attr:`PtyLink.driver_path`, the server
:attr:`PtyLink.device_path`. The link can emulate a line rate (each byte delivered when it
would have finished arriving at N baud, 8N1 = 10 bits per byte) and corrupt bytes in flight.

Faults (:meth:`SimMeter.set_fault`):

- ``"offline"``: requests are consumed but never answered, on both transports (timeouts).
- ``"garbage"``: answers with nonsense. Over RTU every reply is corrupted on the line so its
  CRC fails. Over TCP (no CRC) every register of a read reply is 0xFFFF: float32 NaN, signed
  integers -1, ABB "not available", so the import energy is NaN, negative or missing.
- ``"exception"``: every read gets a Modbus exception response (04, server device failure).

A request for another unit id gets no reply, as on a shared RS485 bus. Reading with the
wrong function code answers exception 01, and more registers than the model's
``max_registers_per_request`` exception 03, as an Eastron meter does.

Threading: construct, start, stop and feed a SimMeter on one asyncio loop (the lead's). The
pymodbus servers run on that loop; only :class:`PtyLink` has threads, which :meth:`stop`
joins. Energy is the lead's to integrate (:meth:`add_energy_wh`) and to persist.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, cast

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.register_map import RegisterMap, load_model
from drivers.threads import NamedThread
from hw_sim.pty import open_pty

MeterFault = Literal["offline", "garbage", "exception"]
Direction = Literal["to_device", "to_driver"]
Corrupter = Callable[[Direction, bytes], bytes]

BITS_PER_BYTE_8N1 = 10  # start + 8 data + stop
RTU_FRAME_GAP_CHARS = 3.5  # silence that ends a Modbus RTU frame
_READ_FUNCTIONS = (3, 4)


class PtyLink:
    """Two raw ptys joined by relay threads: a serial cable between driver and device.

    ``baudrate`` (None = as fast as the ptys go) emulates a half-duplex RS485 line at that
    rate: each byte is delivered when it would have finished arriving (10 bits per byte), the
    two directions share the line, and a transmission that starts on an idle line waits until
    the line has been silent for 3.5 characters (the Modbus RTU inter-frame gap). A chunk
    written while the line is still busy continues the frame on it.

    ``corrupt`` (settable at any time, called on a relay thread) may rewrite each chunk in
    flight. Bytes written while nobody holds the other end open are dropped, like a line
    with nothing attached.
    """

    def __init__(self, baudrate: int | None = None, corrupt: Corrupter | None = None) -> None:
        if baudrate is not None and baudrate <= 0:
            raise ValueError(f"baudrate must be positive, got {baudrate}")
        self.baudrate = baudrate
        self.corrupt = corrupt
        self._driver_master, self.driver_path = open_pty()
        self._device_master, self.device_path = open_pty()
        # Hold each slave open ourselves, so a master never reads EIO while the real user
        # has the port closed (between reconnects); we never read these fds.
        self._held = [
            os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            for path in (self.driver_path, self.device_path)
        ]
        for fd in (self._driver_master, self._device_master):
            os.set_blocking(fd, False)
        self._line_lock = threading.Lock()
        self._line_free_at = -math.inf  # monotonic time the last byte leaves the line
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._threads = [
            NamedThread(
                target=self._relay,
                args=(self._driver_master, self._device_master, "to_device"),
                name="sim-pty-todev",
                daemon=True,
            ),
            NamedThread(
                target=self._relay,
                args=(self._device_master, self._driver_master, "to_driver"),
                name="sim-pty-todrv",
                daemon=True,
            ),
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop the relays (they wake at once) and close every fd; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        os.write(self._wake_w, b"x")
        for thread in self._threads:
            thread.join(timeout=2.0)
        for fd in (self._driver_master, self._device_master, *self._held):
            os.close(fd)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def wire_time_s(self, nbytes: int) -> float:
        """Seconds ``nbytes`` take on the emulated line (0.0 without line-rate emulation)."""
        return 0.0 if self.baudrate is None else nbytes * BITS_PER_BYTE_8N1 / self.baudrate

    @property
    def frame_gap_s(self) -> float:
        """The 3.5-character silence that separates two RTU frames on the emulated line."""
        return self.wire_time_s(1) * RTU_FRAME_GAP_CHARS

    def _relay(self, src: int, dst: int, direction: Direction) -> None:
        """Relay thread: copy src master -> dst master until close()."""
        while not self._stop.is_set():
            ready, _, _ = select.select([src, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                data = os.read(src, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                self._stop.wait(0.01)  # the slave is not open yet: nothing to relay
                continue
            if not data:
                self._stop.wait(0.01)
                continue
            corrupt = self.corrupt
            if corrupt is not None:
                data = corrupt(direction, data)
            if self.baudrate is None:
                self._write(dst, data)
            else:
                self._deliver_at_line_rate(dst, data)

    def _deliver_at_line_rate(self, dst: int, data: bytes) -> None:
        """Write each byte of ``data`` once it would have fully arrived over the line."""
        byte_s = self.wire_time_s(1)
        with self._line_lock:
            now = time.monotonic()
            if now >= self._line_free_at:  # idle line: a new frame, after 3.5 chars of silence
                start = max(now, self._line_free_at + self.frame_gap_s)
            else:  # the line is still busy: this chunk queues behind what is on it
                start = self._line_free_at
            self._line_free_at = start + len(data) * byte_s
        sent = 0
        while sent < len(data) and not self._stop.is_set():
            due_count = min(len(data), int((time.monotonic() - start) / byte_s))
            if due_count > sent:
                self._write(dst, data[sent:due_count])
                sent = due_count
                continue
            self._stop.wait(start + (sent + 1) * byte_s - time.monotonic())

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        """Write all of ``data``, or drop what the other end's full buffer will not take."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                return  # nobody reads the other end and its buffer is full: bytes fall off
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                return
            view = view[written:]


def flip_one_bit(direction: Direction, data: bytes) -> bytes:
    """A :data:`Corrupter` for replies: flip one bit of every chunk, so every CRC fails."""
    if direction != "to_driver" or not data:
        return data
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :]


class SimMeter:
    """A simulated meter of one model, served by real pymodbus servers.

    ``model`` is a bundled model name or an already validated :class:`RegisterMap` (a custom
    map). ``unit_id`` defaults to the model's. Measurements start at 0 V / 0 A / 0 W, 50 Hz.
    """

    def __init__(
        self,
        model: str | RegisterMap = "sdm630",
        *,
        unit_id: int | None = None,
        energy_wh: float = 0.0,
    ) -> None:
        self.register_map = model if isinstance(model, RegisterMap) else load_model(model)
        self.unit_id = self.register_map.link.unit_id if unit_id is None else unit_id
        self._image: dict[int, int] = {}
        self._energy_wh = 0.0
        self._export_wh = 0.0
        self._fault: MeterFault | None = None
        self._drop_reply = False
        self.request_count = 0
        #: (function code, address, count) of the latest requests heard, oldest first.
        self.request_log: deque[tuple[int, int, int]] = deque(maxlen=1000)
        self._tcp: ModbusTcpServer | None = None
        self._rtu: ModbusSerialServer | None = None
        self._link: PtyLink | None = None
        self.set_measurements((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 50.0)
        self.energy_wh = energy_wh

    # ------------------------------------------------------------- measurements

    def set_measurements(
        self,
        voltage_v: tuple[float | None, float | None, float | None],
        current_a: tuple[float | None, float | None, float | None],
        power_w: tuple[float | None, float | None, float | None],
        frequency_hz: float = 50.0,
    ) -> None:
        """What the meter measures now (L1, L2, L3); total power is the sum of the phases.

        Quantities the model lacks are ignored. None serves the model's "not available"
        value (ABB); ValueError if the model has none or a value does not fit its register.
        """
        present = [p for p in power_w if p is not None]
        values: dict[str, float | None] = {"frequency_hz": frequency_hz}
        values["power_total_w"] = math.fsum(present) if present else None
        for prefix, unit, triple in (
            ("voltage", "v", voltage_v),
            ("current", "a", current_a),
            ("power", "w", power_w),
        ):
            for phase, value in enumerate(triple, start=1):
                values[f"{prefix}_l{phase}_{unit}"] = value
        self._encode(values)

    @property
    def energy_wh(self) -> float:
        """The import energy register, in Wh (as the meter counts it, before wire rounding)."""
        return self._energy_wh

    @energy_wh.setter
    def energy_wh(self, value: float) -> None:
        """Set the counter, e.g. restored from the simulator's state after a restart."""
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"energy must be a finite count >= 0 Wh, got {value}")
        self._energy_wh = value
        self._encode({"energy_import_wh": value, "energy_export_wh": self._export_wh})

    def add_energy_wh(self, wh: float) -> None:
        """Count ``wh`` more imported energy (>= 0)."""
        if not math.isfinite(wh) or wh < 0:
            raise ValueError(f"energy only counts up, got {wh} Wh")
        self.energy_wh = self._energy_wh + wh

    @property
    def export_wh(self) -> float:
        """The export energy register, in Wh (a grid meter behind PV counts what went out)."""
        return self._export_wh

    def add_export_wh(self, wh: float) -> None:
        """Count ``wh`` more exported energy (>= 0)."""
        if not math.isfinite(wh) or wh < 0:
            raise ValueError(f"energy only counts up, got {wh} Wh")
        self._export_wh += wh
        self._encode({"energy_export_wh": self._export_wh})

    def _encode(self, values: dict[str, float | None]) -> None:
        image = self.register_map.encode_image(values)
        self._image.update(image)  # only after every value encoded: no half-applied update

    # ------------------------------------------------------------------- faults

    @property
    def fault(self) -> MeterFault | None:
        return self._fault

    def set_fault(self, fault: MeterFault | None) -> None:
        """Inject a fault (see the module docstring) or clear it with None."""
        if fault not in (None, "offline", "garbage", "exception"):
            raise ValueError(f"unknown meter fault {fault!r}")
        self._fault = fault
        if self._link is not None:
            self._link.corrupt = flip_one_bit if fault == "garbage" else None

    # ---------------------------------------------------------------- servers

    def device(self, device_id: int = 0) -> SimDevice:
        """This meter as a pymodbus server device answering ``device_id``.

        Alone on a server it answers as id 0 (every unit id); replies for other ids are
        dropped in _trace_pdu, so a master addressing the wrong meter times out as on a real
        bus. On a shared bus (:mod:`hw_sim.meter_bus`) it answers its own unit id only.
        """
        blocks = [
            SimData(block.address, values=[0] * block.count, datatype=DataType.REGISTERS)
            for block in self.register_map.plan()
        ]
        return SimDevice(id=device_id, simdata=blocks, action=self._action)

    def note_request(self, pdu: ModbusPDU) -> None:
        """Count a request addressed to this meter (loop thread)."""
        self.request_count += 1
        self.request_log.append((pdu.function_code, pdu.address, pdu.count))

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus datastore hook (loop thread), before every access: refresh the registers."""
        if self._fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        if set_values is not None or function_code != self.register_map.function_code:
            return ExcCodes.ILLEGAL_FUNCTION
        if count > self.register_map.max_registers_per_request:
            return ExcCodes.ILLEGAL_VALUE
        for a in range(address, address + count):
            registers[a - start_address] = self._image.get(a, 0)
        return None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU, *, tcp: bool) -> ModbusPDU:
        """pymodbus server hook (loop thread): count requests, drop or spoil replies."""
        if not sending:
            self.note_request(pdu)
            return pdu
        if self._fault == "offline" or pdu.dev_id != self.unit_id:
            self._drop_reply = True
        elif self._fault == "garbage" and tcp and pdu.function_code in _READ_FUNCTIONS:
            pdu.registers = [0xFFFF] * len(pdu.registers)
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus server hook, called right after _trace_pdu for the same reply."""
        if sending and self._drop_reply:
            self._drop_reply = False
            return b""
        return data

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve Modbus TCP; port 0 picks a free one. Returns (host, port) actually bound."""
        if self._tcp is not None:
            raise RuntimeError("the TCP server is already running")
        server = ModbusTcpServer(
            self.device(),
            address=(host, port),
            trace_pdu=lambda sending, pdu: self._trace_pdu(sending, pdu, tcp=True),
            trace_packet=self._trace_packet,
        )
        await server.serve_forever(background=True)
        self._tcp = server
        listener = cast(asyncio.Server, server.transport)
        bound = listener.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def start_rtu(self, baudrate: int | None = None) -> str:
        """Serve Modbus RTU on a pty link; returns the port path the driver opens.

        ``baudrate`` turns on line-rate emulation at that rate (8N1); None relays as fast as
        the ptys go. A pty ignores baud rate and stop bits, but Linux refuses parity on it:
        configure the driver with ``parity = "N"`` (e.g. for the ORNO's 8E1 default).
        """
        if self._rtu is not None:
            raise RuntimeError("the RTU server is already running")
        link = PtyLink(
            baudrate=baudrate, corrupt=flip_one_bit if self._fault == "garbage" else None
        )
        try:
            # A pty ignores line settings but Linux refuses parity on one (tcsetattr EINVAL),
            # so the device end is always opened 8N1.
            server = ModbusSerialServer(
                self.device(),
                port=link.device_path,
                baudrate=baudrate or self.register_map.link.baudrate,
                parity="N",
                stopbits=self.register_map.link.stopbits,
                trace_pdu=lambda sending, pdu: self._trace_pdu(sending, pdu, tcp=False),
                trace_packet=self._trace_packet,
            )
            await server.serve_forever(background=True)
        except BaseException:
            link.close()
            raise
        self._rtu, self._link = server, link
        return link.driver_path

    @property
    def rtu_link(self) -> PtyLink | None:
        """The pty link while RTU is served (to add a custom corrupter in a test)."""
        return self._link

    async def stop(self) -> None:
        """Stop both servers and the link; idempotent. The meter may be started again."""
        servers: list[ModbusBaseServer | None] = [self._tcp, self._rtu]
        self._tcp = self._rtu = None
        for server in servers:
            if server is not None:
                await server.shutdown()
        link, self._link = self._link, None
        if link is not None:
            link.close()  # joins relay threads that wake at once: bounded to milliseconds
        # Let pymodbus' connection handlers run their close callbacks before we return.
        await asyncio.sleep(0)
