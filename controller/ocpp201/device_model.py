"""The 2.0.1 device model as data: which component variables exist, their type, bounds,
mutability and whether they persist; and their values, kept in the state database.

OCPP 2.0.1 configures a charging station through variables of components
(``OCPPCommCtrlr.HeartbeatInterval``) rather than 1.6's flat keys. :data:`VARIABLES` is the
table this charger knows; :class:`DeviceModel` holds their Actual values (defaults, then
the ``--ocpp-keys`` preset of a new state directory, then what was stored since) and
implements :class:`~controller.csms.security.SettingStore`, so the version-neutral link
security reads and changes SecurityCtrlr's SecurityProfile and BasicAuthPassword the way it
reads 1.6's keys. A variable is named ``Component.Variable`` in that protocol.

The ``--ocpp-keys`` preset for 2.0.1 is a TOML table per component::

    [OCPPCommCtrlr]
    HeartbeatInterval = 10

with the strictness of 1.6: an unknown component or variable, a read-only variable or a
bad value is :class:`~controller.config.ConfigError` (exit 2) naming it. Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from controller.config import ConfigError
from controller.csms.link import LinkTiming
from controller.ocpp201 import tx_points
from controller.storage import Storage, StorageError

log = logging.getLogger(__name__)

#: The state database's settings namespace of the 2.0.1 variables.
NAMESPACE = "ocpp201"


class Mutability(StrEnum):
    """OCPP 2.0.1 MutabilityEnumType."""

    READ_ONLY = "ReadOnly"
    READ_WRITE = "ReadWrite"
    WRITE_ONLY = "WriteOnly"


class DataType(StrEnum):
    """OCPP 2.0.1 DataEnumType (the subset this table uses)."""

    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    STRING = "string"
    MEMBER_LIST = "MemberList"
    SEQUENCE_LIST = "SequenceList"
    OPTION_LIST = "OptionList"
    DATE_TIME = "dateTime"


class SetStatus(StrEnum):
    """OCPP 2.0.1 SetVariableStatusEnumType."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"
    REBOOT_REQUIRED = "RebootRequired"


@dataclass(frozen=True, slots=True)
class VariableDef:
    """One component variable: its Actual attribute's type, default and bounds.

    ``min_value``/``max_value`` bound a number; ``max_length`` a string; ``members`` are
    what a MemberList may hold (None: :data:`MEASURANDS`); ``secret`` variables are never
    shown (WriteOnly); ``reboot_required`` ones apply at the next boot. ``instance`` tells
    the instances of one variable apart (DeviceDataCtrlr.ItemsPerMessage's GetReport,
    GetVariables, SetVariables): a request names it in the variable's ``instance``.
    """

    component: str
    variable: str
    data_type: DataType
    default: str
    mutability: Mutability = Mutability.READ_WRITE
    persistent: bool = True
    min_value: int | None = None
    max_value: int | None = None
    max_length: int | None = None
    unit: str | None = None
    reboot_required: bool = False
    members: tuple[str, ...] | None = None
    instance: str | None = None

    @property
    def name(self) -> str:
        return variable_key(self.component, self.variable, self.instance)

    @property
    def secret(self) -> bool:
        return self.mutability is Mutability.WRITE_ONLY

    @property
    def bounds(self) -> dict[str, str]:
        """The read-only MinSet/MaxSet attributes of a bounded integer (the minimal and
        maximal value allowed for it, as AttributeEnumType defines them), by type."""
        bounds = {}
        if self.data_type is DataType.INTEGER and self.min_value is not None:
            bounds["MinSet"] = str(self.min_value)
        if self.data_type is DataType.INTEGER and self.max_value is not None:
            bounds["MaxSet"] = str(self.max_value)
        return bounds

    def problem(self, value: str) -> str | None:
        """Why ``value`` cannot be this variable's Actual value, or None."""
        if self.data_type is DataType.INTEGER:
            try:
                number = int(value)
            except ValueError:
                return f"must be an integer, got {value!r}"
            if self.min_value is not None and number < self.min_value:
                return f"must be at least {self.min_value}, got {number}"
            if self.max_value is not None and number > self.max_value:
                return f"must be at most {self.max_value}, got {number}"
        elif self.data_type is DataType.DECIMAL:
            try:
                decimal = float(value)
            except ValueError:
                return f"must be a number, got {value!r}"
            if not math.isfinite(decimal):
                return f"must be a finite number, got {value!r}"
            if self.min_value is not None and decimal < self.min_value:
                return f"must be at least {self.min_value}, got {value}"
            if self.max_value is not None and decimal > self.max_value:
                return f"must be at most {self.max_value}, got {value}"
        elif self.data_type is DataType.BOOLEAN:
            if value not in ("true", "false"):
                return f"must be true or false, got {value!r}"
        elif self.data_type is DataType.MEMBER_LIST:
            members = self.members or MEASURANDS
            unknown = [m for m in value.split(",") if m and m not in members]
            if unknown:
                return f"unknown member(s) {', '.join(unknown)}; known: {', '.join(members)}"
        elif self.data_type is DataType.SEQUENCE_LIST and self.members is not None:
            unknown = [m for m in value.split(",") if m and m not in self.members]
            if unknown:
                return f"unknown item(s) {', '.join(unknown)}; known: {', '.join(self.members)}"
        elif self.data_type is DataType.SEQUENCE_LIST and not _numbers(value):
            return f"must be a comma-separated list of numbers, got {value!r}"
        if self.max_length is not None and len(value) > self.max_length:
            return f"must be at most {self.max_length} characters, got {len(value)}"
        return None


