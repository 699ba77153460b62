"""OCPP 1.6 configuration keys: definitions, validation, persistence.

The keys a CSMS reads with GetConfiguration and writes with ChangeConfiguration are data: one
:class:`KeyDef` per key (OCPP 1.6 section 9), grouped by feature profile in
:data:`PROFILE_KEYS`. Supporting another profile (issue 4) is adding its tuple of keys there;
``SupportedFeatureProfiles`` lists the profiles an :class:`OcppConfig` was built with.

Two layers:

- :class:`KeyTable` is pure and synchronous: the definitions, the current values, validation
  and normalisation, and reading a ``--ocpp-keys`` preset file. The CLI can use it to check a
  preset file before anything is opened.
- :class:`OcppConfig` adds :class:`~controller.storage.Storage`: values persist in namespace
  :data:`NAMESPACE` before :meth:`OcppConfig.change` answers, and come back on
  :meth:`OcppConfig.load` after a restart.

Semantics (OCPP 1.6 section 5.3 ChangeConfiguration, 4.x GetConfiguration): keys are
CiStrings and compare case-insensitively; answers use the canonical spelling. An unknown key
is NotSupported; a read-only key or an invalid value is Rejected (nothing changes); a key
whose change only takes effect on the next connection or boot is stored and answers
RebootRequired. Values are normalised (``"TRUE"`` -> ``"true"``, ``" 060"`` -> ``"60"``,
measurands in their canonical spelling without blanks), so what GetConfiguration shows is
what the charger uses.

Threads: everything runs on the loop thread; storage work is awaited.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from controller.config import ConfigError
from controller.storage import Storage, StorageError

log = logging.getLogger(__name__)

#: Storage namespace of the persisted values (key = canonical key name).
NAMESPACE = "ocpp16"
#: GetConfiguration and ChangeConfiguration carry values as CiString500.
VALUE_MAX_CHARS = 500
#: Seconds in a day: the upper bound of every interval key (asyncio timers need finite values
#: and a CSMS asking for more than a day between heartbeats or samples has made a typo).
DAY_S = 86_400
INT32_MAX = 2**31 - 1

#: Measurands this charger can produce from its meter (plus the PWM offer). Per-phase values
#: are a property of sampling (the adapter adds phase L1-L3 where the meter has them), so the
#: lists name measurands only.
MEASURANDS: tuple[str, ...] = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "Current.Offered",
    "Frequency",
)
#: OCPP 1.6 section 9.1.9 ConnectorPhaseRotation values (R = L1, S = L2, T = L3).
PHASE_ROTATIONS: tuple[str, ...] = (
    "NotApplicable",
    "Unknown",
    "RST",
    "RTS",
    "SRT",
    "STR",
    "TRS",
    "TSR",
)
#: Every OCPP 1.6 feature profile name (the vocabulary of SupportedFeatureProfiles).
FEATURE_PROFILES: tuple[str, ...] = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)


class ConfigStatus(StrEnum):
    """ChangeConfiguration.conf status, in OCPP spelling."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


class PresetRule(StrEnum):
    """What an operator's ``--ocpp-keys`` preset may do with a key (a CSMS never may more)."""

    FREE = "free"  # any valid value: a writable key, or a read-only policy
    AT_MOST = "at_most"  # a capability: lowered (INT), switched off (BOOL), narrowed (CSL)
    FIXED = "fixed"  # a fact of the hardware: only its own value


class KeyKind(StrEnum):
    """The value type of a key, which decides its validation."""

    BOOL = "bool"  # "true" / "false"
    INT = "int"  # decimal digits, KeyDef.minimum..KeyDef.maximum
    CSL = "csl"  # comma-separated items from KeyDef.choices, no repeats
    PHASE_ROTATION = "phase_rotation"  # CSL of "<connectorId>.<rotation>", 0..connectors
    STRING = "string"  # printable ASCII (CiString500)


