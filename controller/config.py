"""The charger's TOML configuration: parsed once, validated with messages that name the key.

A bad configuration must never half-start a charger: :func:`load_config` either returns a
complete :class:`Config` or raises :class:`ConfigError` naming the offending key (for example
``connector[1].max_current_a: must be between 6 and 80, got 100``) and the CLI exits with 2.

Driver settings (pins, ports, calibration) stay plain tables here: each driver's
``from_config`` validates its own values, so adding a driver does not touch this module. No
key goes unread: the sections read here list their keys below, the drivers list theirs next
to their code, and :mod:`controller.config_keys` refuses any other key, naming the nearest
valid one. A file that is not UTF-8 or not TOML is refused the same way, in one line.

``[hardware] backend`` picks the hardware: ``"pi"`` (the default) drives the Pi's pins,
``"sim"`` runs the simulated charger as ``picharge run --sim`` does.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from controller.config_keys import ENERGY_THRESHOLD_KEYS, unknown_key

DEFAULT_CONFIG_PATH = Path("/etc/picharge/config.toml")
DEFAULT_STATE_DIR = Path("/var/lib/picharge")
#: The web page's default address: loopback. On an installed charger the page is reached
#: through an SSH tunnel until the owner sets a password and opens it to the network
#: (``[web] listen = "0.0.0.0:8080"``); a fresh install exposes nothing to the LAN.
DEFAULT_WEB_LISTEN = "127.0.0.1:8080"


class ConfigError(Exception):
    """A configuration value is missing, of the wrong type or out of range."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ConnectorConfig:
    """One charging connector (a socket or a tethered cable) and the pins it uses."""

    id: int
    max_current_a: float = 32.0
    phases: int = 3
    drivers: Mapping[str, Any] = field(default_factory=dict)  # pins, PWM, ADC, RCM, ...
    # The grid phase (0-based) each of its phases is wired to: (1, 2, 0) is a connector wired
    # L2-L3-L1, (1,) a one-phase connector on L2. Configured as phase_rotation = "L2L3L1".
    phase_rotation: tuple[int, ...] = (0, 1, 2)
    # Its charging mode at first start (``mode = "solar"``), overriding ``[energy] mode``;
    # validated with [energy] by controller.energy.mode_config.
    mode: str | None = None
    # Its own thresholds of the modes (``[connector.energy]``: any of [energy]'s but mode),
    # over [energy]'s; validated with [energy] by controller.energy.mode_config.
    energy: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SiteConfig:
    """``[site]``: the house connection the chargers share (issue 16). Currents in A.

    ``fuse_a`` 0 means no fuse protection (no [site] table). ``fallback_current_a`` is what
    each connector may offer while the grid meter gives no reading for ``grid_max_age_s``.
    """

    fuse_a: float = 0.0
    phases: int = 3
    margin_a: float = 1.0
    fallback_current_a: float = 6.0
    grid_max_age_s: float = 5.0


