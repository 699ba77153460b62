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


def test_the_committed_schematic_is_what_the_generator_draws_today(tmp_path: Path) -> None:
    drawn = _diagrams().draw(tmp_path / "cp_frontend.svg")
    committed = (ROOT / "docs" / "img" / "cp_frontend.svg").read_text()
    assert drawn == committed, "run: .venv/bin/python docs/diagrams.py"


def test_the_schematic_shows_the_values_the_netlist_simulates() -> None:
    svg = (ROOT / "docs" / "img" / "cp_frontend.svg").read_text()
    texts = " ".join(re.findall(r"<(?:text|tspan)[^>]*>([^<]*)", svg))
    for label in _diagrams().labels():
        assert label in texts, label
    deck = case_netlist(Case("B", 53.3), 0)
    for part in (REFERENCE.r_source_ohm, REFERENCE.r_top_ohm, REFERENCE.r_ref_ohm):
        assert f" {part.nominal}\n" in deck
    assert f" {REFERENCE.c_hold_f}\n" in deck
