"""The charger on its own (no CSMS): the whole controller on simulated hardware with a
local card list, as ``picharge run --sim`` runs it without ``[ocpp]``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from controller.app import ChargePointApp, RunOptions
from controller.app import running as running_app
from controller.config import parse_config
from controller.connector_types import ConnectorStatus
from controller.domain import Transaction
from drivers.errors import FaultKind
from tests.support.wait import until

CARD = "04A1B2C3"


class Charger:
    """The running controller as a test drives it: the car and the reader through the
    simulator, the supervisor's view of each connector, the transactions it made."""

    def __init__(self, app: ChargePointApp) -> None:
        self.app = app

    @property
    def supervisor(self) -> Any:
        return self.app.supervisor

    async def act(self, action: str, **extra: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await self.app.sim.handle(
            {"action": action, "connector": 1, **extra}
        )
        return answer

    def hw(self, key: str, connector: int = 1) -> Any:
        return self.app.sim.status()["connectors"][connector - 1][key]

    def status(self, connector: int = 1) -> ConnectorStatus:
        return self.supervisor.view(connector).status  # type: ignore[no-any-return]

    def fault(self, connector: int = 1) -> FaultKind | None:
        return self.supervisor.view(connector).fault  # type: ignore[no-any-return]

    def transactions(self) -> list[Transaction]:
        return self.supervisor.link.transactions  # type: ignore[no-any-return]

    async def charging(self) -> None:
        await self.act("plug")
        await self.act("tap", uid=CARD)
        await until(lambda: self.status() is ConnectorStatus.CHARGING)
        await until(lambda: self.hw("ev_current_a") > 15.0)


@contextlib.asynccontextmanager
async def running(
    state_dir: Path, *, sim_connectors: int = 1, **doc: Any
) -> AsyncIterator[Charger]:
    """The controller on simulated hardware (x30, ``sim_connectors`` connectors) with
    :data:`CARD` as its only card and ``doc`` as further configuration sections; handed
    over once connector 1 is Available."""
    base: dict[str, Any] = {"authorization": {"cards": [CARD]}}
    base.update(doc)
    config = dataclasses.replace(parse_config(base), state_dir=state_dir)
    app = ChargePointApp(
        config, RunOptions(sim=True, sim_speed=30.0, sim_connectors=sim_connectors)
    )
    async with running_app(app):
        charger = Charger(app)
        await until(lambda: charger.status() is ConnectorStatus.AVAILABLE)
        yield charger
