"""The OCPP 1.6 adapter rig with a firmware installer, for the UpdateFirmware tests.

``make_fw_rig`` (a fixture): ``make()`` starts a registered charger with a
:class:`FakeInstaller` that trusts the test's firmware :class:`~.firmware_signing.Signer`
(``fw.signer``; ``signing_ca=`` trusts another root instead, ``policy=`` sets the whole
firmware policy); ``make(restart=fw)`` stops ``fw``'s adapter and starts a new one on the
same state directory, installer, policy and CSMS: the charger after a restart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.csms.firmware_policy import FirmwarePolicy
from controller.firmware_install import FirmwarePackage, InstallFailed
from tests.support.firmware_signing import Signer, make_signer
from tests.support.ocpp16_adapter import AdapterRig, MakeRig


@dataclass
class FakeInstaller:
    """Records what it is given; fails with ``failure`` when set. Like the real one it puts
    an installed version on trial, which the next :meth:`confirm` ends (and returns); a test
    plays the fall-back of ``firmware_install.guard`` by setting ``trial`` to None."""

    installed: list[FirmwarePackage] = field(default_factory=list)
    failure: InstallFailed | None = None
    restarts: int = 0
    confirmed: int = 0
    trial: str | None = None

    def install(self, package: FirmwarePackage) -> Path:
        if self.failure is not None:
            raise self.failure
        assert package.path.exists()
        self.installed.append(package)
        self.trial = package.version
        return package.path.parent

    def prepare_restart(self) -> None:
        self.restarts += 1

    def confirm(self) -> str | None:
        self.confirmed += 1
        version, self.trial = self.trial, None
        return version


@dataclass
class FwRig:
    rig: AdapterRig
    installer: FakeInstaller
    signer: Signer
    policy: FirmwarePolicy


MakeFwRig = Callable[..., Awaitable[FwRig]]


@pytest.fixture(name="make_fw_rig")
async def make_fw_rig_fixture(make_rig: MakeRig, tmp_path: Path) -> AsyncIterator[MakeFwRig]:
    signer = make_signer(tmp_path / "signing")

    async def make(
        *,
        restart: FwRig | None = None,
        signing_ca: Path | None = None,
        policy: FirmwarePolicy | None = None,
        wait: bool = True,
    ) -> FwRig:
        if restart is not None:
            await restart.rig.stop_adapter()
            await restart.rig.storage.close()
            mark = len(restart.rig.csms.received)
            installer, policy = restart.installer, restart.policy
            rig = await make_rig(
                csms=restart.rig.csms,
                state=tmp_path / "state",
                adapter_args={"firmware_installer": installer, "firmware_policy": policy},
            )
        else:
            installer = FakeInstaller()
            if policy is None:
                policy = FirmwarePolicy(signing_ca=signing_ca or signer.ca_file)
            rig = await make_rig(
                state=tmp_path / "state",
                adapter_args={"firmware_installer": installer, "firmware_policy": policy},
            )
            mark = 0  # a new CSMS
        if wait:
            await rig.registered(after=mark)
        return FwRig(rig, installer, signer, policy)

    yield make  # make_rig stops every adapter and closes its storage


def now_iso(offset_s: float = 0.0) -> str:
    """The time ``offset_s`` from now as OCPP writes it (UTC, milliseconds, ``Z``)."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
