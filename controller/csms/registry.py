"""CSMS adapters by OCPP version: configuration picks the adapter, never an ``if`` in the core.

On the model of :mod:`drivers.registry`: each version maps to a factory with one signature,
``(AdapterContext) -> CsmsAdapter``. Adding a version is adding its package beside
``controller/ocpp16/`` and one entry here; the composition root asks for
``await create("1.6", context)`` and gets a :class:`~controller.csms.adapter.CsmsAdapter`.

This module is the one place in :mod:`controller.csms` that names a version package, and only
inside a factory (the import is deferred, so choosing 1.6 does not import a 2.0.1 adapter and
the neutral services never depend on a version). The import contract in ``pyproject.toml``
allows exactly these imports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.config import ConfigError
from controller.csms.adapter import AdapterContext, CsmsAdapter

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
