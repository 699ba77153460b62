"""What the composition root needs of a CSMS adapter, whatever OCPP version it speaks.

An adapter is the supervisor's :class:`~controller.domain.CsmsLink` (it hears status,
transactions and meter readings and answers authorizations) and also runs the link itself:
:meth:`CsmsAdapter.run` talks to the CSMS until cancelled, :meth:`CsmsAdapter.flush` lets
the last transaction messages go out before a stop, :meth:`CsmsAdapter.resync` writes the
durable queue again once the database works again, and :attr:`CsmsAdapter.state` is the link
state the status line shows. Adapters are built from an :class:`AdapterContext` by the
factory :mod:`controller.csms.registry` holds for the configured version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from controller.domain import ChargePointControl, CsmsLink

if TYPE_CHECKING:
    from controller.config import Config
    from controller.csms.link import LinkState
    from controller.firmware_install import Installer
    from controller.storage import Storage


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """Everything a version adapter is built from.

    ``config`` is the charger's configuration (URL, identity, security files),
    ``storage`` the open state database, ``control`` the supervisor the CSMS acts through,
    ``keys_preset`` a version-specific TOML preset of configuration keys applied when the
    state directory is new (``--ocpp-keys``), None for none. ``firmware_installer``
    replaces the default installer of UpdateFirmware (``--sim``: the simulated one).
    """

    config: Config
    storage: Storage
    control: ChargePointControl
    keys_preset: Path | None = None
    firmware_installer: Installer | None = None


class CsmsAdapter(CsmsLink, Protocol):
    """A CSMS link the composition root can run, stop and show. Loop thread only."""

    @property
    def state(self) -> LinkState:
        """Where the link is (connecting, registered, backing off...), for the status line."""
        ...

    async def run(self) -> None:
        """Talk to the CSMS until cancelled, reconnecting forever."""
        ...

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` s for the transaction queue to empty; False if it did not."""
        ...

    async def resync(self) -> None:
        """Write the transaction queue to the database again (it failed and works again)."""
        ...
