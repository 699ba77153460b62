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
MAINS_OUT = ROOT / "docs" / "img" / "mains_single_line.svg"
HEADER_OUT = ROOT / "docs" / "img" / "pi_header.svg"
RS485_OUT = ROOT / "docs" / "img" / "rs485.svg"

#: The default pins (BCM GPIO -> what it does), as the drivers default them
#: (contactor.py, rcm.py, led.py, pilot.py) and docs/install.md section 2 lists them.
DEFAULT_PINS: dict[int, str] = {
    17: "contactor coil (out)",
    27: "mirror contact (in, low = closed)",
    22: "RCM fault (in)",
    23: "RCM TEST (out)",
    18: "CP PWM (hardware PWM)",
    2: "I2C SDA: ADS1115 0x48, PN532",
    3: "I2C SCL",
    14: "UART TX: RS-485 / reader",
    15: "UART RX: RS-485 / reader",
    4: "1-wire: DS18B20",
    24: "status LED (out)",
}
#: Header pin -> BCM GPIO for the 40-pin header (Pi 2 and later).
HEADER_GPIO: dict[int, int] = {
    3: 2,
    5: 3,
    7: 4,
    8: 14,
    10: 15,
    11: 17,
    12: 18,
    13: 27,
    15: 22,
    16: 23,
    18: 24,
    19: 10,
    21: 9,
    22: 25,
    23: 11,
    24: 8,
    26: 7,
    27: 0,
    28: 1,
    29: 5,
    31: 6,
    32: 12,
    33: 13,
    35: 19,
    36: 16,
    37: 26,
    38: 20,
    40: 21,
}
POWER_PINS: dict[int, str] = {1: "3.3 V", 17: "3.3 V", 2: "5 V", 4: "5 V"}
GROUND_PINS = (6, 9, 14, 20, 25, 30, 34, 39)


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
        d += elm.Vdd().at((2, -11.5)).label("3.3 V")  # below the -peak line: no crossing
        d += elm.Resistor().down().label(ohms(ref.pp_pullup_ohm) + " PP pull-up")
        d += (pp := elm.Dot())
        d += elm.Line().right(3)
        d += elm.Dot(open=True).label("PP → plug\n(1.5k/680/220/100 Ω\nto PE)", loc="right")
        d += elm.Line().at(pp.center).down(1)
        d += elm.Dot(open=True).label("ADS1115 AIN2", loc="left")
        d += (
            elm.Ground()
            .at((0, -16))
            .label("all grounds are PE (the Pi's GND is bonded to PE)", loc="right")
        )
        svg = d.get_imagedata("svg").decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)
    return svg


def header(path: Path = HEADER_OUT) -> str:
    """The 40-pin header with every default pin, as a plain SVG table of two columns."""
    row_h, width = 22, 760
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{20 * row_h + 50}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{20 * row_h + 50}" fill="white"/>',
        '<text x="380" y="18" text-anchor="middle" font-weight="bold">'
        "Raspberry Pi 40-pin header: picharge defaults (pin 1 top left)</text>",
    ]
    for pin in range(1, 41):
        row, right = (pin - 1) // 2, pin % 2 == 0
        y = 32 + row * row_h
        cx = 395 if right else 365
        gpio = HEADER_GPIO.get(pin)
        use = DEFAULT_PINS.get(gpio, "") if gpio is not None else ""
        if pin in POWER_PINS:
            name, fill = POWER_PINS[pin], "#f4a3a3"
        elif pin in GROUND_PINS:
            name, fill = "GND (PE)", "#888888"
        else:
            name, fill = f"GPIO{gpio}", "#9ad19a" if use else "#e6e6e6"
        parts.append(f'<circle cx="{cx}" cy="{y + 8}" r="8" fill="{fill}" stroke="black"/>')
        parts.append(f'<text x="{cx}" y="{y + 12}" text-anchor="middle" font-size="9">{pin}</text>')
        label = f"{name}  {use}".strip() if use else name
        if right:
            parts.append(f'<text x="{cx + 14}" y="{y + 12}">{label}</text>')
        else:
            parts.append(f'<text x="{cx - 14}" y="{y + 12}" text-anchor="end">{label}</text>')
    parts.append("</svg>\n")
    svg = "\n".join(parts)
    path.write_text(svg)
    return svg


