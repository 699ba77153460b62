"""The OCPP 2.0.1 adapter: :class:`Ocpp201Adapter` is the supervisor's CSMS link.

Built by :func:`controller.ocpp201.factory.create_adapter`, which
:mod:`controller.csms.registry` holds for version "2.0.1". This first slice connects
(``ocpp2.0.1``, security profiles through :mod:`controller.csms.security`), boots with a
reason, heartbeats and holds its configuration as device-model variables
(:mod:`.device_model`); see the README's "OCPP 2.0.1" section for what is not there yet.
"""

from controller.ocpp201.adapter import Ocpp201Adapter

__all__ = ["Ocpp201Adapter"]