@dataclass(frozen=True)
class PhaseSwitchConfig:
    """``[phase_switch]``: a second contactor switching one connector between 1 and 3 phases.

    ``drivers`` holds its contactor driver's keys (``contactor_pin``, ``feedback_pin``, ...,
    as in a ``[[connector]]``). Times in seconds (controller.energy.phase_switch).
    """

    connector: int = 1
    min_interval_s: float = 300.0
    zero_current_timeout_s: float = 10.0
    feedback_timeout_s: float = 2.0
    drivers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MqttConfig:
    """``[mqtt]``: the broker the charger publishes its state to (and takes commands from).

    From ``url = "mqtt://user:password@host:1883"`` (``mqtts://``: TLS, port 8883 by
    default, checked against ``ca_file`` or the system's CAs). ``topic_prefix`` empty means
    ``picharge/<charge point id>``; ``discovery_prefix`` empty turns Home Assistant
    discovery off. The password is kept out of ``repr`` and every log: :meth:`safe_url`.
    """

    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    topic_prefix: str = ""
    discovery_prefix: str = "homeassistant"

    def safe_url(self) -> str:
        """The broker's URL for logs: the user name but never the password."""
        user = "" if self.username is None else f"{self.username}:***@"
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    chargepoint_id: str = "picharge-0001"
    vendor: str = "picharge"
    model: str = "picharge-pi"
    serial: str = ""
    ocpp_url: str = ""  # empty: standalone, no CSMS
    ocpp_version: str = "1.6"
    # OCPP 1.6 security whitepaper: profile 0-3, the initial AuthorizationKey (Basic auth
    # password), the CA of the CSMS certificate and the client certificate and key (PEM).
    ocpp_security_profile: int = 0
    ocpp_password: str = field(default="", repr=False)
    ocpp_ca_file: Path | None = None
    ocpp_cert_file: Path | None = None
    ocpp_key_file: Path | None = None
    # Firmware trust (controller.csms.firmware_policy): the roots (PEM) a firmware signing
    # certificate must chain to; whether CSMS-installed ManufacturerRootCertificates count
    # too; unsigned packages; older versions; the largest download.
    ocpp_firmware_signing_ca: Path | None = None
    ocpp_firmware_trust_manufacturer_roots: bool = False
    ocpp_allow_unsigned_firmware: bool = False
    ocpp_allow_firmware_downgrade: bool = False
    ocpp_firmware_max_bytes: int = 64 * 1024 * 1024
    backend: str = "pi"
    state_dir: Path = DEFAULT_STATE_DIR
    connectors: tuple[ConnectorConfig, ...] = (ConnectorConfig(id=1),)
    meter: Mapping[str, Any] = field(default_factory=dict)
    rfid: Mapping[str, Any] = field(default_factory=dict)
    site: SiteConfig = SiteConfig()
    # [grid_meter]: validated by controller.energy.grid_meter.parse_role, as [meter] is by
    # its driver; required when [site] sets a fuse.
    grid_meter: Mapping[str, Any] = field(default_factory=dict)
    # [[circuit]]: validated by controller.energy.circuits.parse_circuits when local energy
    # management is built.
    circuits: tuple[Mapping[str, Any], ...] = ()
    phase_switch: PhaseSwitchConfig | None = None  # None: no [phase_switch] table
    # [energy]: the charging modes, validated by controller.energy.mode_config.parse_energy
    # when local energy management is built; without [site] only the modes that need no
    # grid meter (fast, schedule).
    energy: Mapping[str, Any] = field(default_factory=dict)
    # Standalone authorization (no CSMS): cards allowed to charge, or charging for anyone
    # under one id tag.
    local_cards: tuple[str, ...] = ()
    free_charging_id: str | None = None
    mqtt: MqttConfig | None = None  # None: no [mqtt] url, MQTT off
    #: Names of standalone cards (``[authorization] cards`` entries given as tables), by
    #: UID in upper case: the session history and the page show who charged.
    card_names: Mapping[str, str] = field(default_factory=dict)
    # The local web page and API ([web]): where it listens ("" = off), whether the live
    # status is readable without a login, and the idTag a page's start uses with a CSMS.
    web_listen: str = DEFAULT_WEB_LISTEN
    web_public_status: bool = False
    web_id_tag: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets


_TOP_LEVEL = {
    "chargepoint",
    "ocpp",
    "hardware",
    "connector",
    "meter",
    "rfid",
    "storage",
    "authorization",
    "mqtt",
    "web",
    "site",
    "grid_meter",
    "circuit",
    "phase_switch",
    "energy",
}
_CONNECTOR_KEYS = ("max_current_a", "phases", "phase_rotation", "mode", "energy")


#: The keys of the sections read here (the drivers' sections: controller.config_keys).
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "chargepoint": ("id", "vendor", "model", "serial"),
    "ocpp": (
        "url",
        "version",
        "security_profile",
        "password",
        "ca_file",
        "cert_file",
        "key_file",
        "firmware_signing_ca",
        "firmware_trust_manufacturer_roots",
        "allow_unsigned_firmware",
        "allow_firmware_downgrade",
        "firmware_max_bytes",
    ),
    "storage": ("state_dir",),
    "authorization": ("cards", "free_charging_id"),
    "mqtt": ("url", "ca_file", "topic_prefix", "discovery_prefix"),
    "web": ("listen", "public_status", "id_tag"),
    "site": ("fuse_a", "phases", "margin_a", "fallback_current_a", "grid_max_age_s"),
    "energy": ("mode", *ENERGY_THRESHOLD_KEYS),
}
BACKENDS = ("pi", "sim")


