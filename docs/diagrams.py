"""Draw the reference CP/PP front-end schematic from drivers/pilot_reference.py.

Run ``.venv/bin/python docs/diagrams.py`` after changing a value there: it rewrites
``docs/img/cp_frontend.svg``. The labels come from the same values the driver's default
calibration and the ngspice tests use (tests/test_diagrams.py checks the committed picture
still matches them), so the picture cannot silently drift from the circuit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import schemdraw
import schemdraw.elements as elm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.pilot_reference import REFERENCE, Part, ReferenceFrontEnd  # noqa: E402

OUT = ROOT / "docs" / "img" / "cp_frontend.svg"


def ohms(part: Part) -> str:
    """A resistor label: '909k 1%'."""
    value = part.nominal
    text = (
        f"{value / 1e6:g}M"
        if value >= 1e6
        else f"{value / 1e3:g}k"
        if value >= 1e3
        else f"{value:g}"
    )
    return f"{text}Ω {part.tolerance * 100:g}%"


def farads(value: float) -> str:
    """A capacitor label: '100nF'."""
    return f"{value * 1e9:g}nF"


def labels(ref: ReferenceFrontEnd = REFERENCE) -> list[str]:
    """Every value label the schematic shows (the test compares them with the SVG)."""
    return [
        ohms(ref.r_source_ohm),
        ohms(ref.r_top_ohm),
        ohms(ref.r_ref_ohm),
        ohms(ref.r_bottom_ohm),
        ohms(ref.pp_pullup_ohm),
        f"{ref.r_bleed_ohm / 1e6:g}MΩ",
        farads(ref.c_hold_f),
    ]


def _detector(d: schemdraw.Drawing, ref: ReferenceFrontEnd, positive: bool, ain: str) -> None:
    """A peak detector and its divider into one ADS1115 input, drawn rightwards."""
    diode = elm.Diode().right() if positive else elm.Diode().right().reverse()
    d += diode.label("BAT54 " + ("+peak" if positive else "-peak"))
    d += elm.Dot()
    d.push()
    d += elm.Capacitor().down().label(farads(ref.c_hold_f))
    d += elm.Ground()
    d.pop()
    d += elm.Line().right(1.5)
    d += elm.Dot()
    d.push()
    d += elm.Resistor().down().label(f"{ref.r_bleed_ohm / 1e6:g}MΩ\nbleed", loc="bottom")
    d += elm.Dot(open=True).label("-12 V" if positive else "+12 V", loc="right")
    d.pop()
    d += elm.Resistor().right().label(ohms(ref.r_top_ohm))
    d += elm.Dot()
    d.push()
    d += elm.Resistor().up().label(ohms(ref.r_ref_ohm), loc="bottom")
    d += elm.Vdd().label("3.3 V ref")
    d.pop()
    d.push()
    d += elm.Resistor().down().label(ohms(ref.r_bottom_ohm), loc="bottom")
    d += elm.Ground()
    d.pop()
    d += elm.Line().right(1.5)
    d += elm.Dot(open=True).label(f"ADS1115 {ain}", loc="right")
    d += elm.Line().right(3).color("white")  # room for the label


def draw(path: Path = OUT, ref: ReferenceFrontEnd = REFERENCE) -> str:
    """Draw the schematic to ``path`` and return the SVG text."""
    schemdraw.use("svg")
    with schemdraw.Drawing(show=False) as d:
        d.config(fontsize=11, unit=2.5)
        d += elm.Dot(open=True).label("Pi GPIO18\n(PWM 0/3.3 V)", loc="left")
        d += elm.Line().right(1)
        d += (
            amp := elm.Opamp(leads=True)
            .anchor("in2")
            .label("rail-to-rail op-amp\n±12 V", loc="center", ofst=(0, -1.6))
        )
        d += elm.Line().at(amp.in1).left(0.5)
        d += elm.Dot(open=True).label("1.65 V", loc="left")
        d += elm.Line().at(amp.out).right(0.5)
        d += elm.Resistor().right().label(ohms(ref.r_source_ohm) + " (R1)")
        d += (cp := elm.Dot())
        d += elm.Line().right(1)
        d += elm.Dot(open=True).label(
            "CP → car\n(2.74k / 882 / 246 Ω\nbehind its diode)", loc="right"
        )
        d += elm.Line().at(cp.center).down(2.5)
        d += (split := elm.Dot())
        _detector(d, ref, True, "AIN0")
        d += elm.Line().at(split.center).down(7.5)
        _detector(d, ref, False, "AIN1")
        d += elm.Vdd().at((2, -7)).label("3.3 V")
        d += elm.Resistor().down().label(ohms(ref.pp_pullup_ohm) + " PP pull-up")
        d += (pp := elm.Dot())
        d += elm.Line().right(3)
        d += elm.Dot(open=True).label("PP → plug\n(1.5k/680/220/100 Ω\nto PE)", loc="right")
        d += elm.Line().at(pp.center).down(1)
        d += elm.Dot(open=True).label("ADS1115 AIN2", loc="left")
        d += (
            elm.Ground()
            .at((0, -11))
            .label("all grounds are PE (the Pi's GND is bonded to PE)", loc="right")
        )
        svg = d.get_imagedata("svg").decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)
    return svg


if __name__ == "__main__":
    draw()
    print(f"wrote {OUT.relative_to(ROOT)}")