def variable_key(component: str, variable: str, instance: str | None = None) -> str:
    """How the model names a variable: ``Component.Variable``, or
    ``Component.Variable[Instance]`` for one instance of it."""
    key = f"{component}.{variable}"
    return key if instance is None else f"{key}[{instance}]"


def requested_key(component: Mapping[str, Any], variable: Mapping[str, Any]) -> str:
    """The model's name of the variable a request's ComponentType and VariableType name."""
    return variable_key(component["name"], variable["name"], variable.get("instance"))


def _numbers(value: str) -> bool:
    """Whether ``value`` is a SequenceList of numbers (empty is)."""
    return all(item.isdigit() for item in value.split(",") if item)


def _int(component: str, variable: str, default: int, **kw: object) -> VariableDef:
    return VariableDef(component, variable, DataType.INTEGER, str(default), **kw)  # type: ignore[arg-type]


def _bool(component: str, variable: str, default: bool, **kw: object) -> VariableDef:
    text = "true" if default else "false"
    return VariableDef(component, variable, DataType.BOOLEAN, text, **kw)  # type: ignore[arg-type]


def _bool_ro(component: str, variable: str, default: bool) -> VariableDef:
    value = "true" if default else "false"
    return VariableDef(component, variable, DataType.BOOLEAN, value, Mutability.READ_ONLY)


#: The measurands a SampledDataCtrlr list may name (what the meter reading holds).
MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "Frequency",
)


def _measurands(component: str, variable: str, default: str) -> VariableDef:
    return VariableDef(component, variable, DataType.MEMBER_LIST, default, max_length=500)


#: The local list's capacity (LocalAuthListCtrlr.Entries' maxLimit), as for 1.6.
LOCAL_LIST_ENTRIES_MAX = 1000
#: The cache's capacity in bytes of stored text (AuthCacheCtrlr.Storage's maxLimit): some
#: 700 cards with a parent and an expiry.
AUTH_CACHE_BYTES_MAX = 64 * 1024

