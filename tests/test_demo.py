"""`make demo` shows a newcomer a complete session on simulated hardware."""

from pathlib import Path

from controller.demo import run_demo


async def test_demo_plays_a_whole_session_and_sums_it_up(tmp_path: Path) -> None:
    lines: list[str] = []
    assert await run_demo(lines.append, charge_s=3.0, state_dir=tmp_path) == 0
    text = "\n".join(lines)
    for step in (
        "car plugged in",
        "card 04A1B2C3",
        "RCM self-test passed",
        "contactor closed",
        "charging:",
        "load limit: offering 10 A",
        "contactor opened",
        "car unplugged",
        "Session summary",
    ):
        assert step in text, f"missing {step!r} in:\n{text}"
    energy_line = next(line for line in lines if line.strip().startswith("energy"))
    kwh = float(energy_line.split()[1])
    assert 0.2 < kwh < 1.0  # ~11 kW then ~7 kW for 3 simulated minutes
