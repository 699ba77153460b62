"""On real hardware the charger refuses to run until the installation's ratings are written.

``max_current_a`` and ``phases`` depend on the breaker, the cable and the supply; the parser's
defaults (32 A, 3 phases) exist for the simulator. ``picharge run`` without ``--sim`` must
stop with a configuration error (exit 2, which the unit does not restart) before it touches
any pin, rather than offer 32 A to a car on a 16 A single-phase circuit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller.config import load_config
from controller.runner import require_site_ratings

REPO = Path(__file__).resolve().parent.parent
CONNECTOR_BODY = {
    "max_current_a": "max_current_a = 16.0\n",
    "phases": "phases = 1\n",
}


def _run(config: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "run",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("missing", ["max_current_a", "phases"])
def test_real_hardware_without_a_site_rating_exits_with_a_configuration_error(
    tmp_path: Path, missing: str
) -> None:
    config = tmp_path / "config.toml"
    kept = "".join(line for key, line in CONNECTOR_BODY.items() if key != missing)
    config.write_text(f"[[connector]]\n{kept}")
    done = _run(config, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"picharge: configuration error: connector.1.{missing}: must be set" in done.stderr


def test_a_file_without_any_connector_table_names_the_first_connector(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[chargepoint]\nid = 'CP1'\n")
    done = _run(config, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "connector.1.max_current_a: must be set on real hardware" in done.stderr


@pytest.mark.parametrize("example", sorted((REPO / "deploy" / "examples").glob("*.toml")))
def test_the_shipped_examples_set_both_ratings(example: Path) -> None:
    require_site_ratings(load_config(example))