@dataclass(frozen=True, slots=True)
class KeyContext:
    """What a computed default or a validation needs to know about the charge point."""

    number_of_connectors: int
    profiles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyDef:
    """One configuration key.

    ``default`` is the value string, or a function of the :class:`KeyContext` for values that
    follow the hardware (NumberOfConnectors). ``minimum``/``maximum`` bound INT keys.
    ``choices`` are the allowed CSL items in canonical spelling (matched case-insensitively).
    ``max_items_key`` names the read-only ``*MaxLength`` key that bounds a list.
    """

    name: str
    kind: KeyKind
    readonly: bool
    reboot_required: bool
    default: str | Callable[[KeyContext], str]
    minimum: int = 0
    maximum: int = INT32_MAX
    choices: tuple[str, ...] = ()
    max_items_key: str | None = None
    #: Write-only (the security whitepaper's AuthorizationKey): never in a GetConfiguration
    #: answer or a log line.
    secret: bool = False
    #: What a preset may do; None: FREE for a writable key, AT_MOST for a read-only one.
    preset_rule: PresetRule | None = None

    @property
    def preset(self) -> PresetRule:
        if self.preset_rule is not None:
            return self.preset_rule
        return PresetRule.AT_MOST if self.readonly else PresetRule.FREE

    def default_for(self, ctx: KeyContext) -> str:
        return self.default if isinstance(self.default, str) else self.default(ctx)


