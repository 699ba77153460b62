"""OCPP 1.6 configuration keys: what a CSMS may read and change, checked and kept."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import ConfigError
from controller.ocpp16.keys import (
    CORE_KEYS,
    MEASURANDS,
    NAMESPACE,
    PRESET_NAMESPACE,
    PROFILE_KEYS,
    SECURITY_KEYS,
    SUPPORTED_PROFILES,
    ConfigStatus,
    InvalidValue,
    KeyContext,
    KeyDef,
    KeyEntry,
    KeyKind,
    KeyTable,
    OcppConfig,
    normalise,
    open_ocpp_config,
)
from controller.storage import Storage

SPEC_CORE_KEYS = {
    "AllowOfflineTxForUnknownId",
    "AuthorizationCacheEnabled",
    "AuthorizeRemoteTxRequests",
    "BlinkRepeat",
    "ClockAlignedDataInterval",
    "ConnectionTimeOut",
    "ConnectorPhaseRotation",
    "ConnectorPhaseRotationMaxLength",
    "GetConfigurationMaxKeys",
    "HeartbeatInterval",
    "LightIntensity",
    "LocalAuthorizeOffline",
    "LocalPreAuthorize",
    "MaxEnergyOnInvalidId",
    "MeterValuesAlignedData",
    "MeterValuesAlignedDataMaxLength",
    "MeterValuesSampledData",
    "MeterValuesSampledDataMaxLength",
    "MeterValueSampleInterval",
    "MinimumStatusDuration",
    "NumberOfConnectors",
    "ResetRetries",
    "StopTransactionOnEVSideDisconnect",
    "StopTransactionOnInvalidId",
    "StopTxnAlignedData",
    "StopTxnAlignedDataMaxLength",
    "StopTxnSampledData",
    "StopTxnSampledDataMaxLength",
    "SupportedFeatureProfiles",
    "SupportedFeatureProfilesMaxLength",
    "TransactionMessageAttempts",
    "TransactionMessageRetryInterval",
    "UnlockConnectorOnEVSideDisconnect",
    "WebSocketPingInterval",
}
READ_ONLY = sorted(d.name for d in CORE_KEYS if d.readonly)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(tmp_path / "state")
    yield store
    await store.close()


@pytest.fixture
async def config(storage: Storage) -> OcppConfig:
    cfg = OcppConfig(storage, number_of_connectors=2)
    await cfg.load()
    return cfg


def _stored(storage: Storage, namespace: str = NAMESPACE) -> dict[str, str]:
    """What is on disk right now, read through a connection of our own."""
    conn = sqlite3.connect(storage.path)
    try:
        rows = conn.execute(
            "SELECT key, value FROM settings WHERE namespace = ?", (namespace,)
        ).fetchall()
    finally:
        conn.close()
    return dict(rows)


# --- the table ------------------------------------------------------------------------------


def test_every_core_key_of_the_spec_is_served_and_nothing_else() -> None:
    assert {d.name for d in CORE_KEYS} == SPEC_CORE_KEYS
    assert len(CORE_KEYS) == len(SPEC_CORE_KEYS)


@pytest.mark.parametrize("connectors", [1, 2, 4])
def test_every_default_is_a_valid_normalised_value(connectors: int) -> None:
    table = KeyTable(number_of_connectors=connectors)
    for defn in CORE_KEYS:
        value = table.get(defn.name)
        assert value is not None
        assert table.normalise(defn, value) == value, defn.name


def test_the_table_describes_the_charger() -> None:
    table = KeyTable(number_of_connectors=3)
    assert table.get("NumberOfConnectors") == "3"
    assert table.get("ConnectorPhaseRotation") == "1.Unknown,2.Unknown,3.Unknown"
    assert table.get("ConnectorPhaseRotationMaxLength") == "4"
    assert table.get("SupportedFeatureProfiles") == ",".join(SUPPORTED_PROFILES)
    assert table.get("HeartbeatInterval") == "300"
    assert table.get("MeterValuesSampledData") == (
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Current.Offered"
    )


def test_a_feature_profile_without_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="Teleportation"):
        KeyTable(number_of_connectors=1, profiles=("Core", "Teleportation"))
    with pytest.raises(ValueError, match="number_of_connectors"):
        KeyTable(number_of_connectors=0)


def test_defaults_given_by_the_controller_override_the_built_in_ones() -> None:
    table = KeyTable(
        number_of_connectors=1,
        defaults={"heartbeatinterval": "60", "ConnectorPhaseRotation": "1.notapplicable"},
    )
    assert table.get("HeartbeatInterval") == "60"
    assert table.get("ConnectorPhaseRotation") == "1.NotApplicable"


@pytest.mark.parametrize(
    ("defaults", "key"),
    [
        ({"HeartbeatIntervall": "60"}, "HeartbeatIntervall"),
        ({"heartbeatinterval": "soon"}, "HeartbeatInterval"),
        ({"MeterValuesSampledData": "SoC"}, "MeterValuesSampledData"),
        # the built-in list of four measurands does not fit a bound of two
        ({"MeterValuesSampledDataMaxLength": "2"}, "MeterValuesSampledData"),
    ],
)
def test_a_bad_default_names_its_key(defaults: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        KeyTable(number_of_connectors=1, defaults=defaults)
    assert caught.value.key == key


def test_a_string_key_takes_printable_ascii_up_to_500_characters() -> None:
    defn = KeyDef("CpoName", KeyKind.STRING, False, False, "")
    ctx = KeyContext(1, ("Core",))
    assert normalise(defn, "Stadtwerke Beispiel", ctx) == "Stadtwerke Beispiel"
    with pytest.raises(InvalidValue, match="printable ASCII"):
        normalise(defn, "Stadtwerke M\u00fcnchen", ctx)
    with pytest.raises(InvalidValue, match="500"):
        normalise(defn, "x" * 501, ctx)


# --- reading --------------------------------------------------------------------------------


async def test_keys_compare_case_insensitively(config: OcppConfig) -> None:
    assert config.get("heartbeatinterval") == "300"
    assert await config.change("HEARTBEATINTERVAL", "30") is ConfigStatus.ACCEPTED
    assert config.get("HeartbeatInterval") == "30"
    entries, unknown = config.entries(["heartBEATinterval"])
    assert entries == [KeyEntry("HeartbeatInterval", False, "30")] and unknown == []


async def test_get_configuration_without_keys_lists_every_key(config: OcppConfig) -> None:
    entries, unknown = config.entries(None)
    assert unknown == []
    served = [d for profile in SUPPORTED_PROFILES for d in PROFILE_KEYS[profile]]
    served += [d for d in SECURITY_KEYS if not d.secret]  # AuthorizationKey is write-only
    assert [e.key for e in entries] == [d.name for d in served]
    assert {e.key for e in entries if e.readonly} == {d.name for d in served if d.readonly}
    assert KeyEntry("NumberOfConnectors", True, "2") in entries


async def test_get_configuration_answers_known_keys_and_names_unknown_ones(
    config: OcppConfig,
) -> None:
    entries, unknown = config.entries(
        ["MeterValueSampleInterval", "Foo", "meterValueSampleInterval", "NumberOfConnectors"]
    )
    assert entries == [
        KeyEntry("MeterValueSampleInterval", False, "60"),
        KeyEntry("NumberOfConnectors", True, "2"),
    ]
    assert unknown == ["Foo"]
    assert config.entries([]) == ([], [])


async def test_typed_getters_give_the_values_the_charger_uses(config: OcppConfig) -> None:
    assert config.get_int("ConnectionTimeOut") == 60
    assert config.get_bool("StopTransactionOnEVSideDisconnect") is True
    assert config.get_bool("AuthorizeRemoteTxRequests") is False
    assert config.get_list("MeterValuesAlignedData") == ["Energy.Active.Import.Register"]
    assert config.get_list("StopTxnAlignedData") == []
    assert config.get_list("ConnectorPhaseRotation") == ["1.Unknown", "2.Unknown"]
    with pytest.raises(KeyError):
        config.get_int("NoSuchKey")
    with pytest.raises(TypeError):
        config.get_bool("HeartbeatInterval")
    with pytest.raises(TypeError):
        config.get_int("MeterValuesSampledData")
    with pytest.raises(TypeError):
        config.get_list("LocalPreAuthorize")


# --- changing -------------------------------------------------------------------------------


async def test_an_unknown_key_is_not_supported(config: OcppConfig, storage: Storage) -> None:
    assert await config.change("HeartbeatIntervall", "60") is ConfigStatus.NOT_SUPPORTED
    assert config.get("HeartbeatIntervall") is None
    assert _stored(storage) == {}


@pytest.mark.parametrize("key", READ_ONLY)
async def test_a_read_only_key_is_rejected_and_unchanged(
    config: OcppConfig, storage: Storage, key: str
) -> None:
    before = config.get(key)
    assert before is not None
    assert await config.change(key.upper(), before) is ConfigStatus.REJECTED
    assert await config.change(key, "1") is ConfigStatus.REJECTED
    assert config.get(key) == before
    assert _stored(storage) == {}


async def test_a_reboot_required_key_is_stored_and_says_so(
    config: OcppConfig, storage: Storage
) -> None:
    reboot = [d.name for d in CORE_KEYS if d.reboot_required]
    assert reboot == ["WebSocketPingInterval"]
    assert await config.change("WebSocketPingInterval", "10") is ConfigStatus.REBOOT_REQUIRED
    assert config.get_int("WebSocketPingInterval") == 10
    assert _stored(storage) == {"WebSocketPingInterval": "10"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HeartbeatInterval", "-5"),
        ("HeartbeatInterval", "abc"),
        ("HeartbeatInterval", "1.5"),
        ("HeartbeatInterval", ""),
        ("HeartbeatInterval", "0"),  # a heartbeat every 0 s would spin the loop
        ("HeartbeatInterval", "86401"),
        ("HeartbeatInterval", "+60"),
        ("HeartbeatInterval", "\u0666\u0660"),  # Arabic-Indic digits: int() takes them, we do not
        ("MeterValueSampleInterval", "99999999999999999999"),
        ("ConnectionTimeOut", "0"),
        ("LightIntensity", "101"),
        ("AuthorizeRemoteTxRequests", "yes"),
        ("LocalPreAuthorize", "1"),
        ("StopTransactionOnInvalidId", ""),
        ("MeterValuesSampledData", "Temperature"),
        ("MeterValuesSampledData", "SoC,Voltage"),
        ("MeterValuesSampledData", "Current.Import.L1"),
        ("MeterValuesSampledData", "Voltage,,Frequency"),
        ("MeterValuesSampledData", "Voltage,voltage"),
        ("StopTxnSampledData", "Energy.Active.Export.Register"),
        ("ConnectorPhaseRotation", "RST"),
        ("ConnectorPhaseRotation", "3.RST"),
        ("ConnectorPhaseRotation", "1.XYZ"),
        ("ConnectorPhaseRotation", "1.RST,1.RTS"),
        ("ConnectorPhaseRotation", ""),
        ("HeartbeatInterval", "6" * 501),
    ],
)
async def test_an_invalid_value_is_rejected_and_the_old_one_kept(
    config: OcppConfig, storage: Storage, key: str, value: str
) -> None:
    before = config.get(key)
    assert await config.change(key, value) is ConfigStatus.REJECTED
    assert config.get(key) == before
    assert _stored(storage) == {}


@pytest.mark.parametrize(
    ("key", "value", "normalised"),
    [
        ("HeartbeatInterval", " 060 ", "60"),
        ("ClockAlignedDataInterval", "0", "0"),
        ("AuthorizeRemoteTxRequests", "TRUE", "true"),
        ("UnlockConnectorOnEVSideDisconnect", " False", "false"),
        (
            "MeterValuesSampledData",
            "voltage, energy.active.import.register ,FREQUENCY",
            "Voltage,Energy.Active.Import.Register,Frequency",
        ),
        ("MeterValuesAlignedData", "", ""),
        ("ConnectorPhaseRotation", "0.rst, 2.NotApplicable,1.tsr", "0.RST,2.NotApplicable,1.TSR"),
    ],
)
async def test_an_accepted_value_is_stored_in_its_normal_form(
    config: OcppConfig, storage: Storage, key: str, value: str, normalised: str
) -> None:
    assert await config.change(key, value) is ConfigStatus.ACCEPTED
    assert config.get(key) == normalised
    assert _stored(storage) == {key: normalised}


async def test_a_list_longer_than_its_max_length_key_is_rejected(storage: Storage) -> None:
    config = OcppConfig(
        storage,
        number_of_connectors=2,
        defaults={
            "MeterValuesSampledData": "Energy.Active.Import.Register",
            "MeterValuesSampledDataMaxLength": "2",
            "ConnectorPhaseRotation": "1.RST",
            "ConnectorPhaseRotationMaxLength": "1",
        },
    )
    assert await config.change("MeterValuesSampledData", "Voltage,Frequency") is (
        ConfigStatus.ACCEPTED
    )
    assert await config.change("MeterValuesSampledData", "Voltage,Frequency,Current.Import") is (
        ConfigStatus.REJECTED
    )
    assert await config.change("ConnectorPhaseRotation", "1.RST,2.RST") is ConfigStatus.REJECTED
    assert await config.change("ConnectorPhaseRotation", "2.RST") is ConfigStatus.ACCEPTED
    assert config.get_list("MeterValuesSampledData") == ["Voltage", "Frequency"]


def test_every_measurand_the_meter_gives_fits_in_one_list() -> None:
    table = KeyTable(number_of_connectors=1)
    defn = table.definition("MeterValuesSampledData")
    assert defn is not None
    assert table.normalise(defn, ",".join(MEASURANDS)) == ",".join(MEASURANDS)


async def test_changes_survive_a_restart(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path)
    config = OcppConfig(storage, number_of_connectors=1)
    await config.load()
    assert await config.change("heartbeatinterval", "45") is ConfigStatus.ACCEPTED
    assert await config.change("MeterValuesSampledData", "Voltage") is ConfigStatus.ACCEPTED
    assert await config.change("WebSocketPingInterval", "0") is ConfigStatus.REBOOT_REQUIRED
    await storage.close()

    storage = await Storage.open(tmp_path)
    try:
        config = OcppConfig(storage, number_of_connectors=1)
        assert config.get("HeartbeatInterval") == "300"  # defaults until load()
        await config.load()
        assert config.get_int("HeartbeatInterval") == 45
        assert config.get_list("MeterValuesSampledData") == ["Voltage"]
        assert config.get_int("WebSocketPingInterval") == 0
        assert config.get_int("MeterValueSampleInterval") == 60  # untouched keys: defaults
    finally:
        await storage.close()


async def test_stored_values_that_no_longer_fit_fall_back_to_defaults(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    await storage.save_setting(NAMESPACE, "HeartbeatInterval", "soon")
    await storage.save_setting(NAMESPACE, "RetiredKey", "1")
    await storage.save_setting(NAMESPACE, "NumberOfConnectors", "9")
    config = OcppConfig(storage, number_of_connectors=1)
    await config.load()
    assert config.get("NumberOfConnectors") == "1"
    assert config.get("RetiredKey") is None
    assert config.get("HeartbeatInterval") == "300"
    assert "RetiredKey" in caplog.text and "soon" in caplog.text


async def test_callbacks_fire_after_the_value_is_on_disk(
    config: OcppConfig, storage: Storage
) -> None:
    calls: list[tuple[str, str, dict[str, str]]] = []
    config.on_change(lambda key, value: calls.append((key, value, _stored(storage))))
    assert await config.change("meterValueSampleInterval", "10") is ConfigStatus.ACCEPTED
    assert calls == [
        ("MeterValueSampleInterval", "10", {"MeterValueSampleInterval": "10"}),
    ]
    assert await config.change("MeterValueSampleInterval", "-1") is ConfigStatus.REJECTED
    assert await config.change("NumberOfConnectors", "3") is ConfigStatus.REJECTED
    assert await config.change("Nope", "3") is ConfigStatus.NOT_SUPPORTED
    assert len(calls) == 1  # nothing changed, nobody told


async def test_a_failing_callback_neither_undoes_the_change_nor_stops_the_others(
    config: OcppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(key: str, value: str) -> None:
        raise RuntimeError("subscriber bug")

    config.on_change(broken)
    config.on_change(lambda key, value: seen.append(value))
    assert await config.change("ResetRetries", "5") is ConfigStatus.ACCEPTED
    assert config.get("ResetRetries") == "5"
    assert seen == ["5"]
    assert "subscriber bug" in caplog.text


async def test_a_value_that_cannot_be_stored_is_rejected_and_not_applied(
    config: OcppConfig, storage: Storage
) -> None:
    await storage.close()  # the database went away (closed while shutting down, say)
    assert await config.change("HeartbeatInterval", "30") is ConfigStatus.REJECTED
    assert config.get("HeartbeatInterval") == "300"


# --- preset ---------------------------------------------------------------------------------


async def test_a_preset_file_sets_keys_in_a_new_state_dir(tmp_path: Path) -> None:
    preset = tmp_path / "keys.toml"
    preset.write_text(
        "heartbeatinterval = 20\n"
        "AuthorizeRemoteTxRequests = true\n"
        'MeterValuesSampledData = ["Voltage", "Current.Import"]\n'
        'StopTxnAlignedData = "Energy.Active.Import.Register"\n'
        'ConnectorPhaseRotation = "1.RST"\n'
    )
    storage = await Storage.open(tmp_path / "state")
    config = await open_ocpp_config(storage, number_of_connectors=1, preset_path=preset)
    assert config.get("HeartbeatInterval") == "20"
    assert config.get_bool("AuthorizeRemoteTxRequests") is True
    assert config.get("MeterValuesSampledData") == "Voltage,Current.Import"
    await storage.close()

    storage = await Storage.open(tmp_path / "state")
    try:
        config = await open_ocpp_config(storage, number_of_connectors=1)  # no preset now
        assert config.get("HeartbeatInterval") == "20"
        assert config.get("StopTxnAlignedData") == "Energy.Active.Import.Register"
        assert config.get("ConnectorPhaseRotation") == "1.RST"
    finally:
        await storage.close()


async def test_a_preset_is_ignored_once_the_state_dir_is_in_use(tmp_path: Path) -> None:
    first = await Storage.open(tmp_path)
    config = OcppConfig(first, number_of_connectors=1)
    await config.load()
    assert await config.change("HeartbeatInterval", "100") is ConfigStatus.ACCEPTED
    await first.close()

    preset = tmp_path / "keys.toml"
    preset.write_text("HeartbeatInterval = 20\nLocalPreAuthorize = true\n")
    second = await Storage.open(tmp_path)
    try:
        config = await open_ocpp_config(second, number_of_connectors=1, preset_path=preset)
        assert config.get("HeartbeatInterval") == "100"  # what the CSMS set stays
        assert config.get("LocalPreAuthorize") == "false"
    finally:
        await second.close()


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            "HeartbeatInterval = 30\nHeartbeatIntervall = 30\n",
            "--ocpp-keys HeartbeatIntervall",
            "unknown",
        ),
        ("heartbeatinterval = -1\n", "--ocpp-keys HeartbeatInterval", "from 1 to 86400"),
        ('LocalPreAuthorize = "yes"\n', "--ocpp-keys LocalPreAuthorize", "true or false"),
        ("MeterValueSampleInterval = 1.5\n", "--ocpp-keys MeterValueSampleInterval", "integer"),
        ('MeterValuesSampledData = ["SoC"]\n', "--ocpp-keys MeterValuesSampledData", "SoC"),
        ("NumberOfConnectors = 4\n", "--ocpp-keys NumberOfConnectors", "describes the hardware"),
        ("ChargeProfileMaxStackLevel = 9\n", "--ocpp-keys ChargeProfileMaxStackLevel", "raised"),
        (
            "ConnectorSwitch3to1PhaseSupported = true\n",
            "--ocpp-keys ConnectorSwitch3to1PhaseSupported",
            "not on",
        ),
        (
            'SupportedFeatureProfiles = "Reservation"\n',
            "--ocpp-keys SupportedFeatureProfiles",
            "Core",
        ),
        (
            'SupportedFeatureProfiles = "Core,Foo"\n',
            "--ocpp-keys SupportedFeatureProfiles",
            "'Foo' is not allowed",
        ),
        (
            'SupportedFeatureProfiles = "Core"\nReserveConnectorZeroSupported = false\n',
            "--ocpp-keys ReserveConnectorZeroSupported",
            "switches off",
        ),
        ("[ocpp]\nHeartbeatInterval = 1\n", "--ocpp-keys ocpp", "unknown"),
        (
            "HeartbeatInterval = 1\nheartbeatinterval = 2\n",
            "--ocpp-keys HeartbeatInterval",
            "more than once",
        ),
        ("HeartbeatInterval = \n", "--ocpp-keys", "not valid TOML"),
    ],
)
async def test_a_bad_preset_names_the_key_and_changes_nothing(
    tmp_path: Path, storage: Storage, text: str, key: str, problem: str
) -> None:
    preset = tmp_path / "keys.toml"
    preset.write_text(text)
    with pytest.raises(ConfigError) as caught:
        await open_ocpp_config(storage, number_of_connectors=1, preset_path=preset)
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(caught.value).startswith(key + ":")
    assert _stored(storage) == {}
    assert _stored(storage, PRESET_NAMESPACE) == {}


async def test_a_missing_preset_file_is_a_config_error(tmp_path: Path, storage: Storage) -> None:
    with pytest.raises(ConfigError, match="cannot read") as caught:
        await open_ocpp_config(
            storage, number_of_connectors=1, preset_path=tmp_path / "missing.toml"
        )
    assert caught.value.key == "--ocpp-keys"


async def test_the_preset_is_the_operators_configuration_read_only_keys_included(
    tmp_path: Path,
) -> None:
    """A harness's standard preset (issue 13): read-only keys set like any operator would,
    capabilities lowered, profiles switched off; all of it kept for every later boot."""
    preset = tmp_path / "keys.toml"
    preset.write_text(
        "ReserveConnectorZeroSupported = false\n"
        "AdditionalRootCertificateCheck = true\n"
        "ChargeProfileMaxStackLevel = 3\n"
        "LocalAuthListMaxLength = 10\n"
        "NumberOfConnectors = 2\n"
        "SupportedFeatureProfiles = "
        '["Core", "SmartCharging", "Reservation", "LocalAuthListManagement"]\n'
        "HeartbeatInterval = 20\n"
    )
    for boot in ("first", "second"):
        storage = await Storage.open(tmp_path / "state")
        try:
            config = await open_ocpp_config(
                storage, number_of_connectors=2, preset_path=preset if boot == "first" else None
            )
            assert config.get_bool("ReserveConnectorZeroSupported") is False
            assert config.get_bool("AdditionalRootCertificateCheck") is True
            assert config.get_int("ChargeProfileMaxStackLevel") == 3
            assert config.get_int("LocalAuthListMaxLength") == 10
            on = ("Core", "LocalAuthListManagement", "Reservation", "SmartCharging")
            assert set(config.get_list("SupportedFeatureProfiles")) == set(on)
            assert config.table.ctx.profiles == on  # FirmwareManagement, RemoteTrigger: off
            assert config.get("HeartbeatInterval") == "20"
            # still read-only to a CSMS
            assert await config.change("ChargeProfileMaxStackLevel", "2") is ConfigStatus.REJECTED
        finally:
            await storage.close()


def test_a_preset_can_be_checked_before_the_state_dir_is_opened(tmp_path: Path) -> None:
    preset = tmp_path / "keys.toml"
    preset.write_text("ConnectorPhaseRotation = '2.RST'\n")
    assert KeyTable(number_of_connectors=2).read_preset(preset) == {
        "ConnectorPhaseRotation": "2.RST"
    }
    with pytest.raises(ConfigError, match="connector 2"):
        KeyTable(number_of_connectors=1).read_preset(preset)


# --- property -------------------------------------------------------------------------------

_ROTATIONS = ["RST", "rts", "Unknown", "NOTAPPLICABLE", "XYZ"]
_ints = st.one_of(
    st.from_regex(r"\s?[0-9]{1,6}\s?", fullmatch=True), st.integers(-5, 10**6).map(str)
)
_bools = st.sampled_from(["true", "false", "TRUE", " False ", "yes", "1", ""])
_measurand_lists = st.lists(
    st.sampled_from([*MEASURANDS, "SoC", "voltage", " Frequency ", ""]), max_size=7
).map(",".join)
_rotations = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(_ROTATIONS)).map(lambda p: f"{p[0]}.{p[1]}"),
    max_size=3,
).map(", ".join)
_BY_KIND = {
    KeyKind.INT: _ints,
    KeyKind.BOOL: _bools,
    KeyKind.CSL: _measurand_lists,
    KeyKind.PHASE_ROTATION: _rotations,
}


@st.composite
def _changes(draw: st.DrawFn) -> tuple[str, str]:
    """A key in some spelling (sometimes unknown) and a value, often one of its kind."""
    defn = draw(st.sampled_from([*CORE_KEYS, None]))
    name = "NoSuchKey" if defn is None else defn.name
    key = draw(st.sampled_from([name, name.lower(), name.upper()]))
    fitting = _BY_KIND[defn.kind] if defn is not None else st.nothing()
    return key, draw(st.one_of(fitting, st.text(max_size=30)))


def _expected(kind: KeyKind, value: str) -> str:
    """The normal form of an accepted value, lower-cased, worked out independently."""
    if kind is KeyKind.INT:
        return str(int(value.strip()))
    items = [item.strip() for item in value.split(",")] if value.strip() else []
    if kind is KeyKind.PHASE_ROTATION:
        pairs = [item.partition(".") for item in items]
        items = [f"{int(number)}.{rotation.strip()}" for number, _, rotation in pairs]
    return ",".join(items).lower()


def test_any_change_is_either_applied_in_normal_form_or_leaves_the_value(
    tmp_path: Path,
) -> None:
    with asyncio.Runner() as runner:
        storage = runner.run(Storage.open(tmp_path))
        config = OcppConfig(storage, number_of_connectors=1)
        try:

            @settings(max_examples=300, deadline=None)
            @given(change=_changes())
            def check(change: tuple[str, str]) -> None:
                key, value = change
                before = config.get(key)
                status = runner.run(config.change(key, value))
                defn = config.definition(key)
                if defn is None:
                    assert status is ConfigStatus.NOT_SUPPORTED and before is None
                    return
                if defn.readonly:
                    assert status is ConfigStatus.REJECTED
                if status in (ConfigStatus.ACCEPTED, ConfigStatus.REBOOT_REQUIRED):
                    after = config.get(key)
                    assert after is not None
                    assert after == config.table.normalise(defn, after)  # a fixed point
                    assert after == config.table.normalise(defn, value)
                    assert after.lower() == _expected(defn.kind, value)
                    stored = runner.run(storage.load_settings(NAMESPACE))
                    assert stored[defn.name] == after
                    assert (status is ConfigStatus.REBOOT_REQUIRED) == defn.reboot_required
                else:
                    assert status is ConfigStatus.REJECTED
                    assert config.get(key) == before

            check()
        finally:
            runner.run(storage.close())