def mains(path: Path = MAINS_OUT) -> str:
    """Single-line mains diagram with the RCM's hardware cut of the contactor coil."""
    schemdraw.use("svg")
    with schemdraw.Drawing(show=False) as d:
        d.config(fontsize=11, unit=2.5)
        d += elm.Dot(open=True).label("supply\nL1-L3, N, PE", loc="left")
        d += elm.Line().right(1)
        d += elm.Fuse().right().label("MCB B/C\n(see table)")
        d += elm.Line().right(1.5)
        d += elm.Switch().right().label("RCD 30 mA type A\n+ RCM14-03 (6 mA DC)\nor RCD type B")
        d += elm.Line().right(1.5)
        d += elm.MeterA().right().label("Modbus\nmeter")
        d += elm.Line().right(1.5)
        d += (k1 := elm.Switch().right().label("K1 main\ncontacts (NO)"))
        d += elm.Line().right(1)
        d += elm.Dot(open=True).label("Type 2 socket\nL1-L3, N", loc="right")
        # The coil: L -> coil relay (GPIO17) -> RCM fault relay (NC) -> coil -> N.
        d += elm.Line().at(k1.center).down(3).linestyle("--")
        d += (coil := elm.Inductor2().down().label("K1 coil 230 V AC\n+ RC snubber", loc="bottom"))
        d += elm.Dot(open=True).label("N", loc="bottom")
        d += elm.Line().at(coil.start).left(1.5)
        d += (
            elm.Switch(nc=True)
            .left()
            .label("RCM fault relay (NC):\nopens the coil in hardware", loc="top")
        )
        d += elm.Line().left(1.5)
        d += elm.Switch().left().label("coil relay\n(GPIO17 driver)", loc="top")
        d += elm.Line().left(1)
        d += elm.Dot(open=True).label("L (after the RCD)", loc="left")
        d += elm.GroundChassis().at((0, -8))
        d += (
            elm.Line()
            .right(24)
            .label("PE bar: socket PE, DIN rail, the Pi's GND (the CP is measured against PE)")
        )
        svg = d.get_imagedata("svg").decode()
    path.write_text(svg)
    return svg


def rs485(path: Path = RS485_OUT) -> str:
    """RS-485 wiring: Pi UART -> transceiver -> twisted pair -> meter, terminated at both ends."""
    schemdraw.use("svg")
    with schemdraw.Drawing(show=False) as d:
        d.config(fontsize=11, unit=2.5)
        d += (
            ic := elm.Ic(
                pins=[
                    elm.IcPin(name="RO", side="left"),
                    elm.IcPin(name="DI", side="left"),
                    elm.IcPin(name="DE/RE", side="left"),
                    elm.IcPin(name="A", side="right"),
                    elm.IcPin(name="B", side="right"),
                ],
                edgepadW=1.5,
                pinspacing=2,
            ).label("MAX3485\n(3.3 V)", loc="center")
        )
        d += elm.Line().at(ic.RO).left(4)
        d += elm.Dot(open=True).label("GPIO15 RX (10)", loc="left")
        d += elm.Line().at(ic.DI).left(4)
        d += elm.Dot(open=True).label("GPIO14 TX (8)", loc="left")
        d += elm.Line().at(ic["DE/RE"]).left(4)
        d += elm.Dot(open=True).label("DE/RE: auto-direction\nmodule, or RTS", loc="left")
        d += elm.Line().at(ic.A).right(1)
        d += (a0 := elm.Dot())
        d += elm.Line().right(6).label("A (D+), twisted pair")
        d += (a1 := elm.Dot())
        d += elm.Line().right(1)
        d += elm.Dot(open=True).label("meter A (ABB: labelled B)", loc="right")
        d += elm.Line().right(4).color("white")
        d += elm.Line().at(ic.B).right(1)
        d += (b0 := elm.Dot())
        d += elm.Line().right(6).label("B (D-)")
        d += (b1 := elm.Dot())
        d += elm.Line().right(1)
        d += elm.Dot(open=True).label("meter B (ABB: labelled A)", loc="right")
        d += elm.Resistor().endpoints(a0.center, b0.center).label("120Ω", loc="bottom")
        d += (
            elm.Resistor()
            .endpoints(a1.center, b1.center)
            .label("120Ω\n(last device)", loc="bottom")
        )
        svg = d.get_imagedata("svg").decode()
    path.write_text(svg)
    return svg


def draw_all() -> None:
    """Rewrite every picture in docs/img/."""
    draw()
    mains()
    header()
    rs485()


if __name__ == "__main__":
    draw_all()
    print("wrote docs/img/*.svg")