class InvalidValue(ValueError):
    """A value a key does not accept; ``problem`` says why (no key name in it)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _rw(
    name: str,
    kind: KeyKind,
    default: str,
    *,
    minimum: int = 0,
    maximum: int = INT32_MAX,
    choices: tuple[str, ...] = (),
    max_items_key: str | None = None,
) -> KeyDef:
    return KeyDef(name, kind, False, False, default, minimum, maximum, choices, max_items_key)


def _ro(
    name: str,
    kind: KeyKind,
    default: str | Callable[[KeyContext], str],
    preset: PresetRule | None = None,
) -> KeyDef:
    return KeyDef(name, kind, True, False, default, preset_rule=preset)


_B, _I = KeyKind.BOOL, KeyKind.INT
_LIST_MAX = str(len(MEASURANDS))  # a list without repeats holds at most every measurand

#: OCPP 1.6 section 9.1, the Core profile; units in the comments.
CORE_KEYS: tuple[KeyDef, ...] = (
    _rw("AllowOfflineTxForUnknownId", _B, "false"),
    _rw("AuthorizationCacheEnabled", _B, "true"),
    _rw("AuthorizeRemoteTxRequests", _B, "false"),
    _rw("BlinkRepeat", _I, "3", maximum=1000),  # times
    _rw("ClockAlignedDataInterval", _I, "900", maximum=DAY_S),  # s, 0 = off
    _rw("ConnectionTimeOut", _I, "60", minimum=1, maximum=DAY_S),  # s
    KeyDef(
        "ConnectorPhaseRotation",
        KeyKind.PHASE_ROTATION,
        False,
        False,
        lambda ctx: ",".join(f"{c}.Unknown" for c in range(1, ctx.number_of_connectors + 1)),
        choices=PHASE_ROTATIONS,
        max_items_key="ConnectorPhaseRotationMaxLength",
    ),
    _ro("ConnectorPhaseRotationMaxLength", _I, lambda ctx: str(ctx.number_of_connectors + 1)),
    _ro("GetConfigurationMaxKeys", _I, "50"),
    _rw("HeartbeatInterval", _I, "300", minimum=1, maximum=DAY_S),  # s
    _rw("LightIntensity", _I, "100", maximum=100),  # %
    _rw("LocalAuthorizeOffline", _B, "true"),
    _rw("LocalPreAuthorize", _B, "false"),
    _rw("MaxEnergyOnInvalidId", _I, "0"),  # Wh
    _rw(
        "MeterValuesAlignedData",
        KeyKind.CSL,
        "Energy.Active.Import.Register",
        choices=MEASURANDS,
        max_items_key="MeterValuesAlignedDataMaxLength",
    ),
    _ro("MeterValuesAlignedDataMaxLength", _I, _LIST_MAX),
    _rw(
        "MeterValuesSampledData",
        KeyKind.CSL,
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Current.Offered",
        choices=MEASURANDS,
        max_items_key="MeterValuesSampledDataMaxLength",
    ),
    _ro("MeterValuesSampledDataMaxLength", _I, _LIST_MAX),
    _rw("MeterValueSampleInterval", _I, "60", maximum=DAY_S),  # s, 0 = off
    _rw("MinimumStatusDuration", _I, "0", maximum=DAY_S),  # s
    _ro("NumberOfConnectors", _I, lambda ctx: str(ctx.number_of_connectors), PresetRule.FIXED),
    _rw("ResetRetries", _I, "3", maximum=1000),  # times
    _rw("StopTransactionOnEVSideDisconnect", _B, "true"),
    _rw("StopTransactionOnInvalidId", _B, "true"),
    _rw(
        "StopTxnAlignedData",
        KeyKind.CSL,
        "",
        choices=MEASURANDS,
        max_items_key="StopTxnAlignedDataMaxLength",
    ),
    _ro("StopTxnAlignedDataMaxLength", _I, _LIST_MAX),
    _rw(
        "StopTxnSampledData",
        KeyKind.CSL,
        "Energy.Active.Import.Register",
        choices=MEASURANDS,
        max_items_key="StopTxnSampledDataMaxLength",
    ),
    _ro("StopTxnSampledDataMaxLength", _I, _LIST_MAX),
    KeyDef(
        "SupportedFeatureProfiles",
        KeyKind.CSL,
        True,
        False,
        lambda ctx: ",".join(ctx.profiles),
        choices=FEATURE_PROFILES,
        max_items_key="SupportedFeatureProfilesMaxLength",
    ),
    _ro("SupportedFeatureProfilesMaxLength", _I, str(len(FEATURE_PROFILES))),
    # times a transaction message is tried; 0 is accepted and means "send once, no retry"
    _rw("TransactionMessageAttempts", _I, "3", maximum=100),
    _rw("TransactionMessageRetryInterval", _I, "60", maximum=DAY_S),  # s
    _rw("UnlockConnectorOnEVSideDisconnect", _B, "true"),
    # s, 0 = no pings. The websocket takes its ping interval when it connects, so a change
    # applies from the next connection: RebootRequired is the honest answer.
    KeyDef("WebSocketPingInterval", _I, False, True, "30", maximum=DAY_S),
)

#: ChargingScheduleAllowedChargingRateUnit items: limits in A and in W.
RATE_UNITS: tuple[str, ...] = ("Current", "Power")

#: OCPP 1.6 section 9.4, the SmartCharging profile; all read-only (they describe what the
#: charger's profile book holds), but a controller may give other defaults.
SMART_CHARGING_KEYS: tuple[KeyDef, ...] = (
    _ro("ChargeProfileMaxStackLevel", _I, "8"),
    KeyDef(
        "ChargingScheduleAllowedChargingRateUnit",
        KeyKind.CSL,
        True,
        False,
        ",".join(RATE_UNITS),
        choices=RATE_UNITS,
    ),
    _ro("ChargingScheduleMaxPeriods", _I, "48"),  # a day in half hours
    _ro("ConnectorSwitch3to1PhaseSupported", _B, "false"),
    _ro("MaxChargingProfilesInstalled", _I, "16"),
)

#: Entries the local authorization list holds at most, and a SendLocalList may carry. A home
#: or fleet charger knows tens to hundreds of cards; 1000 entries are about 100 kB of SQLite.
LOCAL_AUTH_LIST_MAX = 1000
SEND_LOCAL_LIST_MAX = 500

#: OCPP 1.6 section 9.2, the LocalAuthListManagement profile.
LOCAL_AUTH_LIST_KEYS: tuple[KeyDef, ...] = (
    _rw("LocalAuthListEnabled", _B, "true"),
    _ro("LocalAuthListMaxLength", _I, str(LOCAL_AUTH_LIST_MAX)),  # entries
    _ro("SendLocalListMaxLength", _I, str(SEND_LOCAL_LIST_MAX)),  # entries per request
)
#: OCPP 1.6 section 9.3, the Reservation profile.
RESERVATION_KEYS: tuple[KeyDef, ...] = (_ro("ReserveConnectorZeroSupported", _B, "true"),)

#: Security profiles of the OCPP 1.6 security whitepaper: 0 = none (plain ws, no
#: credentials), 1 = HTTP Basic, 2 = TLS + Basic, 3 = TLS with a client certificate.
SECURITY_PROFILE_MAX = 3
#: The security whitepaper's keys (section "Configuration Keys"); not a feature profile, so
#: every OcppConfig serves them. A raised SecurityProfile or a new AuthorizationKey is
#: Accepted and reconnects at once (falling back to the previous value when the CSMS refuses
#: the new one: whitepaper, "updating the password"). LinkSecurity checks a change
#: (SecurityProfile only upwards, and only with its prerequisites).
SECURITY_KEYS: tuple[KeyDef, ...] = (
    KeyDef("SecurityProfile", _I, False, False, "0", maximum=SECURITY_PROFILE_MAX),
    KeyDef("AuthorizationKey", KeyKind.STRING, False, False, "", secret=True),
    # Certificate management (controller.csms.certificates): the O of the charger's CSR;
    # root certificates installed at most (both uses together); bytes a CertificateSigned
    # chain may have (the schema's 10000 characters); one CSMS root signed by its
    # predecessor (true) or several independent ones (false).
    _rw("CpoName", KeyKind.STRING, ""),
    _ro("CertificateStoreMaxLength", _I, "10"),  # certificates
    _ro("CertificateSignedMaxChainSize", _I, "10000"),  # bytes
    # a policy of the operator's PKI, not a capability: a preset may set it either way
    _ro("AdditionalRootCertificateCheck", _B, "false", PresetRule.FREE),
)

#: Keys per feature profile; an OcppConfig serves the keys of the profiles it is built with.
PROFILE_KEYS: Mapping[str, tuple[KeyDef, ...]] = {
    "Core": CORE_KEYS,
    "FirmwareManagement": (),  # UpdateFirmware and GetDiagnostics have no keys of their own
    "LocalAuthListManagement": LOCAL_AUTH_LIST_KEYS,
    "Reservation": RESERVATION_KEYS,
    "SmartCharging": SMART_CHARGING_KEYS,
    "RemoteTrigger": (),  # TriggerMessage has no configuration keys
}
#: The feature profiles this charger supports (SupportedFeatureProfiles by default).
SUPPORTED_PROFILES: tuple[str, ...] = tuple(PROFILE_KEYS)
#: The CSMS-initiated actions each optional profile brings (OCPP 1.6 section 3.1 and the
#: profile chapters). A charger built without a profile answers them NotSupported; Core
#: cannot be switched off.
PROFILE_ACTIONS: Mapping[str, frozenset[str]] = {
    "FirmwareManagement": frozenset({"GetDiagnostics", "UpdateFirmware"}),
    "LocalAuthListManagement": frozenset({"GetLocalListVersion", "SendLocalList"}),
    "Reservation": frozenset({"ReserveNow", "CancelReservation"}),
    "SmartCharging": frozenset(
        {"SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule"}
    ),
    "RemoteTrigger": frozenset({"TriggerMessage"}),
}


def profile_of_action(action: str) -> str | None:
    """The optional feature profile ``action`` belongs to; None for Core and the rest."""
    for profile, actions in PROFILE_ACTIONS.items():
        if action in actions:
            return profile
    return None


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One GetConfiguration.conf configurationKey entry."""

    key: str
    readonly: bool
    value: str


