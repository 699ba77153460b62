"""CSMS adapters by OCPP version: configuration picks the adapter, never an ``if`` in the core.

On the model of :mod:`drivers.registry`: each version maps to a factory with one signature,
``(AdapterContext) -> CsmsAdapter``. Adding a version is adding its package beside
``controller/ocpp16/`` and one entry here; the composition root asks for
``await create("1.6", context)`` and gets a :class:`~controller.csms.adapter.CsmsAdapter`.
Beside each factory, the version's end message (:data:`END_MESSAGES`), which power-loss
recovery uses for a transaction another version started.

This module is the one place in :mod:`controller.csms` that names a version package, and only
inside a factory (the import is deferred, so choosing 1.6 does not import a 2.0.1 adapter and
the neutral services never depend on a version). The import contract in ``pyproject.toml``
allows exactly these imports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.config import ConfigError
from controller.csms.adapter import AdapterContext, CsmsAdapter
from controller.domain import Transaction
from controller.outbox import EndMessage, OutboxEntry
from controller.storage import Storage

AdapterFactory = Callable[[AdapterContext], Awaitable[CsmsAdapter]]


async def _ocpp16(context: AdapterContext) -> CsmsAdapter:
    from controller.ocpp16.factory import create_adapter

    return await create_adapter(context)


async def _ocpp201(context: AdapterContext) -> CsmsAdapter:
    from controller.ocpp201.factory import create_adapter

    return await create_adapter(context)


REGISTRY: dict[str, AdapterFactory] = {
    "1.6": _ocpp16,
    "2.0.1": _ocpp201,
}


async def _end16(tx: Transaction, storage: Storage) -> OutboxEntry:
    from controller.ocpp16.factory import end_message

    return await end_message(tx, storage)


async def _end201(tx: Transaction, storage: Storage) -> OutboxEntry:
    from controller.ocpp201.factory import end_message

    return await end_message(tx, storage)


#: Each version's message ending a transaction, as an outbox row of that version: power-loss
#: recovery (:func:`controller.recovery.recover_transactions`) queues it for a transaction
#: whose start only that version's CSMS knows, while another version (or none) runs.
END_MESSAGES: dict[str, EndMessage] = {
    "1.6": _end16,
    "2.0.1": _end201,
}


def require(version: str) -> AdapterFactory:
    """The factory of ``version``; :class:`ConfigError` naming ``ocpp.version`` if none."""
    factory = REGISTRY.get(version)
    if factory is None:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(
            "ocpp.version", f"OCPP {version} is not implemented yet; use one of: {known}"
        )
    return factory


async def create(version: str, context: AdapterContext) -> CsmsAdapter:
    """Build the adapter of ``version`` (it does not connect before its ``run()``)."""
    return await require(version)(context)
