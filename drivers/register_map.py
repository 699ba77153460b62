"""Energy meter register maps as data: loading, validation, request planning, value codecs.

One TOML file per meter model lives in ``drivers/meter_models/<model>.toml``; the Modbus
driver (:mod:`drivers.meter`) and the simulated meter (``hw_sim.meter_server``) both read it,
so the two cannot drift. Adding a model is adding one file.

File shape (a user-defined map in the configuration has the same shape under
``[meter.map]``, with ``[[meter.map.quantities]]`` entries, and ``[meter] model = "custom"``)::

    name = "Eastron SDM630 (v2)"      # display name (required)
    function_code = 4                  # 3 = holding registers, 4 = input registers (required)
    max_registers_per_request = 80     # optional, default 125 (the Modbus limit)
    min_request_gap_s = 0.1            # optional, default 0.0: silence between two requests
    not_available_sentinels = false    # optional: all-ones (unsigned) / 0x7FFF.. (signed) = None

    [link]                             # optional serial defaults; config keys override them
    baudrate = 9600                    # default 9600
    parity = "N"                       # "N", "E" or "O"; default "N"
    stopbits = 1                       # 1 or 2; default 1
    unit_id = 1                        # 1-247; default 1

    [[quantities]]
    name = "voltage_l1_v"              # one of CANONICAL_UNITS (required)
    address = 0x0000                   # 0-based wire address (required)
    type = "float32"                   # float32, int16, uint16, int32, uint32, int64, uint64
    word_order = "big"                 # "big" (high word first, default) or "little"
    scale = 1.0                        # wire count x scale = value in `unit`; default 1.0
    unit = "V"                         # unit on the wire; default: the canonical unit
    scale_register = 40075             # optional: a SunSpec scale factor (int16 n, x 10^n)

A value on the wire converts to the canonical unit (the suffix of its name: V, A, W, Wh, Hz)
as ``raw x scale x unit factor`` (kW and kWh have factor 1000), times ``10^n`` when it has
a ``scale_register`` holding n (SunSpec's ``sunssf``; -32768 = not implemented, read as
None). A quantity is always read in the same request as its scale register. ``energy_import_wh`` is
required; every other quantity is optional (a model that lacks it reads as ``None``).

Errors raise :class:`drivers.errors.ConfigurationError` whose key names the place, for
example ``meter.map.quantities[2].type`` or ``meter_models/abb_b23.toml.function_code``.

Everything here is pure and thread-agnostic: no I/O except reading the model files.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any, Literal

from pymodbus.client.mixin import ModbusClientMixin

from drivers.errors import ConfigurationError

MODBUS_MAX_REGISTERS = 125  # per read request (FC03/FC04), by the Modbus specification

#: Every quantity a map may name, with its canonical unit (the unit in the name).
CANONICAL_UNITS: Mapping[str, str] = {
    "voltage_l1_v": "V",
    "voltage_l2_v": "V",
    "voltage_l3_v": "V",
    "current_l1_a": "A",
    "current_l2_a": "A",
    "current_l3_a": "A",
    "power_l1_w": "W",
    "power_l2_w": "W",
    "power_l3_w": "W",
    "power_total_w": "W",
    "energy_import_wh": "Wh",
    "energy_export_wh": "Wh",
    "frequency_hz": "Hz",
}
REQUIRED_QUANTITIES = frozenset({"energy_import_wh"})
ENERGY_QUANTITIES = frozenset({"energy_import_wh", "energy_export_wh"})

#: Unit on the wire -> (canonical unit it converts to, factor).
WIRE_UNITS: Mapping[str, tuple[str, float]] = {
    "V": ("V", 1.0),
    "A": ("A", 1.0),
    "W": ("W", 1.0),
    "kW": ("W", 1000.0),
    "Wh": ("Wh", 1.0),
    "kWh": ("Wh", 1000.0),
    "Hz": ("Hz", 1.0),
}

_MODEL_NAME = re.compile(r"^[a-z0-9_]+$")
_PARITIES = ("N", "E", "O")
_DT = ModbusClientMixin.DATATYPE


class DataType(StrEnum):
    """How a value is laid out in 16-bit registers."""

    FLOAT32 = "float32"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"

    @property
    def registers(self) -> int:
        """Number of 16-bit registers one value occupies."""
        return _LAYOUT[self][1]

    @property
    def pymodbus(self) -> ModbusClientMixin.DATATYPE:
        """The pymodbus ``DATATYPE`` used to convert it."""
        return _LAYOUT[self][0]

    @property
    def is_float(self) -> bool:
        return self is DataType.FLOAT32

    @property
    def is_signed(self) -> bool:
        return self in (DataType.INT16, DataType.INT32, DataType.INT64)

    @property
    def int_range(self) -> tuple[int, int]:
        """Smallest and largest integer the type holds (for integer types)."""
        bits = 16 * self.registers
        if self.is_signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1

    @property
    def not_available(self) -> int:
        """The "not available" sentinel (ABB): max signed value, or all ones if unsigned."""
        return self.int_range[1]


_LAYOUT: Mapping[DataType, tuple[ModbusClientMixin.DATATYPE, int]] = {
    DataType.FLOAT32: (_DT.FLOAT32, 2),
    DataType.INT16: (_DT.INT16, 1),
    DataType.UINT16: (_DT.UINT16, 1),
    DataType.INT32: (_DT.INT32, 2),
    DataType.UINT32: (_DT.UINT32, 2),
    DataType.INT64: (_DT.INT64, 4),
    DataType.UINT64: (_DT.UINT64, 4),
}

WordOrder = Literal["big", "little"]


@dataclass(frozen=True, slots=True)
class Quantity:
    """One measured value: where it lives on the wire and how it converts to its canonical unit."""

    name: str
    address: int
    data_type: DataType
    word_order: WordOrder
    scale: float
    unit: str
    scale_register: int | None = None  # address of a SunSpec sunssf (int16 power of ten)

    @property
    def span(self) -> tuple[int, int]:
        """First and one-past-last address a request must cover: itself and its scale."""
        if self.scale_register is None:
            return self.address, self.end
        return min(self.address, self.scale_register), max(self.end, self.scale_register + 1)

    @property
    def register_count(self) -> int:
        return self.data_type.registers

    @property
    def end(self) -> int:
        """First address after this quantity."""
        return self.address + self.register_count

    @property
    def factor(self) -> float:
        """Canonical units per wire count (scale x unit factor)."""
        return self.scale * WIRE_UNITS[self.unit][1]

    @property
    def resolution(self) -> float:
        """Smallest step the wire can express in canonical units (0.0 for floats)."""
        return 0.0 if self.data_type.is_float else abs(self.factor)


@dataclass(frozen=True, slots=True)
class LinkDefaults:
    """The serial settings a meter ships with; configuration may override each."""

    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    unit_id: int = 1


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers from ``address``, covering ``quantities``."""

    address: int
    count: int
    quantities: tuple[Quantity, ...]


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A validated meter model. Build it with :func:`load_model` or :func:`parse_register_map`."""

    model: str  # the file stem, or "custom"
    display_name: str
    function_code: int
    max_registers_per_request: int
    min_request_gap_s: float
    not_available_sentinels: bool
    link: LinkDefaults
    quantities: tuple[Quantity, ...]  # sorted by address

    def quantity(self, name: str) -> Quantity | None:
        """The quantity called ``name``, or None when this model lacks it."""
        for q in self.quantities:
            if q.name == name:
                return q
        return None

    def plan(self) -> tuple[ReadBlock, ...]:
        """Group the quantities into as few read requests as ``max_registers_per_request`` allows.

        A block may span registers nobody asked for when that saves a request. Greedy from the
        lowest address is optimal here: each block starts at the first quantity not yet
        covered and takes every following quantity that still ends within the limit.
        """
        blocks: list[ReadBlock] = []
        current: list[Quantity] = []
        for q in sorted(self.quantities, key=lambda q: q.span):
            start = min(c.span[0] for c in current) if current else q.span[0]
            if current and q.span[1] - start > self.max_registers_per_request:
                blocks.append(_block(current))
                current = []
            current.append(q)
        if current:
            blocks.append(_block(current))
        return tuple(blocks)

    def decode(
        self, q: Quantity, registers: Sequence[int], scale_exponent: int = 0
    ) -> float | None:
        """Decode one value from exactly its own registers; None for a "not available" sentinel.

        Values are decoded one at a time: older pymodbus 3.x releases reversed the whole
        register list for ``word_order="little"`` (pymodbus issue 2675), not each value.
        """
        if len(registers) != q.register_count:
            raise ValueError(f"{q.name}: needs {q.register_count} registers, got {len(registers)}")
        raw = ModbusClientMixin.convert_from_registers(
            list(registers), q.data_type.pymodbus, word_order=q.word_order
        )
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise TypeError(f"{q.name}: pymodbus returned {raw!r}")
        if (
            self.not_available_sentinels
            and not q.data_type.is_float
            and raw == q.data_type.not_available
        ):
            return None
        value = _scaled(float(raw), q.factor)
        # Divide for a negative exponent: 1234567000 / 1000 is exact, x 0.001 is not.
        return value / 10.0**-scale_exponent if scale_exponent < 0 else value * 10.0**scale_exponent

    def decode_block(self, block: ReadBlock, registers: Sequence[int]) -> dict[str, float | None]:
        """Decode every quantity of ``block`` from the registers its request returned."""
        if len(registers) != block.count:
            raise ValueError(f"block at {block.address}: expected {block.count} registers")
        values: dict[str, float | None] = {}
        for q in block.quantities:
            offset = q.address - block.address
            exponent = 0
            if q.scale_register is not None:
                exponent = _int16(registers[q.scale_register - block.address])
                if exponent == SUNSSF_NOT_IMPLEMENTED:
                    values[q.name] = None
                    continue
            values[q.name] = self.decode(q, registers[offset : offset + q.register_count], exponent)
        return values

    def encode_image(self, values: Mapping[str, float | None]) -> dict[int, int]:
        """Registers a meter would hold for ``values`` (canonical units); the simulator's half.

        Quantities sharing a scale register get the smallest power of ten (from 10^-3) at
        which every one of them fits its type, as a SunSpec device picks its scale.
        """
        image: dict[int, int] = {}
        groups: dict[int, list[Quantity]] = {}
        for name, value in values.items():
            q = self.quantity(name)
            if q is None:
                continue
            if q.scale_register is None:
                for offset, register in enumerate(self.encode(q, value)):
                    image[q.address + offset] = register
            else:
                groups.setdefault(q.scale_register, []).append(q)
        for scale_register, quantities in groups.items():
            for exponent in range(-3, 11):
                try:
                    encoded = [(q, self.encode(q, values[q.name], exponent)) for q in quantities]
                except ValueError:
                    continue
                break
            else:
                raise ValueError(f"no scale factor fits {[q.name for q in quantities]}")
            image[scale_register] = exponent & 0xFFFF
            for q, registers in encoded:
                for offset, register in enumerate(registers):
                    image[q.address + offset] = register
        return image

    def encode(self, q: Quantity, value: float | None, scale_exponent: int = 0) -> list[int]:
        """Registers a meter would hold for ``value`` (canonical unit); the simulator's half.

        Energy counters round down (a meter never shows energy not yet delivered); other
        integer values round to nearest. None encodes the "not available" sentinel, which
        only maps with ``not_available_sentinels`` have. Out-of-range values raise ValueError.
        """
        if value is None:
            if not self.not_available_sentinels or q.data_type.is_float:
                raise ValueError(f"{q.name}: this map has no 'not available' value")
            raw: int | float = q.data_type.not_available
        elif q.data_type.is_float:
            raw = value / q.factor / 10.0**scale_exponent
            if math.isfinite(raw) and abs(raw) > 3.4028234663852886e38:
                raise ValueError(f"{q.name}: {value} does not fit float32")
        else:
            if not math.isfinite(value):
                raise ValueError(f"{q.name}: {value} cannot be encoded as {q.data_type}")
            scaled = value / q.factor
            scaled = (
                scaled * 10.0**-scale_exponent
                if scale_exponent < 0
                else scaled / 10.0**scale_exponent
            )
            # Nudge by a tiny relative amount so 1234.0 / 0.1 = 12339.999.. floors to 12340
            # (a division is off by far less than 1e-12 of the value, and a count of 1e9
            # must not be nudged past the next integer).
            raw = (
                math.floor(scaled + 1e-12 * abs(scaled) + 1e-9)
                if q.name in ENERGY_QUANTITIES
                else round(scaled)
            )
            low, high = q.data_type.int_range
            if not low <= raw <= high:
                raise ValueError(f"{q.name}: {value} is out of range for {q.data_type}")
        return ModbusClientMixin.convert_to_registers(
            raw, q.data_type.pymodbus, word_order=q.word_order
        )


def _scaled(raw: float, factor: float) -> float:
    """``raw x factor``, dividing when factor is 1/n so 2301 x 0.1 gives 230.1, not 230.10..02."""
    if 0.0 < abs(factor) < 1.0:
        divisor = 1.0 / factor
        if abs(divisor - round(divisor)) < 1e-9 * abs(divisor):
            return raw / round(divisor)
    return raw * factor


def _block(quantities: list[Quantity]) -> ReadBlock:
    start = min(q.span[0] for q in quantities)
    return ReadBlock(start, max(q.span[1] for q in quantities) - start, tuple(quantities))


SUNSSF_NOT_IMPLEMENTED = -32768


def _int16(register: int) -> int:
    return register - 0x10000 if register & 0x8000 else register


# --------------------------------------------------------------------------- loading


def available_models() -> list[str]:
    """Names of the bundled model files, sorted."""
    folder = resources.files("drivers") / "meter_models"
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def load_model(model: str, *, key: str = "meter.model") -> RegisterMap:
    """Load and validate ``drivers/meter_models/<model>.toml``.

    An unknown name raises ConfigurationError on ``key``; a broken bundled file raises it
    naming the file and the field.
    """
    if not isinstance(model, str) or not _MODEL_NAME.match(model):
        raise ConfigurationError(key, f"must be a model name like 'sdm630', got {model!r}")
    resource = resources.files("drivers") / "meter_models" / f"{model}.toml"
    if not resource.is_file():
        raise ConfigurationError(
            key, f"unknown meter model {model!r}; known: {', '.join(available_models())}, custom"
        )
    where = f"meter_models/{model}.toml"
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(where, f"not valid TOML: {exc}") from exc
    return parse_register_map(data, model=model, where=where)


_TOP_KEYS = frozenset(
    {
        "name",
        "function_code",
        "max_registers_per_request",
        "min_request_gap_s",
        "not_available_sentinels",
        "link",
        "quantities",
    }
)
_LINK_KEYS = frozenset({"baudrate", "parity", "stopbits", "unit_id"})
_QUANTITY_KEYS = frozenset(
    {"name", "address", "type", "word_order", "scale", "unit", "scale_register"}
)
_MISSING = object()


def _field(table: Mapping[str, Any], where: str, key: str, kind: type, default: Any) -> Any:
    """Fetch ``table[key]`` as ``kind`` (ints accepted for floats, bools never for ints)."""
    value = table.get(key, default)
    if value is _MISSING:
        raise ConfigurationError(f"{where}.{key}", "is required")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigurationError(f"{where}.{key}", f"must be {kind.__name__}, got {value!r}")
    return value


def _reject_unknown(table: Mapping[str, Any], where: str, known: frozenset[str]) -> None:
    for key in table:
        if key not in known:
            raise ConfigurationError(
                f"{where}.{key}", f"unknown key; expected one of {', '.join(sorted(known))}"
            )


def parse_register_map(data: Mapping[str, Any], *, model: str, where: str) -> RegisterMap:
    """Validate a map given as nested mappings (a parsed model file or ``[meter.map]``).

    ``where`` prefixes every error key, e.g. ``meter.map`` gives ``meter.map.function_code``.
    """
    if not isinstance(data, Mapping):
        raise ConfigurationError(where, f"must be a table, got {type(data).__name__}")
    _reject_unknown(data, where, _TOP_KEYS)
    name = _field(data, where, "name", str, _MISSING)
    function_code = _field(data, where, "function_code", int, _MISSING)
    if function_code not in (3, 4):
        raise ConfigurationError(
            f"{where}.function_code", f"must be 3 (holding) or 4 (input), got {function_code}"
        )
    max_count = _field(data, where, "max_registers_per_request", int, MODBUS_MAX_REGISTERS)
    if not 1 <= max_count <= MODBUS_MAX_REGISTERS:
        raise ConfigurationError(
            f"{where}.max_registers_per_request", f"must be 1-125, got {max_count}"
        )
    gap = _field(data, where, "min_request_gap_s", float, 0.0)
    if not 0.0 <= gap <= 10.0:
        raise ConfigurationError(f"{where}.min_request_gap_s", f"must be 0-10 s, got {gap}")
    sentinels = _field(data, where, "not_available_sentinels", bool, False)
    link = parse_link(_field(data, where, "link", Mapping, {}), f"{where}.link")

    raw_quantities = _field(data, where, "quantities", list, _MISSING)
    quantities = tuple(
        sorted(
            (
                _quantity(entry, f"{where}.quantities[{i}]")
                for i, entry in enumerate(raw_quantities)
            ),
            key=lambda q: q.address,
        )
    )
    _check_quantities(quantities, where, max_count)
    return RegisterMap(
        model=model,
        display_name=name,
        function_code=function_code,
        max_registers_per_request=max_count,
        min_request_gap_s=gap,
        not_available_sentinels=sentinels,
        link=link,
        quantities=quantities,
    )


def parse_link(table: Mapping[str, Any], where: str) -> LinkDefaults:
    """Validate a ``[link]`` table."""
    _reject_unknown(table, where, _LINK_KEYS)
    defaults = LinkDefaults()
    return LinkDefaults(
        baudrate=check_baudrate(_field(table, where, "baudrate", int, defaults.baudrate), where),
        parity=check_parity(_field(table, where, "parity", str, defaults.parity), where),
        stopbits=check_stopbits(_field(table, where, "stopbits", int, defaults.stopbits), where),
        unit_id=check_unit_id(_field(table, where, "unit_id", int, defaults.unit_id), where),
    )


def check_baudrate(value: int, where: str) -> int:
    if not 300 <= value <= 921600:
        raise ConfigurationError(f"{where}.baudrate", f"must be 300-921600, got {value}")
    return value


def check_parity(value: str, where: str) -> str:
    if value not in _PARITIES:
        raise ConfigurationError(f"{where}.parity", f"must be 'N', 'E' or 'O', got {value!r}")
    return value


def check_stopbits(value: int, where: str) -> int:
    if value not in (1, 2):
        raise ConfigurationError(f"{where}.stopbits", f"must be 1 or 2, got {value}")
    return value


def check_unit_id(value: int, where: str) -> int:
    if not 1 <= value <= 247:
        raise ConfigurationError(f"{where}.unit_id", f"must be 1-247, got {value}")
    return value


def _quantity(entry: Any, where: str) -> Quantity:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(where, f"must be a table, got {type(entry).__name__}")
    _reject_unknown(entry, where, _QUANTITY_KEYS)
    name = _field(entry, where, "name", str, _MISSING)
    if name not in CANONICAL_UNITS:
        raise ConfigurationError(
            f"{where}.name",
            f"unknown quantity {name!r}; expected one of {', '.join(CANONICAL_UNITS)}",
        )
    address = _field(entry, where, "address", int, _MISSING)
    type_name = _field(entry, where, "type", str, _MISSING)
    try:
        data_type = DataType(type_name)
    except ValueError:
        raise ConfigurationError(
            f"{where}.type", f"must be one of {', '.join(DataType)}, got {type_name!r}"
        ) from None
    if not 0 <= address <= 0x10000 - data_type.registers:
        raise ConfigurationError(f"{where}.address", f"must be 0-65535 (0-based), got {address}")
    word_order = _field(entry, where, "word_order", str, "big")
    if word_order not in ("big", "little"):
        raise ConfigurationError(
            f"{where}.word_order", f"must be 'big' or 'little', got {word_order!r}"
        )
    scale = _field(entry, where, "scale", float, 1.0)
    if not math.isfinite(scale) or scale == 0.0:
        raise ConfigurationError(f"{where}.scale", f"must be a finite non-zero number, got {scale}")
    canonical = CANONICAL_UNITS[name]
    unit = _field(entry, where, "unit", str, canonical)
    if unit not in WIRE_UNITS or WIRE_UNITS[unit][0] != canonical:
        allowed = [u for u, (c, _) in WIRE_UNITS.items() if c == canonical]
        raise ConfigurationError(
            f"{where}.unit", f"{name} is measured in {' or '.join(allowed)}, got {unit!r}"
        )
    scale_register = (
        _field(entry, where, "scale_register", int, None) if "scale_register" in entry else None
    )
    if scale_register is not None and not 0 <= scale_register <= 0xFFFF:
        raise ConfigurationError(
            f"{where}.scale_register", f"must be 0-65535 (0-based), got {scale_register}"
        )
    return Quantity(
        name,
        address,
        data_type,
        "big" if word_order == "big" else "little",
        scale,
        unit,
        scale_register,
    )


def _check_quantities(quantities: tuple[Quantity, ...], where: str, max_count: int) -> None:
    key = f"{where}.quantities"
    if not quantities:
        raise ConfigurationError(key, "must list at least one quantity")
    names = [q.name for q in quantities]
    for name in names:
        if names.count(name) > 1:
            raise ConfigurationError(key, f"{name} is listed more than once")
    missing = REQUIRED_QUANTITIES - set(names)
    if missing:
        raise ConfigurationError(key, f"must include {', '.join(sorted(missing))}")
    for before, after in itertools.pairwise(quantities):
        if after.address < before.end:
            raise ConfigurationError(
                key, f"{before.name} and {after.name} overlap at address {after.address}"
            )
    for q in quantities:
        if q.span[1] - q.span[0] > max_count:
            raise ConfigurationError(key, f"{q.name} is longer than max_registers_per_request")