# --- validation ---------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")


def _normalise_int(defn: KeyDef, raw: str) -> str:
    text = raw.strip()
    if not _DIGITS.fullmatch(text):
        raise InvalidValue(
            f"must be a whole number from {defn.minimum} to {defn.maximum}, got {raw!r}"
        )
    number = int(text)
    if not defn.minimum <= number <= defn.maximum:
        raise InvalidValue(f"must be from {defn.minimum} to {defn.maximum}, got {number}")
    return str(number)


def _split(raw: str) -> list[str]:
    """CSL items without surrounding blanks; "" is the empty list, an empty item an error."""
    if not raw.strip():
        return []
    items = [item.strip() for item in raw.split(",")]
    if "" in items:
        raise InvalidValue(f"has an empty item in {raw!r}")
    return items


def _canonical(item: str, choices: Sequence[str], what: str) -> str:
    for choice in choices:
        if choice.lower() == item.lower():
            return choice
    raise InvalidValue(f"{item!r} is not {what} (one of {', '.join(choices)})")


def _check_count(items: Sequence[str], max_items: int | None, bound_key: str | None) -> None:
    if max_items is not None and len(items) > max_items:
        raise InvalidValue(f"has {len(items)} items, at most {max_items} allowed ({bound_key})")


def _normalise_csl(defn: KeyDef, raw: str, max_items: int | None) -> str:
    what = "a measurand this charger measures" if defn.choices == MEASURANDS else "allowed"
    items = [_canonical(item, defn.choices, what) for item in _split(raw)]
    for item in items:
        if items.count(item) > 1:
            raise InvalidValue(f"lists {item!r} more than once")
    _check_count(items, max_items, defn.max_items_key)
    return ",".join(items)