def check_chargepoint_id(value: str, key: str) -> str:
    """A charge point id as OCPP and the CSMS URL take it; ConfigError names ``key``."""
    if (
        not 1 <= len(value) <= 36
        or "/" in value
        or not value.isprintable()
        or value.strip() != value
    ):
        raise ConfigError(
            key, f"must be 1-36 printable characters without '/' or edge spaces, got {value!r}"
        )
    return value


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table ([{key}]), got {type(value).__name__}")
    return value


def _tables(doc: Mapping[str, Any], key: str) -> tuple[Mapping[str, Any], ...]:
    """An array of tables (``[[key]]``), empty when absent."""
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise ConfigError(key, f"must be one or more [[{key}]] tables")
    return tuple(value)


def _get(table: Mapping[str, Any], prefix: str, key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{prefix}.{key}", f"must be {kind.__name__}, got {value!r}")
    return value


def _connector(index: int, table: Mapping[str, Any]) -> ConnectorConfig:
    prefix = f"connector.{index}"
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, "must be a table ([[connector]])")
    max_a = _get(table, prefix, "max_current_a", float, 32.0)
    if not 6.0 <= max_a <= 80.0:
        raise ConfigError(f"{prefix}.max_current_a", f"must be between 6 and 80 A, got {max_a}")
    phases = _get(table, prefix, "phases", int, 3)
    if phases not in (1, 3):
        raise ConfigError(f"{prefix}.phases", f"must be 1 or 3, got {phases}")
    drivers = {k: v for k, v in table.items() if k not in _CONNECTOR_KEYS}
    default_rotation = "L1L2L3" if phases == 3 else "L1"
    rotation_text = _get(table, prefix, "phase_rotation", str, default_rotation)
    rotation = _phase_rotation(rotation_text)
    if rotation is None or len(rotation) != phases:
        raise ConfigError(
            f"{prefix}.phase_rotation",
            f"must name the grid phase of each of its {phases} phase(s) once, like "
            f"{'L2L3L1' if phases == 3 else 'L2'}, got {rotation_text!r}",
        )
    mode = table.get("mode")
    if mode is not None and not isinstance(mode, str):
        raise ConfigError(f"{prefix}.mode", f"must be a mode's name, got {mode!r}")
    energy = table.get("energy", {})
    if not isinstance(energy, Mapping):
        raise ConfigError(f"{prefix}.energy", "must be a table ([connector.energy])")
    return ConnectorConfig(
        id=index,
        max_current_a=max_a,
        phases=phases,
        drivers=drivers,
        phase_rotation=rotation,
        mode=mode,
        energy=energy,
    )


def _phase_rotation(text: str) -> tuple[int, ...] | None:
    """``"L2L3L1"`` as (1, 2, 0); None unless it names distinct phases L1-L3."""
    names = [text[i : i + 2].upper() for i in range(0, len(text), 2)]
    if (
        not names
        or any(n not in ("L1", "L2", "L3") for n in names)
        or len(set(names)) != len(names)
    ):
        return None
    return tuple(int(n[1]) - 1 for n in names)


def _site(doc: Mapping[str, Any], connectors: tuple[ConnectorConfig, ...]) -> SiteConfig:
    site = _table(doc, "site")
    if not site:
        return SiteConfig()
    fuse = _get(site, "site", "fuse_a", float, 0.0)
    if not 6.0 <= fuse <= 1000.0:
        raise ConfigError("site.fuse_a", f"must be the main fuse, 6-1000 A, got {fuse}")
    phases = _get(site, "site", "phases", int, 3)
    if phases not in (1, 3):
        raise ConfigError("site.phases", f"must be 1 or 3, got {phases}")
    margin = _get(site, "site", "margin_a", float, 1.0)
    if not 0.0 <= margin < fuse:
        raise ConfigError("site.margin_a", f"must be 0 A or more and below the fuse, got {margin}")
    fallback = _get(site, "site", "fallback_current_a", float, 6.0)
    if not 0.0 <= fallback <= fuse - margin:
        raise ConfigError(
            "site.fallback_current_a",
            f"must be 0 A up to the fuse less the margin ({fuse - margin:g} A), got {fallback}",
        )
    max_age = _get(site, "site", "grid_max_age_s", float, 5.0)
    if not 1.0 <= max_age <= 60.0:
        raise ConfigError("site.grid_max_age_s", f"must be 1-60 s, got {max_age}")
    for c in connectors:
        if max(c.phase_rotation) >= phases:
            raise ConfigError(
                f"connector.{c.id}.phase_rotation", f"uses a phase the {phases}-phase site lacks"
            )
    if "grid_meter" not in doc:
        raise ConfigError("grid_meter", "is required when [site] sets a fuse: nothing to measure")
    return SiteConfig(fuse, phases, margin, fallback, max_age)


