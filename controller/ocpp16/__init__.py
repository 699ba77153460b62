"""The OCPP 1.6J adapter: :class:`Ocpp16Adapter` is the supervisor's CSMS link.

Built by :func:`controller.ocpp16.factory.create_adapter`, which
:mod:`controller.csms.registry` holds for version "1.6".
"""

from controller.ocpp16.adapter import Ocpp16Adapter

__all__ = ["Ocpp16Adapter"]