def _normalise_phase_rotation(
    defn: KeyDef, raw: str, ctx: KeyContext, max_items: int | None
) -> str:
    items: list[str] = []
    seen: set[int] = set()
    for item in _split(raw):
        connector, dot, rotation = item.partition(".")
        if not dot or not _DIGITS.fullmatch(connector.strip()):
            raise InvalidValue(f"{item!r} is not <connectorId>.<rotation>, e.g. 1.RST")
        number = int(connector)
        if number > ctx.number_of_connectors:
            raise InvalidValue(
                f"{item!r} names connector {number}; this charger has connectors 0 (grid) "
                f"to {ctx.number_of_connectors}"
            )
        if number in seen:
            raise InvalidValue(f"gives connector {number} more than once")
        seen.add(number)
        items.append(f"{number}.{_canonical(rotation.strip(), defn.choices, 'a phase rotation')}")
    if not items:
        raise InvalidValue("must give at least one <connectorId>.<rotation>")
    _check_count(items, max_items, defn.max_items_key)
    return ",".join(items)


def normalise(defn: KeyDef, raw: str, ctx: KeyContext, max_items: int | None = None) -> str:
    """The canonical form of ``raw`` for ``defn``, or :class:`InvalidValue` saying why not.

    ``max_items`` is the current value of ``defn.max_items_key`` (None: no bound).
    """
    if len(raw) > VALUE_MAX_CHARS:
        raise InvalidValue(f"is {len(raw)} characters long, at most {VALUE_MAX_CHARS} allowed")
    if defn.kind is KeyKind.BOOL:
        if raw.strip().lower() not in ("true", "false"):
            raise InvalidValue(f"must be true or false, got {raw!r}")
        return raw.strip().lower()
    if defn.kind is KeyKind.INT:
        return _normalise_int(defn, raw)
    if defn.kind is KeyKind.CSL:
        return _normalise_csl(defn, raw, max_items)
    if defn.kind is KeyKind.PHASE_ROTATION:
        return _normalise_phase_rotation(defn, raw, ctx, max_items)
    if not (raw.isascii() and raw.isprintable()):
        # the problem is logged: a secret key's value (AuthorizationKey) is never shown
        raise InvalidValue(f"must be printable ASCII, got {_shown(defn, raw)}")
    return raw


def _shown(defn: KeyDef, value: str) -> str:
    """``value`` as a log line may show it: a secret key's never is, rejected or not."""
    return "(secret: not shown)" if defn.secret else repr(value)


