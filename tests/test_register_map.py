"""Register maps as data: every bundled model file loads, plans and round-trips its values.

A new file in drivers/meter_models is picked up by the parametrized tests here and in
test_meter_driver.py without touching either.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import ConfigurationError
from drivers.register_map import (
    CANONICAL_UNITS,
    DataType,
    Quantity,
    RegisterMap,
    available_models,
    load_model,
    parse_register_map,
)

MODELS = available_models()

# Requests per read for the models we know, worked out by hand from the reference tables.
KNOWN_REQUESTS = {
    "sdm630": 1,  # 0x0000-0x004B = 76 registers <= 80
    "sdm72d_v2": 1,
    "sdm120": 1,
    "sdm72d": 1,  # 0x0034-0x004B
    "em340": 1,  # 0x0000-0x004F = 80 registers <= 125
    "abb_b23": 2,  # 0x5000 block and 0x5B00 block are 2816 registers apart
    "orno_we516": 2,  # 0x000E-0x0023 and 0x0108-0x0111
    "sunspec_203": 1,  # 40072-40123: the meter model's points and its scale factors
    "em24": 2,  # 0x0000-0x0029 and 0x0033-0x004F (80 registers in all, read 50 at most)
}


def minimal_request_count(quantities: tuple[Quantity, ...], max_count: int) -> int:
    """Brute force: the fewest contiguous windows of max_count registers covering everything."""
    best = {0: 0}  # index of first uncovered quantity -> requests used
    for i in range(len(quantities)):
        if i not in best:
            continue
        for j in range(i + 1, len(quantities) + 1):
            span = max(q.end for q in quantities[i:j]) - quantities[i].address
            if span > max_count:
                break
            best[j] = min(best.get(j, len(quantities)), best[i] + 1)
    return best[len(quantities)]


def sample_value(q: Quantity) -> float:
    """A realistic value for each quantity, distinct per phase so a swapped address shows."""
    phase = {"l1": 0, "l2": 1, "l3": 2}
    offset = next((phase[p] for p in phase if f"_{p}_" in q.name), 0)
    base = {
        "voltage": 229.7,
        "current": 15.42,
        "power": 3541.3,
        "energy": 1_234_567.0,
        "frequency": 49.95,
    }[q.name.split("_")[0]]
    return base + offset * 1.1


def tolerance(q: Quantity, value: float) -> float:
    """What the wire can express: one step of an integer register, float32 rounding else."""
    if q.data_type is DataType.FLOAT32:
        return abs(value) * 1e-6 + 1e-6
    return q.resolution * 1.0001


def minimal_map(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "test meter",
        "function_code": 4,
        "quantities": [{"name": "energy_import_wh", "address": 0x48, "type": "float32"}],
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("model", MODELS)
def test_every_bundled_model_file_loads_and_names_only_canonical_quantities(model: str) -> None:
    rmap = load_model(model)
    assert rmap.model == model
    assert rmap.display_name
    assert rmap.function_code in (3, 4)
    assert rmap.quantity("energy_import_wh") is not None
    assert {q.name for q in rmap.quantities} <= set(CANONICAL_UNITS)


def test_the_seven_reference_models_are_bundled() -> None:
    assert set(KNOWN_REQUESTS) <= set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_request_plan_covers_every_quantity_in_the_fewest_requests(model: str) -> None:
    rmap = load_model(model)
    plan = rmap.plan()
    covered = [q for block in plan for q in block.quantities]
    assert sorted(covered, key=lambda q: q.address) == list(rmap.quantities)
    for block in plan:
        assert 1 <= block.count <= rmap.max_registers_per_request
        for q in block.quantities:
            assert block.address <= q.address and q.end <= block.address + block.count
    assert len(plan) == minimal_request_count(rmap.quantities, rmap.max_registers_per_request)
    if model in KNOWN_REQUESTS:
        assert len(plan) == KNOWN_REQUESTS[model]


@pytest.mark.parametrize("model", MODELS)
def test_every_value_survives_encode_then_decode_within_the_wire_resolution(model: str) -> None:
    rmap = load_model(model)
    for q in rmap.quantities:
        value = sample_value(q)
        decoded = rmap.decode(q, rmap.encode(q, value))
        assert decoded is not None
        assert decoded == pytest.approx(value, abs=tolerance(q, value)), q.name


def test_sdm630_float_is_high_word_first() -> None:
    rmap = load_model("sdm630")
    q = rmap.quantity("voltage_l1_v")
    assert q is not None
    assert rmap.encode(q, 230.0) == [0x4366, 0x0000]  # 230.0f = 0x43660000
    assert rmap.decode(q, [0x4366, 0x0000]) == 230.0


def test_carlo_gavazzi_int32_is_low_word_first_and_scaled() -> None:
    rmap = load_model("em340")
    q = rmap.quantity("energy_import_wh")
    assert q is not None
    # 0x00012345 counts of 0.1 kWh, low word first on the wire
    assert rmap.decode(q, [0x2345, 0x0001]) == pytest.approx(0x12345 * 100.0)
    assert rmap.encode(q, 0x12345 * 100.0) == [0x2345, 0x0001]


def test_orno_power_in_kilowatts_reads_in_watts() -> None:
    rmap = load_model("orno_we516")
    q = rmap.quantity("power_total_w")
    assert q is not None and q.unit == "kW"
    assert rmap.decode(q, [0x4000, 0x0000]) == 2000.0  # 2.0 kW


def test_abb_not_available_values_read_as_none() -> None:
    rmap = load_model("abb_b23")
    signed = rmap.quantity("power_l2_w")
    unsigned = rmap.quantity("voltage_l3_v")
    energy = rmap.quantity("energy_import_wh")
    assert signed is not None and unsigned is not None and energy is not None
    assert rmap.decode(signed, [0x7FFF, 0xFFFF]) is None
    assert rmap.decode(unsigned, [0xFFFF, 0xFFFF]) is None
    assert rmap.decode(energy, [0xFFFF] * 4) is None
    assert rmap.decode(signed, [0xFFFF, 0xFFFF]) == pytest.approx(-0.01)  # -1 is a real value
    assert rmap.encode(unsigned, None) == [0xFFFF, 0xFFFF]


def test_maps_without_sentinels_cannot_encode_not_available() -> None:
    rmap = load_model("em340")
    q = rmap.quantity("voltage_l1_v")
    assert q is not None
    with pytest.raises(ValueError, match="no 'not available'"):
        rmap.encode(q, None)


def test_energy_counters_round_down_like_a_meter_display() -> None:
    rmap = load_model("em340")
    q = rmap.quantity("energy_import_wh")
    assert q is not None
    assert rmap.decode(q, rmap.encode(q, 1299.9)) == 1200.0
    assert rmap.decode(q, rmap.encode(q, 1234.0 * 100)) == 123400.0


def test_value_that_does_not_fit_its_register_is_refused() -> None:
    rmap = load_model("abb_b23")
    q = rmap.quantity("frequency_hz")  # uint16 x 0.01 Hz: at most 655.35 Hz
    assert q is not None
    with pytest.raises(ValueError, match="out of range"):
        rmap.encode(q, 700.0)


def test_a_custom_map_is_validated_like_a_model_file() -> None:
    rmap = parse_register_map(
        minimal_map(
            max_registers_per_request=10,
            link={"baudrate": 19200, "parity": "E", "stopbits": 1, "unit_id": 7},
            quantities=[
                {"name": "energy_import_wh", "address": 0, "type": "uint32", "unit": "Wh"},
                {"name": "power_total_w", "address": 20, "type": "int16", "scale": 10},
            ],
        ),
        model="custom",
        where="meter.map",
    )
    assert rmap.link.unit_id == 7 and rmap.link.parity == "E"
    assert len(rmap.plan()) == 2  # 0..21 is 22 registers > 10
    q = rmap.quantity("power_total_w")
    assert q is not None and q.unit == "W" and q.factor == 10.0


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"function_code": 6}, "meter.map.function_code"),
        ({"function_code": "4"}, "meter.map.function_code"),
        ({"max_registers_per_request": 126}, "meter.map.max_registers_per_request"),
        ({"min_request_gap_s": -1}, "meter.map.min_request_gap_s"),
        ({"baud": 9600}, "meter.map.baud"),
        ({"link": {"parity": "X"}}, "meter.map.link.parity"),
        ({"link": {"unit_id": 0}}, "meter.map.link.unit_id"),
        ({"link": {"stopbits": 3}}, "meter.map.link.stopbits"),
        ({"quantities": []}, "meter.map.quantities"),
        (
            {"quantities": [{"name": "power_total_w", "address": 0, "type": "float32"}]},
            "meter.map.quantities",
        ),
        (
            {"quantities": [{"name": "energy_wh", "address": 0, "type": "float32"}]},
            "meter.map.quantities[0].name",
        ),
        (
            {"quantities": [{"name": "energy_import_wh", "address": 0, "type": "float"}]},
            "meter.map.quantities[0].type",
        ),
        (
            {"quantities": [{"name": "energy_import_wh", "address": -1, "type": "float32"}]},
            "meter.map.quantities[0].address",
        ),
        (
            {"quantities": [{"name": "energy_import_wh", "type": "float32"}]},
            "meter.map.quantities[0].address",
        ),
        (
            {
                "quantities": [
                    {"name": "energy_import_wh", "address": 0, "type": "float32", "unit": "kW"}
                ]
            },
            "meter.map.quantities[0].unit",
        ),
        (
            {
                "quantities": [
                    {"name": "energy_import_wh", "address": 0, "type": "float32", "scale": 0}
                ]
            },
            "meter.map.quantities[0].scale",
        ),
        (
            {
                "quantities": [
                    {"name": "energy_import_wh", "address": 0, "type": "int32", "word_order": "x"}
                ]
            },
            "meter.map.quantities[0].word_order",
        ),
        (
            {
                "quantities": [
                    {"name": "energy_import_wh", "address": 0, "type": "int64"},
                    {"name": "power_total_w", "address": 2, "type": "int32"},
                ]
            },
            "meter.map.quantities",
        ),
        (
            {
                "quantities": [
                    {"name": "energy_import_wh", "address": 0, "type": "float32"},
                    {"name": "energy_import_wh", "address": 4, "type": "float32"},
                ]
            },
            "meter.map.quantities",
        ),
    ],
)
def test_bad_map_entries_are_refused_naming_the_exact_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_register_map(minimal_map(**change), model="custom", where="meter.map")
    assert caught.value.key == key


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_model("sdm999")
    assert caught.value.key == "meter.model"
    assert "sdm630" in caught.value.problem


def test_model_name_cannot_reach_outside_the_models_folder() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_model("../errors")
    assert caught.value.key == "meter.model"


@settings(max_examples=60, deadline=None)
@given(
    starts=st.lists(st.integers(0, 400), min_size=1, max_size=9, unique=True),
    sizes=st.lists(st.sampled_from(["float32", "int16", "int64"]), min_size=9, max_size=9),
    max_count=st.integers(4, 125),
)
def test_planner_matches_brute_force_on_random_layouts(
    starts: list[int], sizes: list[str], max_count: int
) -> None:
    names = list(CANONICAL_UNITS)
    quantities = []
    cursor = 0
    for i, gap in enumerate(sorted(starts)):
        cursor += gap % 40
        quantities.append({"name": names[i], "address": cursor, "type": sizes[i]})
        cursor += DataType(sizes[i]).registers
    if not any(q["name"] == "energy_import_wh" for q in quantities):
        quantities.append({"name": "energy_import_wh", "address": cursor, "type": "int16"})
    rmap = parse_register_map(
        minimal_map(max_registers_per_request=max_count, quantities=quantities),
        model="custom",
        where="meter.map",
    )
    plan = rmap.plan()
    assert len(plan) == minimal_request_count(rmap.quantities, max_count)
    assert all(b.count <= max_count for b in plan)
    # No quantity is split and none is read twice.
    seen = list(itertools.chain.from_iterable(b.quantities for b in plan))
    assert len(seen) == len(rmap.quantities) == len(set(seen))


def test_register_map_is_immutable_data() -> None:
    rmap = load_model("sdm630")
    assert isinstance(rmap, RegisterMap)
    with pytest.raises(AttributeError):
        rmap.function_code = 3  # type: ignore[misc]


def test_a_sunspec_value_is_scaled_by_its_scale_register_read_in_the_same_request() -> None:
    rmap = load_model("sunspec_203")
    current = rmap.quantity("current_l1_a")
    assert current is not None and current.scale_register == 40075
    (block,) = rmap.plan()
    assert block.address <= current.scale_register < block.address + block.count
    image = rmap.encode_image({"current_l1_a": 15.42, "current_l2_a": 3.0, "current_l3_a": 0.5})
    assert image[40075] == 0xFFFD  # 10^-3: the finest scale at which all three fit an int16
    assert image[40072] == 15420
    registers = [image.get(a, 0) for a in range(block.address, block.address + block.count)]
    assert rmap.decode_block(block, registers)["current_l1_a"] == pytest.approx(15.42)
    # A scale factor SunSpec marks "not implemented" leaves its values unknown.
    registers[40075 - block.address] = 0x8000
    assert rmap.decode_block(block, registers)["current_l1_a"] is None


def test_shared_scale_picks_a_coarser_power_of_ten_when_a_value_needs_it() -> None:
    rmap = load_model("sunspec_203")
    image = rmap.encode_image({"power_l1_w": 40_000.0, "power_l2_w": 1.5, "power_l3_w": 0.0})
    assert image[40091] == 1  # 40 kW does not fit an int16 in W: tens of W
    assert image[40088] == 4000 and image[40089] == 0
