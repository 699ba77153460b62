"""`make demo` shows a newcomer a complete session against the bundled CSMS."""

from pathlib import Path

from controller.demo import run_demo


async def test_demo_plays_a_whole_session_and_sums_it_up(tmp_path: Path) -> None:
    lines: list[str] = []
    assert await run_demo(lines.append, charge_s=4.0, state_dir=tmp_path) == 0
    text = "\n".join(lines)
    for step in (
        "booted at the CSMS",
        "car plugged in",
        "card 04A1B2C3 tapped: the CSMS authorized it",
        "contactor closed, Charging",
        "the CSMS limits the session to 10 A: Accepted",
        "car unplugged: transaction stopped (EVDisconnected)",
        "Session summary",
    ):
        assert step in text, f"missing {step!r} in:\n{text}"
    progress = [line for line in lines if "Charging      I" in line]
    assert any(" 16.0 A" in line for line in progress)
    assert any(" 10.0 A" in line for line in progress[-1:])
    energy_line = next(line for line in lines if line.strip().startswith("energy"))
    assert 0.2 < float(energy_line.split()[1]) < 1.0


async def test_demo_plays_a_whole_session_over_ocpp_201(tmp_path: Path) -> None:
    lines: list[str] = []
    assert await run_demo(lines.append, charge_s=4.0, state_dir=tmp_path, version="2.0.1") == 0
    text = "\n".join(lines)
    for step in (
        "OCPP 2.0.1",
        "booted at the CSMS",
        "card 04A1B2C3 tapped: the CSMS authorized it",
        "contactor closed, Charging",
        "the CSMS limits the session to 10 A: Accepted",
        "car unplugged: transaction stopped (EVDisconnected)",
        "Session summary (as the CSMS recorded it, OCPP 2.0.1)",
    ):
        assert step in text, f"missing {step!r} in:\n{text}"
    progress = [line for line in lines if "Charging      I" in line]
    assert any(" 16.0 A" in line for line in progress)
    assert any(" 10.0 A" in line for line in progress[-1:])  # the car follows the profile
    energy_line = next(line for line in lines if line.strip().startswith("energy"))
    assert 0.1 < float(energy_line.split()[1]) < 1.0