def _toml_to_ocpp(value: object) -> str:
    """A preset file's TOML value as the OCPP string a CSMS would have sent."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    raise InvalidValue(
        f"must be a boolean, an integer, a string or a list of strings, got {value!r}"
    )


# --- the table of keys and values ---------------------------------------------------------


class KeyTable:
    """The keys of a charge point and their current values; pure, no I/O.

    ``defaults`` override the built-in defaults (by key, any case, read-only keys included)
    and are validated like a ChangeConfiguration; a bad one raises :class:`ConfigError`
    naming the key. That includes a list made too long by a lowered ``*MaxLength``: give
    the list a default that fits too.
    """

    def __init__(
        self,
        *,
        number_of_connectors: int,
        defaults: Mapping[str, str] | None = None,
        profiles: Sequence[str] = SUPPORTED_PROFILES,
    ) -> None:
        if number_of_connectors < 1:
            raise ValueError(f"number_of_connectors must be >= 1, got {number_of_connectors}")
        for profile in profiles:
            if profile not in PROFILE_KEYS:
                raise ValueError(f"no keys known for feature profile {profile!r}")
        self.ctx = KeyContext(number_of_connectors, tuple(profiles))
        self._defs: dict[str, KeyDef] = {
            defn.name.lower(): defn for profile in profiles for defn in PROFILE_KEYS[profile]
        }
        self._defs.update((defn.name.lower(), defn) for defn in SECURITY_KEYS)
        initial = {defn.name: defn.default_for(self.ctx) for defn in self._defs.values()}
        for key, value in (defaults or {}).items():
            found = self.definition(key)
            if found is None:
                raise ConfigError(key, "unknown OCPP 1.6 configuration key")
            initial[found.name] = value
        self._values: dict[str, str] = {}
        # Bounds (*MaxLength, all INT) first: the lists they bound are checked against them.
        for defn in sorted(self._defs.values(), key=lambda d: d.kind is not KeyKind.INT):
            try:
                self._values[defn.name] = self.normalise(defn, initial[defn.name])
            except InvalidValue as exc:
                raise ConfigError(defn.name, exc.problem) from exc

    def definitions(self) -> tuple[KeyDef, ...]:
        return tuple(self._defs.values())

    def definition(self, key: str) -> KeyDef | None:
        """The definition of ``key`` (any case), or None for an unknown key."""
        return self._defs.get(key.lower())

    def normalise(self, defn: KeyDef, raw: str) -> str:
        """Validate ``raw`` for ``defn`` with the current bounds; raises InvalidValue."""
        max_items = None
        if defn.max_items_key is not None:
            max_items = int(self._values[defn.max_items_key])
        return normalise(defn, raw, self.ctx, max_items)

    def get(self, key: str) -> str | None:
        defn = self.definition(key)
        return None if defn is None else self._values[defn.name]

    def set(self, defn: KeyDef, value: str) -> None:
        """Set an already normalised value (no validation: use :meth:`normalise` first)."""
        self._values[defn.name] = value

    def entries(self, keys: Sequence[str] | None) -> tuple[list[KeyEntry], list[str]]:
        """GetConfiguration: (known entries, unknown keys as asked); None asks for all.

        Keys asked twice (in any case) are answered once.
        """
        if keys is None:
            return [self._entry(d) for d in self._defs.values() if not d.secret], []
        known: list[KeyEntry] = []
        unknown: list[str] = []
        for key in keys:
            defn = self.definition(key)
            if defn is None:
                if key not in unknown:
                    unknown.append(key)
            elif all(entry.key != defn.name for entry in known):
                known.append(self._entry(defn))
        return known, unknown

    def _entry(self, defn: KeyDef) -> KeyEntry:
        value = "" if defn.secret else self._values[defn.name]  # write-only: asked, not told
        return KeyEntry(defn.name, defn.readonly, value)

    def read_preset(self, path: Path) -> dict[str, str]:
        """Read and validate a ``--ocpp-keys`` TOML file: {canonical key: normalised value}.

        The preset is the operator's configuration, not a CSMS's ChangeConfiguration: every
        key this table knows may be given, read-only ones included, with the same value
        checks, plus the key's :class:`PresetRule` (a capability may be lowered, never
        raised past what the code supports; NumberOfConnectors is the hardware's).
        ``SupportedFeatureProfiles`` switches profiles off (Core stays); a key of a profile
        switched off in the same file is an error. Values may be TOML booleans, integers,
        strings or lists of strings (joined with commas). Raises :class:`ConfigError` whose
        key names the flag and the offending configuration key.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("--ocpp-keys", f"cannot read {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("--ocpp-keys", f"{path} is not UTF-8 text: {exc}") from exc
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--ocpp-keys", f"{path} is not valid TOML: {exc}") from exc
        preset: dict[str, str] = {}
        for key, value in doc.items():
            defn = self.definition(key)
            if defn is None:
                raise ConfigError(f"--ocpp-keys {key}", "unknown OCPP 1.6 configuration key")
            flag = f"--ocpp-keys {defn.name}"
            if defn.name in preset:
                raise ConfigError(flag, "is given more than once (keys ignore case)")
            try:
                preset[defn.name] = self._preset_value(defn, _toml_to_ocpp(value))
            except InvalidValue as exc:
                raise ConfigError(flag, exc.problem) from exc
        self._check_profiles(preset)
        return preset

    def _preset_value(self, defn: KeyDef, raw: str) -> str:
        value = self.normalise(defn, raw)
        builtin = self.normalise(defn, defn.default_for(self.ctx))
        rule = defn.preset
        if rule is PresetRule.FIXED and value != builtin:
            raise InvalidValue(f"is {builtin} on this charger (it describes the hardware)")
        if rule is not PresetRule.AT_MOST or value == builtin:
            return value
        if defn.kind is KeyKind.INT and int(value) > int(builtin):
            raise InvalidValue(f"may be lowered, not raised: at most {builtin}, got {value}")
        if defn.kind is KeyKind.BOOL and value == "true":
            raise InvalidValue("may be switched off, not on: this charger cannot do it")
        if defn.kind is KeyKind.CSL:
            extra = set(_split(value)) - set(_split(builtin))
            if extra:
                raise InvalidValue(f"may be narrowed, not widened: {', '.join(sorted(extra))}")
            if defn.name == "SupportedFeatureProfiles" and "Core" not in _split(value):
                raise InvalidValue("must keep Core")
        return value

    def _check_profiles(self, preset: Mapping[str, str]) -> None:
        profiles = preset.get("SupportedFeatureProfiles")
        if profiles is None:
            return
        kept = set(_split(profiles))
        for name in preset:
            for profile, keys in PROFILE_KEYS.items():
                if profile not in kept and any(d.name == name for d in keys):
                    raise ConfigError(
                        f"--ocpp-keys {name}",
                        f"belongs to {profile}, which SupportedFeatureProfiles switches off",
                    )


# --- persistence and change notification --------------------------------------------------


class OcppConfig:
    """The OCPP 1.6 configuration of a charge point, persisted in :class:`Storage`.

    Built-in defaults, overridden by ``defaults``, overridden by persisted values after
    :meth:`load`. Loop thread only.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        number_of_connectors: int,
        defaults: Mapping[str, str] | None = None,
        profiles: Sequence[str] = SUPPORTED_PROFILES,
    ) -> None:
        self._storage = storage
        self.table = KeyTable(
            number_of_connectors=number_of_connectors, defaults=defaults, profiles=profiles
        )
        self._callbacks: list[Callable[[str, str], None]] = []
        self._checks: dict[str, Callable[[str], str | None]] = {}
        self._lock = asyncio.Lock()  # one change at a time: storage order = memory order

    async def load(self) -> None:
        """Apply the persisted values over the defaults; fires no callbacks.

        A stored value that is no longer valid (bounds changed in an update) or belongs to a
        key that is gone or read-only is logged and ignored: the default applies. (The
        operator's preset is not among them: it comes in as ``defaults``, see
        :func:`operator_preset`.)
        """
        stored = await self._storage.load_settings(NAMESPACE)
        for name, value in stored.items():
            defn = self.table.definition(name)
            if defn is None or defn.readonly:
                log.warning("ignoring stored OCPP key %s=%r: not a writable key", name, value)
                continue
            try:
                self.table.set(defn, self.table.normalise(defn, value))
            except InvalidValue as exc:
                log.warning(
                    "ignoring stored OCPP key %s, %s (%s); using %s",
                    name,
                    _shown(defn, value),
                    exc.problem,
                    _shown(defn, self.table.get(name) or ""),
                )

    def definition(self, key: str) -> KeyDef | None:
        return self.table.definition(key)

    def get(self, key: str) -> str | None:
        """The current value of ``key`` (any case); None for an unknown key."""
        return self.table.get(key)

    def _typed(self, key: str, kinds: tuple[KeyKind, ...]) -> str:
        defn = self.table.definition(key)
        if defn is None:
            raise KeyError(key)
        if defn.kind not in kinds:
            raise TypeError(f"{defn.name} is a {defn.kind} key")
        return self.table.get(key) or ""

    def get_int(self, key: str) -> int:
        """An INT key's value; KeyError for an unknown key, TypeError for another kind."""
        return int(self._typed(key, (KeyKind.INT,)))

    def get_bool(self, key: str) -> bool:
        """A BOOL key's value; KeyError for an unknown key, TypeError for another kind."""
        return self._typed(key, (KeyKind.BOOL,)) == "true"

    def get_list(self, key: str) -> list[str]:
        """A list key's items (measurands, profiles, "1.RST"); [] when empty."""
        value = self._typed(key, (KeyKind.CSL, KeyKind.PHASE_ROTATION))
        return value.split(",") if value else []

    def entries(self, keys: Sequence[str] | None) -> tuple[list[KeyEntry], list[str]]:
        """GetConfiguration: (known entries, unknown keys); None asks for every key."""
        return self.table.entries(keys)

    def on_change(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(canonical key, value)`` after each stored change, on the loop.

        It fires for RebootRequired keys too (the new value is what the next connection or
        boot uses). A callback that raises is logged; the change stands.
        """
        self._callbacks.append(callback)

    def add_check(self, key: str, check: Callable[[str], str | None]) -> None:
        """Let ``check(normalised value)`` veto a ChangeConfiguration of ``key``: it returns
        the problem (the change is Rejected and logged) or None. Presets are not checked."""
        defn = self.table.definition(key)
        if defn is None:
            raise KeyError(key)
        self._checks[defn.name] = check

    async def change(self, key: str, value: str) -> ConfigStatus:
        """ChangeConfiguration: validate, persist, then notify; the answer to send.

        A value that cannot be stored (storage failure) is Rejected and left unchanged.
        """
        defn = self.table.definition(key)
        if defn is None:
            return ConfigStatus.NOT_SUPPORTED
        if defn.readonly:
            log.info("ChangeConfiguration %s rejected: read-only", defn.name)
            return ConfigStatus.REJECTED
        shown = _shown(defn, value)
        try:
            normalised = self.table.normalise(defn, value)
            check = self._checks.get(defn.name)
            problem = None if check is None else check(normalised)
            if problem is not None:
                raise InvalidValue(problem)
        except InvalidValue as exc:
            log.info("ChangeConfiguration of %s to %s rejected: %s", defn.name, shown, exc.problem)
            return ConfigStatus.REJECTED
        async with self._lock:
            try:
                await self._store(defn, normalised)
            except StorageError as exc:
                log.error("ChangeConfiguration of %s to %s not stored: %s", defn.name, shown, exc)
                return ConfigStatus.REJECTED
        log.info("configuration %s set to %s", defn.name, _shown(defn, normalised))
        return ConfigStatus.REBOOT_REQUIRED if defn.reboot_required else ConfigStatus.ACCEPTED

    async def _store(self, defn: KeyDef, value: str) -> None:
        await self._storage.save_setting(NAMESPACE, defn.name, value)
        self.table.set(defn, value)
        for callback in self._callbacks:
            try:
                callback(defn.name, value)
            except Exception:
                log.exception("on_change callback %r failed for %s=%r", callback, defn.name, value)


#: Storage namespace of the operator's preset (``--ocpp-keys`` at first boot), kept so that
#: every later boot builds the same charger (read-only keys and profiles included).
PRESET_NAMESPACE = "ocpp16-preset"


async def operator_preset(
    storage: Storage, path: Path | None, *, number_of_connectors: int
) -> dict[str, str]:
    """The operator's preset: read from ``path`` and kept when the state directory is new,
    else the one kept at first boot (a ``path`` given then is logged and not applied).

    The whole file is validated before anything is stored, so a bad file changes nothing;
    it raises :class:`ConfigError` naming the key. The result goes to :class:`OcppConfig`
    as ``defaults`` (with :func:`preset_profiles` as its profiles); what a CSMS changes
    later is stored apart and wins over it.
    """
    if path is not None and storage.is_new:
        values = KeyTable(number_of_connectors=number_of_connectors).read_preset(path)
        for name, value in values.items():
            await storage.save_setting(PRESET_NAMESPACE, name, value)
        log.info("preset %d OCPP keys from %s", len(values), path)
        return values
    if path is not None:
        log.info("state directory is not new: preset %s not applied", path)
    return await storage.load_settings(PRESET_NAMESPACE)


def preset_profiles(preset: Mapping[str, str]) -> tuple[str, ...]:
    """The feature profiles a preset leaves on (every supported one without the key)."""
    value = preset.get("SupportedFeatureProfiles")
    if value is None:
        return SUPPORTED_PROFILES
    kept = {item.casefold() for item in _split(value)}
    return tuple(p for p in SUPPORTED_PROFILES if p.casefold() in kept)


async def open_ocpp_config(
    storage: Storage,
    *,
    number_of_connectors: int,
    preset_path: Path | None = None,
    defaults: Mapping[str, str] | None = None,
) -> OcppConfig:
    """The charge point's key table as it boots: built-in defaults, then ``defaults`` (from
    the configuration file), then the operator's preset (:func:`operator_preset`, with its
    feature profiles), then what a CSMS changed (loaded from storage)."""
    preset = await operator_preset(storage, preset_path, number_of_connectors=number_of_connectors)
    config = OcppConfig(
        storage,
        number_of_connectors=number_of_connectors,
        defaults={**(defaults or {}), **preset},
        profiles=preset_profiles(preset),
    )
    await config.load()
    return config
