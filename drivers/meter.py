"""Modbus RTU / TCP energy meter driver (pymodbus 3.16 async clients).

:class:`ModbusMeter` implements :class:`drivers.base.EnergyMeter` for any model described by a
register map (:mod:`drivers.register_map`): it reads every quantity in the fewest requests the
model allows, decodes one value at a time, and checks the result before handing it out.

Failure handling, all inside :meth:`ModbusMeter.read`:

- A failed attempt is a timeout, a garbled reply (bad CRC or framing: bytes came back but no
  valid frame), a Modbus exception response, a refused connection, or implausible data: a
  non-finite value, a missing or negative import energy, or import energy going backwards.
- Up to ``retries`` further attempts follow, with exponential backoff (``backoff_s`` doubling up
  to ``backoff_max_s``); each retried failure emits ``DriverEvent(kind="retry")`` with the
  reason.
- When the attempts are used up the driver emits ``kind="offline"`` (fault ``METER_OFFLINE``)
  and raises :class:`~drivers.errors.PermanentFault`. While offline, each ``read`` makes one
  attempt and raises again without further events; the first success emits ``kind="online"``.
- Going offline forgets the last energy count: a meter that was swapped or reset (a count that
  stays lower across every retry) is reported offline once, then accepted with its new count.

Configuration (``[meter]``; every key optional except ``host`` for TCP):

====================  =================================  ========================================
key                   default                            meaning
====================  =================================  ========================================
model                 ``"sdm630"``                       a file in drivers/meter_models, or custom
map                   --                                 the register map when model = "custom"
transport             ``"rtu"``                          ``"rtu"`` (serial) or ``"tcp"``
serial_port           ``"/dev/serial0"``                 RTU: the RS485 adapter's device path
baudrate              the model's (e.g. 9600)            RTU
parity                the model's (``"N"``)              RTU: ``"N"``, ``"E"`` or ``"O"``
stopbits              the model's (1)                    RTU: 1 or 2
bytesize              8                                  RTU: 7 or 8
host                  --                                 TCP: meter or gateway address
port                  502                                TCP
unit_id               the model's (1)                    Modbus device id, 1-247
timeout_s             1.0                                per request
retries               3                                  further attempts after a failed one
backoff_s             0.2                                first pause before a retry
backoff_max_s         2.0                                longest pause before a retry
min_request_gap_s     the model's (Eastron 0.1)          silence between two requests
====================  =================================  ========================================

Threading: everything runs on the asyncio loop; pymodbus' async clients do the I/O without
blocking it (opening a serial port is a short synchronous ``open`` inside pymodbus).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from drivers.base import DriverEvent, EventSink, MeterReading, ignore_events
from drivers.errors import ConfigurationError, FaultKind, PermanentFault
from drivers.modbus_line import LineSettings, LineUnavailable, ModbusLine
from drivers.register_map import (
    ReadBlock,
    RegisterMap,
    check_baudrate,
    check_parity,
    check_stopbits,
    check_unit_id,
    load_model,
    parse_register_map,
)
from drivers.seams import HardwareSeams

DEVICE = "meter"
TRANSPORTS = ("rtu", "tcp")
_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


@dataclass(frozen=True, slots=True)
class MeterSettings:
    """How to reach the meter and how hard to try. Times in seconds."""

    transport: str = "rtu"
    serial_port: str = "/dev/serial0"
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    host: str = ""
    port: int = 502
    unit_id: int = 1
    timeout_s: float = 1.0
    retries: int = 3
    backoff_s: float = 0.2
    backoff_max_s: float = 2.0
    min_request_gap_s: float = 0.0

    @property
    def line(self) -> LineSettings:
        """The settings of the line the meter hangs on (shared by every meter on a bus)."""
        return LineSettings(
            transport=self.transport,
            port=self.serial_port,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            bytesize=self.bytesize,
            timeout_s=self.timeout_s,
            host=self.host,
            tcp_port=self.port,
        )

    @property
    def where(self) -> str:
        """The link, for messages: ``tcp 10.0.0.5:502`` or ``rtu /dev/ttyUSB0 9600 8N1``."""
        return self.line.where


class _AttemptFailed(Exception):
    """One read attempt failed; ``reason`` says why in words for the event log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _raise_lost_cancellation() -> None:
    """Raise the cancellation a finished request may have swallowed.

    pymodbus awaits each reply with ``asyncio.wait_for``, which on Python 3.11 returns the
    reply and drops a cancellation that lands in the same loop iteration (CPython gh-86296,
    fixed in 3.12). The polling task would then carry on reading the meter for ever, and the
    supervisor's shutdown, which waits for it, would never finish. The task still counts the
    request (``cancelling()``), so the cancellation is raised here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ModbusMeter:
    """An energy meter on Modbus RTU or TCP, read through pymodbus' async clients.

    ``on_event`` is called on the loop thread. Requests go through ``line``
    (:mod:`drivers.modbus_line`), shared with the other meters on the same RS-485 port; without
    one the meter has a line of its own. The pymodbus client is created on the first
    :meth:`read` (it needs the running loop) and reused; :meth:`close` releases it, and a later
    ``read`` connects again.
    """

    def __init__(
        self,
        register_map: RegisterMap,
        settings: MeterSettings,
        on_event: EventSink = ignore_events,
        line: ModbusLine | None = None,
    ) -> None:
        self._map = register_map
        self._settings = settings
        self._on_event = on_event
        self._plan: tuple[ReadBlock, ...] = register_map.plan()
        self._line = line or ModbusLine(settings.line, {settings.unit_id})
        self._online = True
        self._last_energy_wh: float | None = None
        self._lock = asyncio.Lock()

    @property
    def register_map(self) -> RegisterMap:
        return self._map

    @property
    def settings(self) -> MeterSettings:
        return self._settings

    @property
    def line(self) -> ModbusLine:
        """The line this meter's requests go through (shared on an RS-485 bus)."""
        return self._line

    @property
    def requests_per_read(self) -> int:
        """How many Modbus requests one successful :meth:`read` sends."""
        return len(self._plan)

    @property
    def online(self) -> bool:
        """False from the ``offline`` event until the next successful read."""
        return self._online

    async def read(self) -> MeterReading:
        """Read every quantity; retries inside. Raises PermanentFault(METER_OFFLINE).

        Concurrent calls are served one after the other: the line carries one request at a
        time, and the energy plausibility check needs readings in order.
        """
        async with self._lock:
            return await self._read_with_retries()

    async def _read_with_retries(self) -> MeterReading:
        attempts = 1 + (self._settings.retries if self._online else 0)
        attempt = 0
        while True:
            attempt += 1
            try:
                reading = await self._attempt()
            except _AttemptFailed as failure:
                if attempt >= attempts:
                    self._go_offline(failure.reason, attempts)
                    raise PermanentFault(FaultKind.METER_OFFLINE, failure.reason) from failure
                delay = min(
                    self._settings.backoff_s * 2 ** (attempt - 1), self._settings.backoff_max_s
                )
                self._emit(
                    "retry",
                    f"attempt {attempt} of {attempts} failed: {failure.reason}; "
                    f"retrying in {delay:.2f} s",
                )
                await asyncio.sleep(delay)
                continue
            if not self._online:
                self._online = True
                self._emit("online", f"{self._map.display_name} answers again on {self._where}")
            return reading

    async def close(self) -> None:
        """Close the connection; idempotent."""
        self._line.release(self)

    # ------------------------------------------------------------------ internals

    @property
    def _where(self) -> str:
        return self._settings.where

    def _emit(self, kind: str, detail: str, fault: FaultKind | None = None) -> None:
        self._on_event(DriverEvent(device=DEVICE, kind=kind, detail=detail, fault=fault))

    def _go_offline(self, reason: str, attempts: int) -> None:
        if not self._online:
            return
        self._online = False
        self._last_energy_wh = None
        self._emit(
            "offline",
            f"{self._map.display_name} on {self._where} failed {attempts} attempts; last: {reason}",
            FaultKind.METER_OFFLINE,
        )

    async def _attempt(self) -> MeterReading:
        values: dict[str, float | None] = {}
        for block in self._plan:
            registers = await self._request(block)
            values.update(self._map.decode_block(block, registers))
        taken_at = time.monotonic()
        energy_wh = self._check_plausible(values)
        self._last_energy_wh = energy_wh
        return self._reading(values, energy_wh, taken_at)

    async def _request(self, block: ReadBlock) -> list[int]:
        """One read request in the line's turn, after the quiet gap; returns ``block.count``.

        The turn is held for this one request only: a meter sharing the line waits for at
        most one reply timeout of ours, and our retry pauses leave the line to the others.
        """
        line = self._line
        async with line.turn():
            gap = line.last_request_end + self._settings.min_request_gap_s - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            try:
                client = await line.client(self)
            except LineUnavailable as exc:
                raise _AttemptFailed(exc.reason) from exc
            read = client.read_input_registers
            if self._map.function_code == 3:
                read = client.read_holding_registers
            line.reply_bytes_seen = False
            line.requests += 1
            # Guard against a request that never settles (pymodbus has its own timeout).
            guard_s = 2 * self._settings.timeout_s + 1.0
            try:
                async with asyncio.timeout(guard_s):
                    response: ModbusPDU = await read(
                        block.address, count=block.count, device_id=self._settings.unit_id
                    )
            except (ModbusIOException, TimeoutError) as exc:
                line.drop_connection()
                raise _AttemptFailed(self._no_reply_reason(block, exc)) from exc
            except ConnectionException as exc:
                raise _AttemptFailed(f"connection lost ({self._where}): {exc}") from exc
            except ModbusException as exc:
                raise _AttemptFailed(f"Modbus error reading {self._span(block)}: {exc}") from exc
            finally:
                line.last_request_end = time.monotonic()
        _raise_lost_cancellation()
        if response.isError():
            code = response.exception_code
            name = _EXCEPTION_NAMES.get(code, "unknown")
            raise _AttemptFailed(f"Modbus exception {code} ({name}) reading {self._span(block)}")
        registers = list(response.registers)
        if len(registers) != block.count:
            raise _AttemptFailed(f"reply to {self._span(block)} carried {len(registers)} registers")
        return registers

    def _span(self, block: ReadBlock) -> str:
        return f"FC{self._map.function_code:02d} {block.address}+{block.count}"

    def _no_reply_reason(self, block: ReadBlock, exc: Exception) -> str:
        if isinstance(exc, ModbusIOException) and "No response" not in str(exc):
            return f"bad reply to {self._span(block)}: {exc}"
        if self._line.reply_bytes_seen:
            return f"garbled reply to {self._span(block)} (bad CRC or framing)"
        return f"no reply to {self._span(block)} within {self._settings.timeout_s:g} s"

    def _check_plausible(self, values: Mapping[str, float | None]) -> float:
        for name, value in values.items():
            if value is not None and not math.isfinite(value):
                raise _AttemptFailed(f"implausible value {name} = {value}")
        energy_wh = values.get("energy_import_wh")
        if energy_wh is None:
            raise _AttemptFailed("import energy not available")
        if energy_wh < 0:
            raise _AttemptFailed(f"implausible import energy {energy_wh:.1f} Wh")
        if self._last_energy_wh is not None and energy_wh < self._last_energy_wh:
            raise _AttemptFailed(
                f"import energy went backwards from {self._last_energy_wh:.1f} "
                f"to {energy_wh:.1f} Wh"
            )
        return energy_wh

    def _reading(
        self, values: Mapping[str, float | None], energy_wh: float, taken_at: float
    ) -> MeterReading:
        def phases(prefix: str, unit: str) -> tuple[float | None, float | None, float | None]:
            return (
                values.get(f"{prefix}_l1_{unit}"),
                values.get(f"{prefix}_l2_{unit}"),
                values.get(f"{prefix}_l3_{unit}"),
            )

        power = phases("power", "w")
        total = values.get("power_total_w")
        if self._map.quantity("power_total_w") is None:
            present = [p for p in power if p is not None]
            total = sum(present) if present else None
        return MeterReading(
            voltage_v=phases("voltage", "v"),
            current_a=phases("current", "a"),
            power_w=power,
            total_power_w=total,
            energy_import_wh=energy_wh,
            frequency_hz=values.get("frequency_hz"),
            taken_at=taken_at,
            energy_export_wh=values.get("energy_export_wh"),
        )


