"""The CSMS adapter is chosen by OCPP version through the registry, like a driver by type."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ConfigError, parse_config
from controller.csms import registry
from controller.csms.adapter import AdapterContext
from controller.domain import CsmsSettings
from controller.ocpp16 import Ocpp16Adapter
from controller.ocpp201 import Ocpp201Adapter
from controller.storage import Storage
from tests.support.ocpp16_adapter import FakeControl


def test_a_version_without_an_adapter_is_a_configuration_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as refused:
        registry.require("2.1")
    assert refused.value.key == "ocpp.version"
    assert "2.1" in refused.value.problem
    assert "1.6" in refused.value.problem and "2.0.1" in refused.value.problem


async def test_version_2_0_1_builds_the_2_0_1_adapter_with_its_preset(tmp_path: Path) -> None:
    config = parse_config(
        {"chargepoint": {"id": "CP-REG"}, "ocpp": {"url": "ws://127.0.0.1:9/ocpp"}}
    )
    preset = tmp_path / "keys.toml"
    preset.write_text("[OCPPCommCtrlr]\nMessageTimeout = 12\n")
    storage = await Storage.open(tmp_path)
    try:
        adapter = await registry.create(
            "2.0.1", AdapterContext(config, storage, FakeControl(), keys_preset=preset)
        )
        assert isinstance(adapter, Ocpp201Adapter)
        assert adapter.url == "ws://127.0.0.1:9/ocpp/CP-REG"
        assert await storage.load_settings("ocpp201") == {"OCPPCommCtrlr.MessageTimeout": "12"}
    finally:
        await storage.close()


async def test_version_1_6_builds_the_1_6_adapter_and_hands_the_supervisor_its_settings(
    tmp_path: Path,
) -> None:
    config = parse_config(
        {"chargepoint": {"id": "CP-REG"}, "ocpp": {"url": "ws://127.0.0.1:9/ocpp"}}
    )
    preset = tmp_path / "keys.toml"
    preset.write_text("StopTransactionOnEVSideDisconnect = false\nConnectionTimeOut = 45\n")
    storage = await Storage.open(tmp_path)
    try:
        control = FakeControl()
        adapter = await registry.create(
            "1.6", AdapterContext(config, storage, control, keys_preset=preset)
        )
        assert isinstance(adapter, Ocpp16Adapter)
        assert control.named("apply_settings") == [
            (CsmsSettings(stop_on_ev_disconnect=False, connection_timeout_s=45.0),)
        ]
    finally:
        await storage.close()
