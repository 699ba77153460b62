"""One status snapshot: what `picharge sim status`, the systemd status line and listeners read.

Checked on the whole charger (standalone, simulated hardware) during a session with a
user's limit in force.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.connector_types import ConnectorStatus
from controller.events import LinkStateChanged, SupervisorEvent
from controller.limits import FixedBound, LimitSource
from controller.service import status_text
from controller.status_snapshot import STANDALONE
from tests.support.standalone import CARD, running
from tests.support.wait import until

#: The keys design.md promises for each connector of `picharge sim status`.
CONTRACT_KEYS = {
    "id",
    "cp_state",
    "contactor_closed",
    "offered_current_a",
    "ev_current_a",
    "energy_wh",
    "power_w",
    "ocpp_status",
    "transaction_id",
}


async def test_the_snapshot_describes_an_idle_connector(tmp_path: Path) -> None:
    async with running(tmp_path) as charger:
        await until(lambda: charger.supervisor.snapshot().connectors[0].cp_state == "A")
        snapshot = charger.supervisor.snapshot()
        assert snapshot.csms_link == STANDALONE
        (connector,) = snapshot.connectors
        assert connector.id == 1
        assert connector.status is ConnectorStatus.AVAILABLE
        assert connector.cp_state == "A"
        assert not connector.contactor_closed
        assert connector.transaction_id is None and connector.faults == ()
        assert connector.offered_a == 0.0 and connector.limits == ()
        # a socket with no cable plugged in offers nothing: the cable binds
        assert connector.limited_by == (FixedBound.CABLE,)
        assert charger.app.status_line() == "standalone; connector 1: Available"


async def test_a_session_with_a_users_limit_reads_the_same_everywhere(tmp_path: Path) -> None:
    async with running(tmp_path) as charger:
        heard: list[SupervisorEvent] = []

        async def listener(event: SupervisorEvent) -> None:
            heard.append(event)

        charger.supervisor.events.subscribe("test", listener)
        await charger.charging()
        charger.supervisor.set_limit(1, LimitSource.USER, 10.0)
        await until(lambda: charger.hw("ev_current_a") == pytest.approx(10.0, abs=0.1))
        await until(lambda: charger.supervisor.snapshot().connectors[0].meter is not None)
        await until(lambda: _phase_currents(charger) == pytest.approx([10.0] * 3, abs=0.5))

        snapshot = charger.supervisor.snapshot()
        connector = snapshot.connector(1)
        tx = charger.supervisor.view(1).transaction
        assert connector.status is ConnectorStatus.CHARGING
        assert connector.cp_state == "C" and connector.contactor_closed
        assert connector.transaction_id == tx.local_id and connector.id_tag == CARD
        assert connector.offered_a == 10.0 and connector.limit_a == 10.0
        assert connector.limited_by == (LimitSource.USER,)
        assert connector.limits == ((LimitSource.USER, 10.0),)
        assert connector.meter is not None and connector.meter.power_w is not None

        document = json.loads(json.dumps(snapshot.to_json()))
        assert document["csms_link"] == "standalone"
        entry = document["connectors"][0]
        assert entry["ocpp_status"] == "Charging" and entry["limited_by"] == ["user"]
        assert entry["limits"] == {"user": 10.0} and entry["active_faults"] == []

        # `picharge sim status`: the hardware's view completed with the snapshot
        status = await charger.app._sim_request({"action": "status"})
        assert set(status["connectors"][0]) >= CONTRACT_KEYS
        assert "meter_modbus_tcp" in status and status["csms_link"] == "standalone"
        sim_entry = status["connectors"][0]
        assert sim_entry["ocpp_status"] == "Charging"
        assert sim_entry["transaction_id"] == tx.local_id
        assert sim_entry["limited_by"] == ["user"] and sim_entry["limit_a"] == 10.0

        # the systemd status line
        line = charger.app.status_line()
        assert line == status_text(charger.supervisor.snapshot())
        assert line.startswith("standalone; connector 1: Charging at 10 A, ")

        assert LinkStateChanged("standalone") in heard


def _phase_currents(charger: object) -> list[float | None]:
    meter = charger.supervisor.snapshot().connectors[0].meter  # type: ignore[attr-defined]
    return list(meter.current_a)