def _phase_switch(
    doc: Mapping[str, Any], connectors: tuple[ConnectorConfig, ...]
) -> PhaseSwitchConfig | None:
    """``[phase_switch]``; its contactor's pins are required (no safe default exists for a
    second contactor) and so is its feedback contact (the switch is confirmed by it)."""
    table = _table(doc, "phase_switch")
    if not table:
        return None
    own = ("connector", "min_interval_s", "zero_current_timeout_s", "feedback_timeout_s")
    connector = _get(table, "phase_switch", "connector", int, 1)
    if connector not in [c.id for c in connectors]:
        raise ConfigError("phase_switch.connector", f"no connector {connector} is configured")
    if next(c for c in connectors if c.id == connector).phases != 3:
        raise ConfigError("phase_switch.connector", f"connector {connector} is not three-phase")
    times = {
        "min_interval_s": (300.0, 5.0, 86400.0),
        "zero_current_timeout_s": (10.0, 7.0, 60.0),
        "feedback_timeout_s": (2.0, 0.5, 10.0),
    }
    values = {}
    for key, (default, low, high) in times.items():
        value = _get(table, "phase_switch", key, float, default)
        if not low <= value <= high:
            raise ConfigError(f"phase_switch.{key}", f"must be {low:g}-{high:g} s, got {value}")
        values[key] = value
    for key in ("contactor_pin", "feedback_pin"):
        if key not in table:
            raise ConfigError(
                f"phase_switch.{key}", "is required: the GPIO of the second contactor"
            )
    if table.get("contactor_type", "gpio") != "gpio":
        raise ConfigError("phase_switch.contactor_type", "must be gpio")
    if table.get("feedback_type") == "none":
        raise ConfigError(
            "phase_switch.feedback_type",
            "must be mirror or auxiliary: a phase switch is confirmed by its feedback",
        )
    drivers = {k: v for k, v in table.items() if k not in own}
    return PhaseSwitchConfig(connector=connector, drivers=drivers, **values)


def _pem_file(ocpp: Mapping[str, Any], key: str) -> Path | None:
    value = _get(ocpp, "ocpp", key, str, "")
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"ocpp.{key}", f"no such file: {value}")
    return path


def _certificate_file(ocpp: Mapping[str, Any], key: str) -> Path | None:
    """A PEM file of certificates (checked for one; the parse comes where it is used)."""
    path = _pem_file(ocpp, key)
    if path is not None:
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise ConfigError(f"ocpp.{key}", f"unreadable: {exc}") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ConfigError(f"ocpp.{key}", f"no PEM certificate in {path}")
    return path


