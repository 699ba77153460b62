"""The charging modes after lost events: a departure plan reads the session from the
connector's view when the broadcast tells it events were dropped (``Resync``).

Without that, a ``TransactionStarted`` lost in an overflowing queue left the runner
counting the session from zero, and a car that already held its energy target was
charged on at full power until departure.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from controller.config import parse_config
from controller.domain import ConnectorStatus, ConnectorView, Transaction
from controller.energy.mode_config import parse_energy
from controller.energy.mode_runner import ModeRunner
from controller.events import Resync
from drivers.base import MeterReading
from tests.support.energy import ModeSink as Sink

#: 2 kWh by 07:00; at 06:50 the latest start for 2 kWh at 11 kW is long past.
PLAN = {"mode": "schedule", "departure": "07:00", "energy_kwh": 2}
METER_START_WH = 10_000.0


def view(energy_wh: float) -> ConnectorView:
    """Connector 1 charging a session begun at METER_START_WH, its meter at ``energy_wh``."""
    tx = Transaction("local-1", 1, "CARD", METER_START_WH, dt.datetime(2026, 12, 6, 5, 0))
    reading = MeterReading(
        voltage_v=(230.0, 230.0, 230.0),
        current_a=(16.0, 16.0, 16.0),
        power_w=(3680.0, 3680.0, 3680.0),
        total_power_w=11_040.0,
        energy_import_wh=energy_wh,
        frequency_hz=50.0,
        taken_at=0.0,
    )
    return ConnectorView(1, ConnectorStatus.CHARGING, None, tx, reading, 16.0, ev_connected=True)


def runner(sink: Sink, energy_wh: float) -> ModeRunner:
    config = parse_config({"energy": PLAN, "connector": [{}]})
    settings = parse_energy(config.energy, {1: None}, [1], {1: {}})
    return ModeRunner(
        settings,
        None,
        None,
        sink,
        {1: 11_040.0},
        clock=lambda: 100.0,
        local_now=lambda: dt.datetime(2026, 12, 6, 6, 50),
        views=lambda cid: view(energy_wh),
    )


def test_a_session_missed_in_lost_events_is_read_back_and_its_met_target_ends_charging() -> None:
    sink = Sink()
    modes = runner(sink, METER_START_WH + 2_100.0)  # 2.1 kWh in the car already
    modes.step()
    assert sink.mode[1] != 0.0  # knowing no session, the plan charges before departure
    asyncio.run(modes.on_event(Resync(dropped=3)))
    assert sink.mode[1] == 0.0


def test_a_session_read_back_short_of_its_target_keeps_charging() -> None:
    sink = Sink()
    modes = runner(sink, METER_START_WH + 500.0)
    asyncio.run(modes.on_event(Resync(dropped=3)))
    assert sink.mode[1] != 0.0