# ---------------------------------------------------------------------- configuration

#: Every key of ``[meter]`` (and of a ``[connector.meter]`` table) :func:`from_config` reads.
CONFIG_KEYS = frozenset(
    {
        "model",
        "map",
        "transport",
        "serial_port",
        "baudrate",
        "parity",
        "stopbits",
        "bytesize",
        "host",
        "port",
        "unit_id",
        "timeout_s",
        "retries",
        "backoff_s",
        "backoff_max_s",
        "min_request_gap_s",
    }
)


def _get(section: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = section.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigurationError(f"meter.{key}", f"must be {kind.__name__}, got {value!r}")
    return value


def _in_range(key: str, value: float, low: float, high: float, unit: str = "") -> None:
    if not low <= value <= high:
        raise ConfigurationError(f"meter.{key}", f"must be {low:g}-{high:g}{unit}, got {value:g}")


def register_map_from_config(section: Mapping[str, Any]) -> RegisterMap:
    """The register map ``[meter]`` selects: a bundled model, or ``[meter.map]`` for custom."""
    model = _get(section, "model", str, "sdm630")
    if model == "custom":
        if "map" not in section:
            raise ConfigurationError("meter.map", 'is required when meter.model = "custom"')
        return parse_register_map(section["map"], model="custom", where="meter.map")
    if "map" in section:
        raise ConfigurationError("meter.map", 'is only used with meter.model = "custom"')
    return load_model(model, key="meter.model")


def settings_from_config(section: Mapping[str, Any], register_map: RegisterMap) -> MeterSettings:
    """Validate the link and retry keys of ``[meter]``; model defaults fill the gaps."""
    link = register_map.link
    transport = _get(section, "transport", str, "rtu")
    if transport not in TRANSPORTS:
        raise ConfigurationError("meter.transport", f"must be 'rtu' or 'tcp', got {transport!r}")
    host = _get(section, "host", str, "")
    if transport == "tcp" and not host:
        raise ConfigurationError("meter.host", "is required when meter.transport = 'tcp'")
    port = _get(section, "port", int, 502)
    _in_range("port", port, 1, 65535)
    serial_port = _get(section, "serial_port", str, "/dev/serial0")
    if transport == "rtu" and not serial_port:
        raise ConfigurationError("meter.serial_port", "must name the serial device")
    bytesize = _get(section, "bytesize", int, 8)
    if bytesize not in (7, 8):
        raise ConfigurationError("meter.bytesize", f"must be 7 or 8, got {bytesize}")
    timeout_s = _get(section, "timeout_s", float, 1.0)
    _in_range("timeout_s", timeout_s, 0.01, 30.0, " s")
    retries = _get(section, "retries", int, 3)
    _in_range("retries", retries, 0, 10)
    backoff_s = _get(section, "backoff_s", float, 0.2)
    _in_range("backoff_s", backoff_s, 0.0, 60.0, " s")
    backoff_max_s = _get(section, "backoff_max_s", float, max(2.0, backoff_s))
    _in_range("backoff_max_s", backoff_max_s, backoff_s, 300.0, " s")
    gap_s = _get(section, "min_request_gap_s", float, register_map.min_request_gap_s)
    _in_range("min_request_gap_s", gap_s, 0.0, 10.0, " s")
    return MeterSettings(
        transport=transport,
        serial_port=serial_port,
        baudrate=check_baudrate(_get(section, "baudrate", int, link.baudrate), "meter"),
        parity=check_parity(_get(section, "parity", str, link.parity), "meter"),
        stopbits=check_stopbits(_get(section, "stopbits", int, link.stopbits), "meter"),
        bytesize=bytesize,
        host=host,
        port=port,
        unit_id=check_unit_id(_get(section, "unit_id", int, link.unit_id), "meter"),
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        backoff_max_s=backoff_max_s,
        min_request_gap_s=gap_s,
    )


def from_config(
    section: Mapping[str, Any],
    seams: HardwareSeams,
    on_event: EventSink = ignore_events,
) -> ModbusMeter:
    """Build a meter from the ``[meter]`` table; ConfigurationError names ``meter.<key>``.

    ``seams.modbus_lines`` is where meters on the same RS-485 port find their shared line
    (the port itself comes from configuration); conflicting line settings or a unit id
    used twice on one port are refused here. Unknown keys are rejected so a typo cannot
    silently fall back to a default.
    """
    if not isinstance(section, Mapping):
        raise ConfigurationError("meter", "must be a table ([meter])")
    for key in section:
        if key not in CONFIG_KEYS:
            raise ConfigurationError(
                f"meter.{key}", f"unknown key; expected one of {', '.join(sorted(CONFIG_KEYS))}"
            )
    register_map = register_map_from_config(section)
    settings = settings_from_config(section, register_map)
    line = seams.modbus_lines.claim(settings.line, settings.unit_id)
    return ModbusMeter(register_map, settings, on_event, line)