#: The local list, the cache and reservations (C10, D01-D04, H01-H04), and whether a
#: RequestStartTransaction's idToken is authorized like a card first (F01). Entries and the
#: cache's Storage are live sizes (see :meth:`DeviceModel.provide`); Policy is the cache's
#: replacement once Storage is full (:mod:`controller.csms.auth`); ItemsPerMessage and
#: BytesPerMessage bound one SendLocalList (250 entries of idToken, status, expiry and group
#: stay far below the link's 256 KiB frame limit, :class:`controller.csms.link.LinkTiming`).
AUTHORIZATION_VARIABLES: tuple[VariableDef, ...] = (
    _bool("AuthCtrlr", "AuthorizeRemoteStart", False),
    _bool("LocalAuthListCtrlr", "Enabled", True),
    _bool("LocalAuthListCtrlr", "Available", True, mutability=Mutability.READ_ONLY),
    _int(
        "LocalAuthListCtrlr",
        "Entries",
        0,
        mutability=Mutability.READ_ONLY,
        persistent=False,
        max_value=LOCAL_LIST_ENTRIES_MAX,
    ),
    _int("LocalAuthListCtrlr", "ItemsPerMessage", 250, mutability=Mutability.READ_ONLY),
    _int("LocalAuthListCtrlr", "BytesPerMessage", 128 * 1024, mutability=Mutability.READ_ONLY),
    _bool("AuthCacheCtrlr", "Available", True, mutability=Mutability.READ_ONLY),
    _int("AuthCacheCtrlr", "LifeTime", 7 * 86400, min_value=1, unit="s"),
    _int(
        "AuthCacheCtrlr",
        "Storage",
        0,
        mutability=Mutability.READ_ONLY,
        persistent=False,
        max_value=AUTH_CACHE_BYTES_MAX,
        unit="B",
    ),
    VariableDef("AuthCacheCtrlr", "Policy", DataType.OPTION_LIST, "LRU", Mutability.READ_ONLY),
    _bool("ReservationCtrlr", "Enabled", True),
    _bool("ReservationCtrlr", "Available", True, mutability=Mutability.READ_ONLY),
    _bool("ReservationCtrlr", "NonEvseSpecific", True),
)

#: Provisioning (issue 14, block B: NetworkConfigurationPriority, :mod:`.network_profiles`)
#: and the transaction points (E01-E07, :mod:`.tx_points`: only the members this charger
#: can detect; the default is where the session begins and ends).
PROVISIONING_VARIABLES: tuple[VariableDef, ...] = (
    VariableDef(
        "TxCtrlr",
        "TxStartPoint",
        DataType.MEMBER_LIST,
        "Authorized",  # with the session; EVConnected begins it at the plug-in (E02)
        max_length=100,
        members=tx_points.MEMBERS,
    ),
    VariableDef(
        "TxCtrlr",
        "TxStopPoint",
        DataType.MEMBER_LIST,
        "EVConnected,Authorized",
        max_length=100,
        members=tx_points.MEMBERS,
    ),
    _int("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", 3, min_value=1),
    VariableDef(
        "OCPPCommCtrlr",
        "NetworkConfigurationPriority",
        DataType.SEQUENCE_LIST,
        "",
        max_length=20,
        reboot_required=True,
    ),
)

#: DeviceDataCtrlr's message bounds, one instance per message (B06-B08): a NotifyReport
#: (and NotifyMonitoringReport) part holds at most ItemsPerMessage[GetReport] items of about
#: BytesPerMessage[GetReport] bytes (:mod:`.reports`); a GetVariables or SetVariables with
#: more items than its instance allows is answered OccurrenceConstraintViolation; what
#: bounds their bytes is the link's frame limit (:class:`controller.csms.link.LinkTiming`).
ITEMS_PER_REQUEST = 50
FRAME_BYTES = LinkTiming().max_frame_bytes
READ_ONLY = Mutability.READ_ONLY
_REQUESTS = ("GetVariables", "SetVariables")
DEVICE_DATA_VARIABLES: tuple[VariableDef, ...] = (
    _int("DeviceDataCtrlr", "ItemsPerMessage", 10, mutability=READ_ONLY, instance="GetReport"),
    _int("DeviceDataCtrlr", "BytesPerMessage", 8192, mutability=READ_ONLY, instance="GetReport"),
    *(
        _int(
            "DeviceDataCtrlr",
            "ItemsPerMessage",
            ITEMS_PER_REQUEST,
            mutability=READ_ONLY,
            instance=i,
        )
        for i in _REQUESTS
    ),
    *(
        _int("DeviceDataCtrlr", "BytesPerMessage", FRAME_BYTES, mutability=READ_ONLY, instance=i)
        for i in _REQUESTS
    ),
)

