"""The pictures in docs/ are drawn from the circuit the tests simulate, and are up to date.

docs/diagrams.py draws docs/img/cp_frontend.svg from drivers/pilot_reference.py; a value
changed there without re-running the script leaves a picture that lies, and fails here.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from drivers.pilot_reference import REFERENCE
from hw_sim.spice_frontend import Case, case_netlist

ROOT = Path(__file__).resolve().parent.parent


def _diagrams() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diagrams", ROOT / "docs" / "diagrams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_committed_picture_is_what_the_generator_draws_today(tmp_path: Path) -> None:
    diagrams = _diagrams()
    for name, draw in (
        ("cp_frontend.svg", diagrams.draw),
        ("mains_single_line.svg", diagrams.mains),
        ("pi_header.svg", diagrams.header),
        ("rs485.svg", diagrams.rs485),
    ):
        drawn = draw(tmp_path / name)
        committed = (ROOT / "docs" / "img" / name).read_text()
        assert drawn == committed, f"{name}: run .venv/bin/python docs/diagrams.py"


def test_the_header_picture_shows_the_pins_the_install_guide_lists() -> None:
    """Each default pin of the picture is in docs/install.md's wiring table as that GPIO."""
    guide = (ROOT / "docs" / "install.md").read_text()
    header_pin = {gpio: pin for pin, gpio in _diagrams().HEADER_GPIO.items()}
    for gpio in _diagrams().DEFAULT_PINS:
        assert f"GPIO{gpio} ({header_pin[gpio]})" in guide, f"GPIO{gpio}"


def test_the_schematic_shows_the_values_the_netlist_simulates() -> None:
    svg = (ROOT / "docs" / "img" / "cp_frontend.svg").read_text()
    texts = " ".join(re.findall(r"<(?:text|tspan)[^>]*>([^<]*)", svg))
    for label in _diagrams().labels():
        assert label in texts, label
    deck = case_netlist(Case("B", 53.3), 0)
    for part in (REFERENCE.r_source_ohm, REFERENCE.r_top_ohm, REFERENCE.r_ref_ohm):
        assert f" {part.nominal}\n" in deck
    assert f" {REFERENCE.c_hold_f}\n" in deck