def _security(ocpp: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The ``[ocpp]`` security keys, checked together: a profile gets what it needs."""
    password = _get(ocpp, "ocpp", "password", str, "")
    if password and not (16 <= len(password) <= 40 and password.isascii()):
        raise ConfigError("ocpp.password", "must be 16 to 40 ASCII characters (AuthorizationKey)")
    profile = _get(ocpp, "ocpp", "security_profile", int, 1 if password else 0)
    if not 0 <= profile <= 3:
        raise ConfigError("ocpp.security_profile", f"must be 0, 1, 2 or 3, got {profile}")
    if profile in (1, 2) and not password:
        raise ConfigError("ocpp.password", f"security profile {profile} needs a password")
    if profile >= 2 and url and not url.startswith("wss://"):
        raise ConfigError("ocpp.url", f"security profile {profile} needs wss://, got {url!r}")
    files = {key: _pem_file(ocpp, key) for key in ("ca_file", "cert_file", "key_file")}
    if profile == 3:
        for key in ("cert_file", "key_file"):
            if files[key] is None:
                raise ConfigError(f"ocpp.{key}", "security profile 3 needs it")
    return {
        "ocpp_security_profile": profile,
        "ocpp_password": password,
        "ocpp_ca_file": files["ca_file"],
        "ocpp_cert_file": files["cert_file"],
        "ocpp_key_file": files["key_file"],
    }


#: Bounds of ``[ocpp] firmware_max_bytes``: a picharge wheel is well under 1 MiB; 1 GiB is
#: more than a Pi's RAM-backed work should ever hold.
FIRMWARE_MAX_BYTES_RANGE = (64 * 1024, 1024 * 1024 * 1024)


def _firmware(ocpp: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[ocpp]`` firmware trust keys (whom the charger takes firmware from)."""
    low, high = FIRMWARE_MAX_BYTES_RANGE
    max_bytes = _get(ocpp, "ocpp", "firmware_max_bytes", int, Config.ocpp_firmware_max_bytes)
    if not low <= max_bytes <= high:
        raise ConfigError(
            "ocpp.firmware_max_bytes", f"must be from {low} to {high} bytes, got {max_bytes}"
        )
    return {
        "ocpp_firmware_signing_ca": _certificate_file(ocpp, "firmware_signing_ca"),
        "ocpp_firmware_trust_manufacturer_roots": _get(
            ocpp, "ocpp", "firmware_trust_manufacturer_roots", bool, False
        ),
        "ocpp_allow_unsigned_firmware": _get(ocpp, "ocpp", "allow_unsigned_firmware", bool, False),
        "ocpp_allow_firmware_downgrade": _get(
            ocpp, "ocpp", "allow_firmware_downgrade", bool, False
        ),
        "ocpp_firmware_max_bytes": max_bytes,
    }


def _topic_prefix(mqtt: Mapping[str, Any], key: str, default: str) -> str:
    value: str = _get(mqtt, "mqtt", key, str, default)
    if any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/"):
        raise ConfigError(
            f"mqtt.{key}", f"must be a topic without + # or a leading/trailing /, got {value!r}"
        )
    return value


def _mqtt(doc: Mapping[str, Any]) -> MqttConfig | None:
    """``[mqtt]``, or None when it has no url. Messages never repeat the URL (a password)."""
    mqtt = _table(doc, "mqtt")
    url = _get(mqtt, "mqtt", "url", str, "")
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError("mqtt.url", "not a valid URL (mqtt://user:password@host:1883)") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError("mqtt.url", f"must start with mqtt:// or mqtts://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError("mqtt.url", "names no host (mqtt://user:password@host:1883)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("mqtt.url", "must be only mqtt[s]://[user[:password]@]host[:port]")
    tls = parts.scheme == "mqtts"
    ca_file = None
    ca_name = _get(mqtt, "mqtt", "ca_file", str, "")
    if ca_name:
        if not tls:
            raise ConfigError("mqtt.ca_file", "needs an mqtts:// url")
        ca_file = Path(ca_name)
        if not ca_file.is_file():
            raise ConfigError("mqtt.ca_file", f"no such file: {ca_name}")
    return MqttConfig(
        host=parts.hostname,
        port=port if port is not None else (8883 if tls else 1883),
        tls=tls,
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
        ca_file=ca_file,
        topic_prefix=_topic_prefix(mqtt, "topic_prefix", ""),
        discovery_prefix=_topic_prefix(mqtt, "discovery_prefix", "homeassistant"),
    )


def _cards(value: Any) -> tuple[list[str], dict[str, str]]:
    """``[authorization] cards``: id tags, each a string or a table ``{uid, name}``."""
    problem = "must be a list of id tags of 1-20 characters, or of tables {uid, name}"
    if not isinstance(value, list):
        raise ConfigError("authorization.cards", problem)
    tags: list[str] = []
    names: dict[str, str] = {}
    for index, entry in enumerate(value):
        if isinstance(entry, Mapping):
            unknown = set(entry) - {"uid", "name"}
            if unknown:
                raise ConfigError(f"authorization.cards.{index}", f"unknown key {sorted(unknown)}")
            tag, name = entry.get("uid"), entry.get("name", "")
            if not isinstance(name, str) or len(name) > 40:
                raise ConfigError(f"authorization.cards.{index}.name", "must be text (<= 40)")
        else:
            tag, name = entry, ""
        if not (isinstance(tag, str) and 1 <= len(tag) <= 20):
            raise ConfigError(f"authorization.cards.{index}", problem)
        tags.append(tag)
        if name:
            names[tag.upper()] = name
    return tags, names


def _web(web: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[web]`` section: listen ("HOST:PORT" or "" for off), public_status, id_tag."""
    listen = _get(web, "web", "listen", str, DEFAULT_WEB_LISTEN)
    if listen:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError("web.listen", f"must be HOST:PORT or empty (off), got {listen!r}")
    id_tag = _get(web, "web", "id_tag", str, "")
    if len(id_tag) > 20:
        raise ConfigError("web.id_tag", f"must be an id tag of at most 20 characters: {id_tag!r}")
    return {
        "web_listen": listen,
        "web_public_status": _get(web, "web", "public_status", bool, False),
        "web_id_tag": id_tag,
    }


def parse_config(doc: Mapping[str, Any]) -> Config:
    """Validate a parsed TOML document; raises :class:`ConfigError` naming the bad key."""
    for key in doc:
        if key not in _TOP_LEVEL:
            nearest = difflib.get_close_matches(key, sorted(_TOP_LEVEL), n=1)
            hint = (
                f"did you mean {nearest[0]}?"
                if nearest
                else f"expected one of {sorted(_TOP_LEVEL)}"
            )
            raise ConfigError(key, f"unknown section; {hint}")
    unknown = unknown_key(doc, SECTION_KEYS)
    if unknown is not None:
        raise ConfigError(*unknown)
    cp = _table(doc, "chargepoint")
    ocpp = _table(doc, "ocpp")
    hardware = _table(doc, "hardware")
    storage = _table(doc, "storage")

    cp_id = check_chargepoint_id(
        _get(cp, "chargepoint", "id", str, "picharge-0001"), "chargepoint.id"
    )
    version = _get(ocpp, "ocpp", "version", str, "1.6")
    if version not in ("1.6", "2.0.1"):
        raise ConfigError("ocpp.version", f"must be '1.6' or '2.0.1', got {version!r}")
    url = _get(ocpp, "ocpp", "url", str, "")
    if url and not url.startswith(("ws://", "wss://")):
        raise ConfigError("ocpp.url", f"must start with ws:// or wss://, got {url!r}")
    backend = _get(hardware, "hardware", "backend", str, "pi")
    if backend not in BACKENDS:
        raise ConfigError("hardware.backend", f"must be 'pi' or 'sim', got {backend!r}")

    auth = _table(doc, "authorization")
    cards, card_names = _cards(auth.get("cards", []))
    free_id = auth.get("free_charging_id")
    if free_id is not None and not (isinstance(free_id, str) and 1 <= len(free_id) <= 20):
        raise ConfigError("authorization.free_charging_id", "must be an id tag of 1-20 characters")

    raw_connectors = doc.get("connector", [{}])
    if not isinstance(raw_connectors, list) or not raw_connectors:
        raise ConfigError("connector", "must be one or more [[connector]] tables")
    connectors = tuple(_connector(i, t) for i, t in enumerate(raw_connectors, start=1))

    return Config(
        chargepoint_id=cp_id,
        vendor=_get(cp, "chargepoint", "vendor", str, "picharge"),
        model=_get(cp, "chargepoint", "model", str, "picharge-pi"),
        serial=_get(cp, "chargepoint", "serial", str, ""),
        ocpp_url=url,
        ocpp_version=version,
        **_security(ocpp, url),
        **_firmware(ocpp),
        backend=backend,
        state_dir=Path(_get(storage, "storage", "state_dir", str, str(DEFAULT_STATE_DIR))),
        connectors=connectors,
        meter=_table(doc, "meter"),
        rfid=_table(doc, "rfid"),
        site=_site(doc, connectors),
        grid_meter=_table(doc, "grid_meter"),
        circuits=_tables(doc, "circuit"),
        phase_switch=_phase_switch(doc, connectors),
        energy=_table(doc, "energy"),
        local_cards=tuple(cards),
        free_charging_id=free_id,
        mqtt=_mqtt(doc),
        card_names=card_names,
        **_web(_table(doc, "web")),
        raw=doc,
    )


def load_config(path: Path | None) -> Config:
    """Read and validate ``path``; None means built-in defaults (used by ``--sim`` runs)."""
    if path is None:
        return parse_config({})
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "--config",
            f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at {exc.start})",
        ) from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from exc
    return parse_config(doc)