#: Every variable this charger knows (the components of the first 2.0.1 slice).
VARIABLES: tuple[VariableDef, ...] = (
    _int("OCPPCommCtrlr", "HeartbeatInterval", 300, min_value=0, unit="s"),
    _int("OCPPCommCtrlr", "WebSocketPingInterval", 30, min_value=0, unit="s"),
    _int("OCPPCommCtrlr", "MessageTimeout", 30, min_value=1, unit="s", reboot_required=True),
    _int("OCPPCommCtrlr", "MessageAttemptsTransactionEvent", 3, min_value=1),
    _int("OCPPCommCtrlr", "MessageAttemptIntervalTransactionEvent", 60, min_value=0, unit="s"),
    _int("SecurityCtrlr", "SecurityProfile", 0, min_value=0, max_value=3),
    VariableDef(
        "SecurityCtrlr",
        "BasicAuthPassword",
        DataType.STRING,
        "",
        mutability=Mutability.WRITE_ONLY,
        max_length=40,
    ),
    VariableDef(
        "SecurityCtrlr", "Identity", DataType.STRING, "", Mutability.READ_ONLY, max_length=48
    ),
    *DEVICE_DATA_VARIABLES,
    _bool("AuthCtrlr", "LocalAuthorizeOffline", True),
    _bool("AuthCtrlr", "LocalPreAuthorize", False),
    _bool("AuthCtrlr", "OfflineTxForUnknownIdEnabled", False),
    _bool("AuthCacheCtrlr", "Enabled", True),
    _bool("TxCtrlr", "StopTxOnEVSideDisconnect", True),
    _int("TxCtrlr", "EVConnectionTimeOut", 60, min_value=1, unit="s"),
    _int("SampledDataCtrlr", "TxUpdatedInterval", 60, min_value=0, unit="s"),
    _measurands(
        "SampledDataCtrlr",
        "TxUpdatedMeasurands",
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import",
    ),
    # --- security (A02-A03, M03-M05): certificates; SecurityProfile and the password above
    VariableDef(  # the O of the charger's CSR (A02.FR.02): SignCertificate waits for it
        "SecurityCtrlr", "OrganizationName", DataType.STRING, "", max_length=50
    ),
    # installed CA certificates: a live value (DeviceModel.provide), never stored
    _int("SecurityCtrlr", "CertificateEntries", 0, mutability=Mutability.READ_ONLY),
    _int("SecurityCtrlr", "MaxCertificateChainSize", 10000, mutability=Mutability.READ_ONLY),
    _bool_ro("SecurityCtrlr", "AdditionalRootCertificateCheck", False),
    # an accepted SignCertificate without CertificateSigned is sent again (A02.FR.17-19)
    _int("SecurityCtrlr", "CertSigningWaitMinimum", 60, min_value=0, unit="s"),
    _int("SecurityCtrlr", "CertSigningRepeatTimes", 3, min_value=0),
    *AUTHORIZATION_VARIABLES,
    # --- smart charging (K): what SetChargingProfile may install; Entries is live ---------
    _bool("SmartChargingCtrlr", "Enabled", True),
    VariableDef("SmartChargingCtrlr", "Available", DataType.BOOLEAN, "true", Mutability.READ_ONLY),
    _int("SmartChargingCtrlr", "Entries", 0, mutability=Mutability.READ_ONLY, max_value=16),
    _int("SmartChargingCtrlr", "ProfileStackLevel", 8, mutability=Mutability.READ_ONLY),
    _int("SmartChargingCtrlr", "PeriodsPerSchedule", 48, mutability=Mutability.READ_ONLY),
    VariableDef(
        "SmartChargingCtrlr",
        "RateUnit",
        DataType.MEMBER_LIST,
        "A,W",
        Mutability.READ_ONLY,
        members=("A", "W"),
    ),
    VariableDef(
        "SmartChargingCtrlr",
        "LimitChangeSignificance",
        DataType.DECIMAL,
        "10",
        min_value=0,
        max_value=100,
        unit="Percent",
    ),
    # --- clock-aligned meter values (J01); off until configured, so that a new station
    # sends no unasked-for traffic (a 2.0.1 CSMS sets AlignedDataCtrlr at its first boot) ---
    _int("AlignedDataCtrlr", "Interval", 0, min_value=0, max_value=86400, unit="s"),
    _measurands("AlignedDataCtrlr", "Measurands", "Energy.Active.Import.Register"),
    _bool("AlignedDataCtrlr", "SendDuringIdle", False),
    _int("AlignedDataCtrlr", "TxEndedInterval", 0, min_value=0, max_value=86400, unit="s"),
    _measurands("AlignedDataCtrlr", "TxEndedMeasurands", "Energy.Active.Import.Register"),
    *PROVISIONING_VARIABLES,
    # --- A03: renew the client certificate this many days before it expires (a vendor
    # variable: the specification leaves "due to expire" to the station; 0: only on request)
    _int("SecurityCtrlr", "CertRenewalMarginDays", 30, min_value=0, max_value=3650, unit="d"),
    # --- K12: NotifyChargingLimit carries the external limit as a schedule when true
    _bool("SmartChargingCtrlr", "NotifyChargingLimitWithSchedules", False),
    # --- ClockCtrlr (B, clock): the station's time is the operating system's, kept by NTP
    # (systemd-timesyncd on Raspberry Pi OS); picharge never sets the clock itself, so the
    # source is read-only. DateTime is live (DeviceModel.provide), never stored.
    VariableDef("ClockCtrlr", "DateTime", DataType.DATE_TIME, "", Mutability.READ_ONLY),
    VariableDef(
        "ClockCtrlr",
        "TimeSource",
        DataType.SEQUENCE_LIST,
        "NTP",
        Mutability.READ_ONLY,
        members=("NTP",),
    ),
)


