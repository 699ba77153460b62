"""A bad configuration names the key that is wrong; a good one is read completely."""

from pathlib import Path

import pytest

from controller.config import ConfigError, load_config, parse_config


def test_defaults_give_one_32a_three_phase_connector() -> None:
    config = parse_config({})
    assert [c.id for c in config.connectors] == [1]
    assert config.connectors[0].max_current_a == 32.0
    assert config.ocpp_url == ""  # standalone unless a CSMS is configured


def test_connector_tables_keep_their_driver_settings() -> None:
    config = parse_config(
        {"connector": [{"max_current_a": 16, "phases": 1, "contactor_pin": 5}, {}]}
    )
    assert config.connectors[0].phases == 1
    assert config.connectors[0].drivers == {"contactor_pin": 5}
    assert config.connectors[1].id == 2


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"connector": [{"max_current_a": 100}]}, "connector.1.max_current_a"),
        ({"connector": [{}, {"phases": 2}]}, "connector.2.phases"),
        ({"connector": [{"max_current_a": "16"}]}, "connector.1.max_current_a"),
        ({"ocpp": {"version": "1.5"}}, "ocpp.version"),
        ({"ocpp": {"url": "http://x"}}, "ocpp.url"),
        ({"hardware": {"backend": "arduino"}}, "hardware.backend"),
        ({"chargepoint": {"id": "a/b"}}, "chargepoint.id"),
        ({"meters": {}}, "meters"),
        ({"meter": "sdm630"}, "meter"),
    ],
)
def test_bad_value_is_reported_with_its_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    assert caught.value.key == key
    assert str(caught.value).startswith(key + ":")


def test_unreadable_or_invalid_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[connector\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