def _toml_value(value: object) -> str:
    """A preset value as the variable's text: booleans lower case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    raise ValueError(f"must be a boolean, an integer or a string, got {type(value).__name__}")


class DeviceModel:
    """The Actual values of :data:`VARIABLES`, persisted in :class:`Storage`.

    ``defaults`` (``Component.Variable`` -> value) override the table's defaults, e.g. the
    ``[ocpp]`` password and security profile and the charger's identity.
    """

    def __init__(self, storage: Storage, defaults: Mapping[str, str] | None = None) -> None:
        self._storage = storage
        self._defs = {d.name: d for d in VARIABLES}
        self._components = {d.component for d in VARIABLES}
        self._values = {d.name: d.default for d in VARIABLES}
        self._values.update(defaults or {})
        self._callbacks: list[Callable[[str, str], None]] = []
        self._checks: dict[str, Callable[[str], str | None]] = {}
        self._live: dict[str, Callable[[], str]] = {}
        self._lock = asyncio.Lock()  # one change at a time: storage order = memory order

    def definition(self, name: str) -> VariableDef | None:
        return self._defs.get(name)

    def definitions(self) -> tuple[VariableDef, ...]:
        """Every variable, in the table's order (reports)."""
        return tuple(self._defs.values())

    def knows_component(self, component: str) -> bool:
        return component in self._components

    async def load(self) -> None:
        """Apply the stored values over the defaults; a stored value no longer valid (or of
        a variable gone or read-only) is logged and ignored."""
        for name, value in (await self._storage.load_settings(NAMESPACE)).items():
            defn = self._defs.get(name)
            if defn is None or defn.mutability is Mutability.READ_ONLY or defn.problem(value):
                log.warning("ignoring stored 2.0.1 variable %s: unknown, read-only or bad", name)
                continue
            self._values[name] = value

    def read_preset(self, path: Path) -> dict[str, str]:
        """Read and check a 2.0.1 ``--ocpp-keys`` file (a table per component):
        {``Component.Variable``: value}. :class:`ConfigError` names what is wrong."""
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("--ocpp-keys", f"cannot read {path}: {exc.strerror}") from exc
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("--ocpp-keys", f"{path} is not valid TOML: {exc}") from exc
        preset: dict[str, str] = {}
        for component, table in doc.items():
            if not isinstance(table, dict):
                raise ConfigError(
                    f"--ocpp-keys {component}",
                    "OCPP 2.0.1 presets are a table per component, e.g. [OCPPCommCtrlr]",
                )
            if not self.knows_component(component):
                raise ConfigError(f"--ocpp-keys [{component}]", "unknown OCPP 2.0.1 component")
            for variable, raw in table.items():
                flag = f"--ocpp-keys {component}.{variable}"
                defn = self._defs.get(f"{component}.{variable}")
                if defn is None:
                    raise ConfigError(flag, f"unknown variable of {component}")
                if defn.mutability is Mutability.READ_ONLY:
                    raise ConfigError(flag, "is read-only: it describes the charger")
                try:
                    value = _toml_value(raw)
                except ValueError as exc:
                    raise ConfigError(flag, str(exc)) from None
                problem = defn.problem(value)
                if problem is not None:
                    raise ConfigError(flag, problem)
                preset[defn.name] = value
        return preset

    async def preset(self, path: Path) -> None:
        """Apply a preset file when the state directory is new (else log and skip); the
        whole file is checked before anything is stored."""
        if not self._storage.is_new:
            log.info("state directory is not new: preset %s not applied", path)
            return
        values = self.read_preset(path)
        async with self._lock:
            for name, value in values.items():
                await self._store(self._defs[name], value)
        log.info("preset %d OCPP 2.0.1 variables from %s", len(values), path)

    # --- SettingStore ---------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The Actual value of ``Component.Variable``; None for an unknown one."""
        live = self._live.get(key)
        return live() if live is not None else self._values.get(key)

    def is_live(self, key: str) -> bool:
        """Whether ``key``'s Actual value is measured at each read (see :meth:`provide`):
        read-only, yet not constant."""
        return key in self._live

    def provide(self, key: str, value: Callable[[], str]) -> None:
        """The Actual value of the read-only ``key`` is ``value()`` at each read from now on
        (a count kept elsewhere, e.g. LocalAuthListCtrlr.Entries). Loop thread only."""
        defn = self._defs[key]
        if defn.mutability is not Mutability.READ_ONLY:
            raise ValueError(f"{key} is not read-only: its value is the stored one")
        self._live[key] = value

    def get_bool(self, key: str) -> bool:
        return self._values[key] == "true"

    def get_list(self, key: str) -> list[str]:
        return [item for item in self._values[key].split(",") if item]

    def get_float(self, key: str) -> float:
        """A decimal (or integer) variable's Actual value."""
        return float(self._values[key])

    def get_int(self, key: str) -> int:
        defn = self._defs[key]
        if defn.data_type is not DataType.INTEGER:
            raise TypeError(f"{key} is a {defn.data_type} variable")
        return int(self.get(key) or defn.default)

    def add_check(self, key: str, check: Callable[[str], str | None]) -> None:
        """``check(value)`` names why a SetVariables of ``key`` is Rejected, or None."""
        if key not in self._defs:
            raise KeyError(key)
        self._checks[key] = check

    def on_change(self, callback: Callable[[str, str], None]) -> None:
        """``callback(name, value)`` after each stored change; one that raises is logged."""
        self._callbacks.append(callback)

    async def change(self, key: str, value: str) -> SetStatus:
        """Set the Actual value of ``key``: check, store, then announce; the status to send
        (SetVariables' per-variable status for the Actual attribute)."""
        defn = self._defs.get(key)
        if defn is None:
            component = key.partition(".")[0]
            if not self.knows_component(component):
                return SetStatus.UNKNOWN_COMPONENT
            return SetStatus.UNKNOWN_VARIABLE
        shown = "(secret)" if defn.secret else repr(value)
        check = self._checks.get(key)
        problem = defn.problem(value)
        if problem is None and defn.mutability is Mutability.READ_ONLY:
            problem = "read-only"
        if problem is None and check is not None:
            problem = check(value)
        if problem is not None:
            log.info("SetVariables %s=%s rejected: %s", key, shown, problem)
            return SetStatus.REJECTED
        async with self._lock:
            try:
                await self._store(defn, value)
            except StorageError as exc:
                log.error("SetVariables %s=%s not stored: %s", key, shown, exc)
                return SetStatus.REJECTED
        log.info("variable %s = %s", key, shown)
        return SetStatus.REBOOT_REQUIRED if defn.reboot_required else SetStatus.ACCEPTED

    async def _store(self, defn: VariableDef, value: str) -> None:
        if defn.persistent:
            await self._storage.save_setting(NAMESPACE, defn.name, value)
        self._values[defn.name] = value
        for callback in self._callbacks:
            try:
                callback(defn.name, value)
            except Exception:
                log.exception("on_change callback %r failed for %s", callback, defn.name)
